"""Text and JSON of ``audit --code``; ``-q``: the findings, what they pass on, and the verdict."""

from dataclasses import asdict

from fcgrad.audits.blog import _json_safe
from fcgrad.audits.code import CodeAuditReport
from fcgrad.audits.code.trace.reading import reading, reading_lines
from fcgrad.audits.drift import drift_lines
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import Row
from fcgrad.reports.check import describe

READ = {
    "functions": "gradients as the file's backward returns them, applied by plain gradient descent",
    "train_step": "gradients read back from each of its steps",
    "loss_grads": "gradients as the file's loss method returns them, applied by plain gradient descent",
    "build": "gradients read back from its passes",
}
PROBLEM_START = "the problem's parameters"
START = {"build": "the weights the file makes itself"}  # where both sides start, when not the problem's parameters


def _result(r: Row, origins: set) -> str:
    if r.ok:
        return "ok"
    return "MISMATCH (origin)" if (r.layer, r.quantity) in origins else "MISMATCH (inherited)"


def _rows(title: str, rows: list[Row], origins: set) -> list[str]:
    lines = [title, f"  {'layer':<6}{'quantity':<12}{'max|Δ|':>10}{'rel':>10}  result"]
    for r in rows:
        lines.append(f"  {r.layer:<6}{r.quantity:<12}{r.max_abs_err:>10.1e}{r.rel_err:>10.1e}  {_result(r, origins)}")
    return lines


def _index(f) -> list[str]:
    if f.index is None:
        return []
    return [f"  largest difference at index {f.index}: file {f.value:.10g}, correct {f.expected:.10g}"]


def _findings(report: CodeAuditReport) -> list[str]:
    parts = []
    for k, f in enumerate(report.findings, 1):
        parts.append(
            f"finding {k}: layer {f.layer} {f.quantity} — max|Δ| {f.max_abs_err:.2e}, rel {f.rel_err:.2e} "
            f"({f.judged_from})"
        )
        if f.line is not None:
            parts.append(f"  {f.file}:{f.line}: {f.statement}")
        parts += _index(f)
        parts += [f"  {d.message}" for d in f.diagnoses] or ["  no catalogue entry matches: a mistake of its own kind"]
        parts += [f"  {f.note}"] if f.note else []
    return parts


def _inherited(report: CodeAuditReport) -> list[str]:
    if not report.inherited:
        return []
    number = {(f.layer, f.quantity): k for k, f in enumerate(report.findings, 1)}
    groups: dict[tuple, list[str]] = {}
    for h in report.inherited:
        groups.setdefault((h.origin, h.judged), []).append(f"layer {h.layer} {h.quantity}")
    lines = []
    for (origin, judged), where in groups.items():
        source = f"finding {number[origin]}" if origin in number else "no finding"
        how = "" if judged else ", or a mistake of their own: the file exposes no residual to judge them from"
        lines.append(f"inherited from {source}{how}: {', '.join(where)}")
    return lines


def verdict(report: CodeAuditReport) -> str:
    names = [
        f"layer {f.layer} {f.quantity}" + (f" ({f.diagnoses[0].name})" if f.diagnoses else "") for f in report.findings
    ]
    if names:
        return f"{len(names)} finding(s): {', '.join(names)}"
    if report.cannot_tell:
        return f"no findings, but this problem cannot tell a right backward from a wrong one: {report.cannot_tell[0]}"
    return "no findings: the file matches JAX"


def text(report: CodeAuditReport, *, quiet: bool = False) -> str:
    """The audit as text; ``quiet``: each finding with its names, what it passes on, and the verdict line."""
    if quiet:
        return "\n".join([*_findings(report), *_inherited(report), verdict(report)])
    p = report.problem
    origins = {(f.layer, f.quantity) for f in report.findings}
    read = READ.get(report.protocol, "gradients read from each update")
    parts = [
        f"fcgrad audit --code {report.file} ({report.protocol} protocol) — {describe(p)}",
        f"the file's layout: {report.layout.describe()} ({report.layout_from})",
        *report.notes,
        *(f"this problem cannot tell right from wrong: {why}" for why in report.cannot_tell),
        f"both sides start from {START.get(report.protocol, PROBLEM_START)} and train every w and b; {read}",
        "",
        *_rows("step 0, end to end (the file's own numbers flowing down), vs JAX", report.end_to_end, origins),
        "",
    ]
    traced = reading_lines(report.trace)
    if traced:
        parts += ["step 0, the file's backward read in its own names (each statement, what its value is)", *traced, ""]
    if report.isolated:
        title = "step 0, each layer fed JAX's upstream (where a mistake originates)"
        parts += [*_rows(title, report.isolated, origins), ""]
    parts += _findings(report)
    parts += _inherited(report)
    if report.findings or report.inherited:
        parts.append("")
    drift = [line.replace("loss blog", "loss file") for line in drift_lines(report.drift, tol.TRAJ_ABS_TOL_F64)]
    parts += ["the file's training vs JAX:", *drift, ""]
    parts.append(verdict(report))
    return "\n".join(parts)


def as_json(report: CodeAuditReport) -> dict:
    return _json_safe(
        {
            "ok": report.ok,
            "file": report.file,
            "protocol": report.protocol,
            "layout": {"weights": report.layout.weights, "samples": report.layout.samples, "from": report.layout_from},
            "problem": report.problem.summary(),
            "notes": list(report.notes),
            "cannot_tell": list(report.cannot_tell),
            "end_to_end": [r.as_dict() for r in report.end_to_end],
            "isolated": [r.as_dict() for r in report.isolated],
            "findings": [
                {
                    "layer": f.layer,
                    "quantity": f.quantity,
                    "max_abs_err": f.max_abs_err,
                    "rel_err": f.rel_err,
                    "judged_from": f.judged_from,
                    "index": None if f.index is None else list(f.index),
                    "value": f.value,
                    "expected": f.expected,
                    "diagnoses": [{"name": d.name, "message": d.message} for d in f.diagnoses],
                    "note": f.note,
                    "file": f.file,
                    "line": f.line,
                    "statement": f.statement,
                    "target": f.target,
                }
                for f in report.findings
            ],
            "inherited": [
                {
                    "layer": h.layer,
                    "quantity": h.quantity,
                    "origin": None if h.origin is None else list(h.origin),
                    "judged": h.judged,
                }
                for h in report.inherited
            ],
            "traced": reading(report.trace),
            "drift": asdict(report.drift),
        }
    )
