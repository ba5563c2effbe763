"""The term-by-term table of a ``DerivationReport``, and its pytest form ``assert_derivation_matches``."""

from collections.abc import Callable, Mapping

import numpy as np

from fcgrad.derivation.checker import DerivationReport, PassResult, check_derivation


def _cells(p: PassResult | None) -> str:
    if p is None:
        return f"{'—':>9} {'':>9} {'':<3}"
    if p.note:
        return f"{p.note:<23}"
    return f"{p.max_abs_err:>9.1e} {p.rel_err:>9.1e} {'ok' if p.ok else 'NO':<3}"


def text(report: DerivationReport) -> str:
    """One line per term in backward order, both passes, then what each origin looks like."""
    width = max([len(r.name) for r in report.rows] + [4])
    lines = [
        f"derivation vs JAX, term by term (float64; ok: rel ≤ {report.rtol:.0e} or max|Δ| ≤ {report.atol:.0e})",
        f"  {'term':<{width}}  {'shape':<10} {'end to end: max|Δ|':>19} {'rel':>9}     "
        f"{'isolated: max|Δ|':>16} {'rel':>9}     verdict",
    ]
    for r in report.rows:
        verdict = r.verdict
        if r.verdict == "inherited":
            verdict += " from " + ", ".join(r.inherits_from) if r.inherits_from else ""
        lines.append(
            f"  {r.name:<{width}}  {str(r.shape):<10} {_cells(r.end_to_end):>33}   {_cells(r.isolated):>30}   {verdict}"
        )
    for r in report.origins:
        for d in r.diagnoses:
            lines.append(f"  {r.name}: {d.message}")
    for name, message in report.crashes.items():
        lines.append(f"  the {name.replace('_', ' ')} pass stopped: {message}")
    if report.unchecked:
        lines.append(f"  written but neither a tap nor a parameter (not compared): {', '.join(report.unchecked)}")
    bad = [r.name for r in report.rows if r.verdict not in ("ok", "not computed")]
    origins = [r.name for r in report.origins]
    if report.ok:
        lines.append(f"OK: every computed term matches JAX ({sum(r.verdict == 'ok' for r in report.rows)} terms)")
    else:
        lines.append(
            f"FAILED: {len(bad)} wrong term(s); origin(s): {', '.join(origins) or 'none isolated'}"
            + (f"; missing: {', '.join(r.name for r in report.rows if r.verdict == 'missing')}" if "missing" in
               [r.verdict for r in report.rows] else "")
        )  # fmt: skip
    return "\n".join(lines)


def assert_derivation_matches(
    forward: Callable,
    backward: Callable,
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    **options,
) -> DerivationReport:
    """``check_derivation(...)``; raises ``AssertionError`` with the table when any term is wrong."""
    report = check_derivation(forward, backward, params, data, **options)
    if not report.ok:
        raise AssertionError("backward does not match JAX term by term:\n" + text(report))
    return report


__all__ = ["assert_derivation_matches", "text"]
