"""The term-by-term table of a ``DerivationReport``, and its pytest form ``assert_derivation_matches``."""

from collections.abc import Callable, Mapping

import numpy as np

from fcgrad.derivation.checker import DerivationReport, PassResult, check_derivation
from fcgrad.derivation.summary import verdict

__tracebackhide__ = True  # pytest shows the user's test and the message, not these frames


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
        words = r.verdict
        if r.verdict == "inherited":
            words += " from " + ", ".join(r.inherits_from) if r.inherits_from else ""
        lines.append(
            f"  {r.name:<{width}}  {str(r.shape):<10} {_cells(r.end_to_end):>33}   {_cells(r.isolated):>30}   {words}"
        )
    for r in report.origins:
        for d in r.diagnoses:
            lines.append(f"  {r.name}: {d.message}")
    for name, message in report.crashes.items():
        lines.append(f"  the {name.replace('_', ' ')} pass stopped: {message}")
    if report.unchecked:
        lines.append(f"  written but neither a tap nor a parameter (not compared): {', '.join(report.unchecked)}")
    lines.append(verdict(report))
    return "\n".join(lines)


def assert_derivation_matches(
    forward: Callable,
    backward: Callable,
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    **options,
) -> DerivationReport:
    """``check_derivation(...)``, raising ``AssertionError`` with the term-by-term table when any term is wrong.

    Arguments:
        forward: ``forward(tap, **params, **data) -> loss`` (0-d), written against the array API;
            ``tap("name", value)`` names each intermediate.
        backward: ``backward(g, v)``: fills ``g["name"] = ∂L/∂name`` for each tap and parameter, reading
            the forward's values from ``v`` and the upstream terms from ``g``.
        params: name -> array, differentiated by (each needs its ``g[name]``).
        data: name -> array, the other inputs (x, targets).
        **options: ``n`` (the batch size for 1/N), ``rtol``, ``atol``, ``weights`` (``"in,out"`` or
            ``"out,in"``), ``samples`` (``"columns"`` or ``"rows"``): as ``check_derivation``.

    Returns the ``DerivationReport`` when every term matches. An exception in the backward fails the
    assertion too, with its file and line.

    Example, in a test file::

        def forward(tap, x, t, w, b):
            xp = x.__array_namespace__()
            z = tap("z", x @ w.T + b)  # (N, out): samples by row, w (out, in)
            return xp.sum((z - t) ** 2) / x.shape[0] / 2

        def backward(g, v):
            g["z"] = (v.z - v.t) / v.x.shape[0]  # (N, out)
            g["w"] = g["z"].T @ v.x  # (out, in)
            g["b"] = g["z"].sum(axis=0)  # (out,)

        def test_my_derivation():
            assert_derivation_matches(forward, backward, {"w": w, "b": b}, {"x": x, "t": t},
                                      weights="out,in", samples="rows")
    """
    report = check_derivation(forward, backward, params, data, **options)
    if not report.ok:
        raise AssertionError("backward does not match JAX term by term:\n" + text(report))
    return report


__all__ = ["assert_derivation_matches", "text"]
