"""Text and JSON of ``audit --code``."""

from dataclasses import asdict

from fcgrad.audits.blog import _json_safe
from fcgrad.audits.code import CodeAuditReport
from fcgrad.audits.drift import drift_lines
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import Row
from fcgrad.reports.check import describe


def _rows(title: str, rows: list[Row]) -> list[str]:
    lines = [title, f"  {'layer':<6}{'quantity':<12}{'max|Δ|':>10}{'rel':>10}  result"]
    for r in rows:
        lines.append(
            f"  {r.layer:<6}{r.quantity:<12}{r.max_abs_err:>10.1e}{r.rel_err:>10.1e}  {'ok' if r.ok else 'MISMATCH'}"
        )
    return lines


def text(report: CodeAuditReport) -> str:
    p = report.problem
    parts = [
        f"fcgrad audit --code {report.file} ({report.protocol} protocol) — {describe(p)}",
        "both sides start from the problem's parameters and train every w and b; gradients read from each update",
        "",
        *_rows("step 0, end to end (the file's own numbers flowing down), vs JAX", report.end_to_end),
        "",
    ]
    if report.isolated:
        parts += [*_rows("step 0, each layer fed JAX's upstream (where a mistake originates)", report.isolated), ""]
    for k, f in enumerate(report.findings, 1):
        how = "fed JAX's upstream" if report.isolated else "end to end"
        parts.append(
            f"finding {k}: layer {f.layer} {f.quantity} — max|Δ| {f.max_abs_err:.2e}, rel {f.rel_err:.2e} ({how})"
        )
        parts += [f"  {d.message}" for d in f.diagnoses] or ["  no catalogue entry matches: a mistake of its own kind"]
        parts += [f"  {f.note}"] if f.note else []
    if report.findings:
        parts.append("")
    drift = [line.replace("loss blog", "loss file") for line in drift_lines(report.drift, tol.TRAJ_ABS_TOL_F64)]
    parts += ["the file's training vs JAX:", *drift, ""]
    names = [
        f"layer {f.layer} {f.quantity}" + (f" ({f.diagnoses[0].name})" if f.diagnoses else "") for f in report.findings
    ]
    parts.append(f"{len(names)} finding(s): {', '.join(names)}" if names else "no findings: the file matches JAX")
    return "\n".join(parts)


def as_json(report: CodeAuditReport) -> dict:
    return _json_safe(
        {
            "ok": report.ok,
            "file": report.file,
            "protocol": report.protocol,
            "problem": report.problem.summary(),
            "end_to_end": [r.as_dict() for r in report.end_to_end],
            "isolated": [r.as_dict() for r in report.isolated],
            "findings": [
                {
                    "layer": f.layer,
                    "quantity": f.quantity,
                    "max_abs_err": f.max_abs_err,
                    "rel_err": f.rel_err,
                    "diagnoses": [{"name": d.name, "message": d.message} for d in f.diagnoses],
                    "note": f.note,
                }
                for f in report.findings
            ],
            "drift": asdict(report.drift),
        }
    )
