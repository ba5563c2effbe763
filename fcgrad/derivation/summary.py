"""A derivation report's verdict line, and its table in a notebook (``_repr_html_``).

The verdict counts an exception in the user's backward as a failure and names the user's line:
"FAILED: 0 wrong term(s)" never follows one.
"""

from fcgrad.engine.notebook import number, page, paragraph, table

__tracebackhide__ = True  # pytest shows the user's test and the message, not these frames


def verdict(report) -> str:
    """``OK: ...`` or ``FAILED: ...``: the backward's exception first (file and line), then the wrong terms."""
    bad = [r.name for r in report.rows if r.verdict not in ("ok", "not computed")]
    if report.ok:
        return f"OK: every computed term matches JAX ({sum(r.verdict == 'ok' for r in report.rows)} terms)"
    parts = []
    if report.crashes:
        crash = report.crashes.get("end_to_end") or next(iter(report.crashes.values()))
        parts.append(crash)
    if bad:
        origins = ", ".join(r.name for r in report.origins) or "none isolated"
        parts.append(f"{len(bad)} wrong term(s); origin(s): {origins}")
    elif report.crashes:
        parts.append("the terms written before it match JAX")
    missing = [r.name for r in report.rows if r.verdict == "missing"]
    if missing:
        parts.append(f"missing: {', '.join(missing)}")
    return "FAILED: " + "; ".join(parts)


def _cells(p) -> list[str]:
    if p is None:
        return ["—", "—"]
    if p.note:
        return [p.note, ""]
    return [number(p.max_abs_err), number(p.rel_err)]


class DerivationHtml:
    """``_repr_html_`` for ``DerivationReport``: one row per term, both passes, the names, the verdict."""

    def _repr_html_(self) -> str:
        cells = []
        for r in self.rows:
            words = r.verdict + (" from " + ", ".join(r.inherits_from) if r.inherits_from else "")
            named = str(r.diagnoses[0]) if r.diagnoses else ""
            ok = r.verdict in ("ok", "not computed")
            cells.append(([r.name, str(r.shape), *_cells(r.end_to_end), *_cells(r.isolated), words, named], ok))
        headers = ["term", "shape", "end to end max|Δ|", "rel", "isolated max|Δ|", "rel", "verdict", "looks like"]
        caption = f"derivation vs JAX, term by term (ok: rel ≤ {self.rtol:.0e} or max|Δ| ≤ {self.atol:.0e})"
        parts = [table(caption, headers, cells)]
        for name, message in self.crashes.items():
            parts.append(paragraph(f"the {name.replace('_', ' ')} pass stopped: {message}"))
        parts.append(paragraph(verdict(self), "verdict"))
        return page("fcgrad: a derivation checked term by term", parts)


__all__ = ["DerivationHtml", "verdict"]
