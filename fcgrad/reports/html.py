"""``audit --code``'s report in a notebook: its tables, its findings named, the verdict and the drift figure.

``CodeAuditHtml`` gives ``CodeAuditReport`` its ``_repr_html_``; the table and the figure are drawn
as every report's are (``fcgrad.engine.notebook``). The report is read by its fields only (end to
end rows, isolated rows, findings, histories), so this module needs nothing of the audit's code.
"""

from fcgrad.engine.notebook import curves, figure_img, number, page, paragraph, table
from fcgrad.engine.tolerances import TRAJ_ABS_TOL_F64


class CodeAuditHtml:
    """``_repr_html_`` for ``fcgrad.audits.code.CodeAuditReport``."""

    def _repr_html_(self) -> str:
        return code_audit_html(self)


def _rows(caption: str, rows, origins: set) -> str:
    cells = []
    for r in rows:
        result = "ok" if r.ok else ("MISMATCH (origin)" if (r.layer, r.quantity) in origins else "MISMATCH")
        cells.append(([r.layer, r.quantity, number(r.max_abs_err), number(r.rel_err), result], r.ok))
    return table(caption, ["layer", "quantity", "max|Δ|", "rel", "result"], cells)


def code_audit_html(report) -> str:
    p = report.problem
    title = f"fcgrad audit --code {report.file}: {p.name}, sizes {'-'.join(map(str, p.sizes))}, loss {p.loss}"
    origins = {(f.layer, f.quantity) for f in report.findings}
    parts = [_rows("step 0, end to end: the file's numbers against JAX", report.end_to_end, origins)]
    if getattr(report, "isolated", None):
        parts.append(_rows("each layer fed JAX's upstream", report.isolated, origins))
    cells = []
    for f in report.findings:
        named = str(f.diagnoses[0]) if f.diagnoses else "no catalogue entry matches: a mistake of its own kind"
        cells.append(([f.layer, f.quantity, number(f.max_abs_err), number(f.rel_err), named], False))
    if cells:
        parts.append(table("findings (origins)", ["layer", "quantity", "max|Δ|", "rel", "looks like"], cells))
    verdict = "OK: the file agrees with JAX" if report.ok else f"FAILED: {len(report.findings)} finding(s)"
    parts.append(paragraph(verdict, "verdict"))
    h = report.histories
    if "loss_code" in h and "loss_reference" in h:
        losses = {"the file": h["loss_code"], "JAX": h["loss_reference"]}
        diffs = {"max|Δparam|": (h["param_maxdiff"], TRAJ_ABS_TOL_F64)} if "param_maxdiff" in h else {}
        parts.append(figure_img(lambda fig: curves(fig, losses, diffs)))
    return page(title, parts)


__all__ = ["CodeAuditHtml", "code_audit_html"]
