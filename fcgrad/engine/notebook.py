"""How a report shows in a notebook: an HTML table of its rows, and its figure inline, beside the text table.

Jupyter shows an object by its ``_repr_html_``. The pieces every report's HTML is made of live here,
next to ``Row`` and the text table (``fcgrad.engine.row_table``), so that the engine's own report
(``CheckReport``, through ``CheckReportHtml``) and the reports above the engine (a derivation's, an
``audit --code``'s) all draw one kind of table: ``table(headers, rows)``, a failing row marked;
``figure_img(fig)``, a matplotlib figure as an inline base64 PNG (or "" when matplotlib is absent);
``page(title, parts)``, the whole block.
"""

import base64
import html
import io

import numpy as np

_STYLE = (
    "<style>.fcgrad-report table{border-collapse:collapse;margin:4px 0 10px 0;font-size:90%}"
    ".fcgrad-report th,.fcgrad-report td{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    ".fcgrad-report td.name{text-align:left}.fcgrad-report tr.bad{background:#fde2e2}"
    ".fcgrad-report .verdict{font-weight:bold}</style>"
)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def table(caption: str, headers: list[str], rows: list[tuple[list, bool]]) -> str:
    """An HTML table: ``rows`` are (cells, ok); a row that is not ok is marked ``class="bad"``."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for cells, ok in rows:
        tds = "".join(f'<td class="name">{esc(c)}</td>' if i < 2 else f"<td>{esc(c)}</td>" for i, c in enumerate(cells))
        body.append(f'<tr class="{"ok" if ok else "bad"}">{tds}</tr>')
    return f"<table><caption>{esc(caption)}</caption><tr>{head}</tr>{''.join(body)}</table>"


def paragraph(text: str, cls: str = "") -> str:
    return f'<p class="{cls}">{esc(text)}</p>' if cls else f"<p>{esc(text)}</p>"


def figure_img(draw) -> str:
    """``draw(Figure)`` onto a new matplotlib figure, returned as an inline PNG ``<img>``; "" without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        return ""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    draw(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}"/>'


def page(title: str, parts: list[str]) -> str:
    """The report's whole HTML block."""
    return f'<div class="fcgrad-report">{_STYLE}<h4>{esc(title)}</h4>{"".join(parts)}</div>'


def number(value) -> str:
    """A figure of a table cell: 1.2e-15, or — for none."""
    if value is None:
        return "—"
    value = float(value)
    return "nan" if not np.isfinite(value) else f"{value:.1e}"


def curves(fig, losses: dict[str, np.ndarray], diffs: dict[str, tuple[np.ndarray, float]]) -> None:
    """Loss curves on the left (when there are any), each row's per-step max|Δ| and its tolerance on the right."""
    axes = fig.subplots(1, 2) if losses else [None, fig.subplots(1, 1)]
    if losses:
        for label, curve in losses.items():
            axes[0].plot(np.arange(len(curve)), curve, label=label)
        axes[0].set(xlabel="step", ylabel="loss", title="loss, both sides")
        axes[0].legend()
    for i, (label, (per_step, limit)) in enumerate(diffs.items()):
        color = f"C{i % 10}"
        shown = np.maximum(np.asarray(per_step, dtype=np.float64), 1e-20)  # 0 has no place on a log axis
        axes[1].semilogy(np.arange(len(shown)), shown, color=color, label=label)
        axes[1].axhline(limit, color=color, linestyle=":", linewidth=0.8)
    axes[1].set(xlabel="step", ylabel="max|Δ|", title="drift per step (dotted: tolerance)")
    if diffs:
        axes[1].legend(fontsize="small")


class CheckReportHtml:
    """``_repr_html_`` for ``CheckReport``: its three tables, the catalogue's names, the verdict, the drift."""

    def _repr_html_(self) -> str:
        return check_html(self)


def _rows_table(caption: str, rows, trajectory: bool = False) -> str:
    headers = ["layer", "quantity", "max|Δ|", "rel", "tol", "result"]
    cells = []
    for r in rows:
        result = "ok" if r.ok else "MISMATCH"
        if trajectory and not r.ok and r.first_bad_step is not None:
            result = f"MISMATCH from step {r.first_bad_step}"
        layer = "all" if r.quantity == "loss" and trajectory else r.layer
        cells.append(([layer, r.quantity, number(r.max_abs_err), number(r.rel_err), number(r.tol), result], r.ok))
    return table(caption, headers, cells)


def check_html(report) -> str:
    p = report.problem
    title = (
        f"fcgrad check: {p.name}, sizes {'-'.join(map(str, p.sizes))}, {','.join(p.activations)}, loss {p.loss}, "
        f"N={p.batch}, lr {p.lr:g}, {report.steps} steps, {p.dtype}"
    )
    parts = [_rows_table("gradients at the initial parameters, manual vs JAX", report.gradients)]
    for (layer, quantity), found in sorted(report.diagnoses.items()):
        parts.append(paragraph(f"layer {layer} {quantity}: {found[0]}"))
    if report.finite_difference:
        parts.append(_rows_table("manual vs central finite differences", report.finite_difference))
    if report.trajectory:
        caption = f"trajectory, manual vs JAX at every step (rule {report.rule})"
        parts.append(_rows_table(caption, report.trajectory, trajectory=True))
    verdict = "OK: manual and JAX agree" if report.ok else f"FAILED: {len(report.failures())} row(s) do not agree"
    parts.append(paragraph(verdict, "verdict"))
    diffs = {
        f"{'all' if r.quantity == 'loss' else r.layer} {r.quantity}": (report.histories[f"maxdiff_{_key(r)}"], r.tol)
        for r in report.trajectory
        if f"maxdiff_{_key(r)}" in report.histories
    }
    sides = (("manual", "loss_manual"), ("JAX", "loss_reference"))
    losses = {label: report.histories[key] for label, key in sides if key in report.histories}
    if diffs or losses:
        parts.append(figure_img(lambda fig: curves(fig, losses, diffs)))
    return page(title, parts)


def _key(row) -> str:
    return "loss" if row.quantity == "loss" else f"{row.quantity}{row.layer}"


__all__ = ["CheckReportHtml", "check_html", "curves", "esc", "figure_img", "number", "page", "paragraph", "table"]
