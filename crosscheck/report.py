"""Text and JSON renderings of a ``CheckReport``: every row names its layer and quantity."""

import numpy as np

from crosscheck.compare import Row
from crosscheck.run import CheckReport


def describe(p) -> str:
    return (
        f"{p.name}: sizes {'-'.join(map(str, p.sizes))}, activations {','.join(p.activations)}, "
        f"loss {p.loss}, N={p.batch}, lr {p.lr:g}, steps {p.steps}, {p.dtype}"
    )


def _layer(row: Row) -> str:
    return "all" if row.layer < 0 else str(row.layer)


def table(title: str, rows: list[Row], limit_name: str = "tol") -> str:
    lines = [title, f"  {'layer':<6}{'quantity':<12}{'max|Δ|':>10}{'rel':>10}{limit_name:>10}  result"]
    for r in rows:
        lines.append(
            f"  {_layer(r):<6}{r.quantity:<12}{r.max_abs_err:>10.1e}{r.rel_err:>10.1e}{r.tol:>10.0e}  "
            + ("ok" if r.ok else "MISMATCH")
        )
    return "\n".join(lines)


def text(report: CheckReport) -> str:
    p = report.problem
    parts = [
        f"fcgrad check — {describe(p)}",
        "",
        table("gradients at the initial parameters, manual vs JAX (rel = ‖Δ‖/‖JAX‖)", report.gradients),
    ]
    if report.finite_difference:
        parts += [
            "",
            table(
                "manual vs central finite differences (float64, h=1e-6, probed entries;"
                " also ok below the rounding floor 10·ε·max(1,|L|)/h)",
                report.finite_difference,
            ),
        ]
    parts += [
        "",
        table(
            f"trajectory, manual vs JAX at every one of {report.steps} steps (tol scaled by max(1, max|param|))",
            report.trajectory,
        ),
        "",
        f"final loss {report.final_loss:.10g}",
        "",
        _arr("X", p.x),
        _arr("t", p.t),
        _arr("y", report.y_final),
        "",
    ]
    if report.ok:
        worst = max(r.rel_err for r in report.gradients)
        parts.append(f"OK: manual and JAX agree (worst gradient rel {worst:.1e}, every step of {report.steps})")
    else:
        bad = ", ".join(f"layer {_layer(r)} {r.quantity}" for r in report.failures())
        parts.append(f"FAILED: {len(report.failures())} mismatch(es): {bad}")
    return "\n".join(parts)


def _arr(name: str, a: np.ndarray) -> str:
    """``name=[[...]]`` as the blog prints its X, t and y."""
    return f"{name}=" + np.array2string(np.asarray(a), precision=6, separator=", ", prefix=f"{name}=")


def as_json(report: CheckReport) -> dict:
    p = report.problem
    traj = report.trajectory
    return {
        "ok": report.ok,
        "problem": p.summary(),
        "gradients": [r.as_dict() for r in report.gradients],
        "finite_difference": {
            "max_rel_err": max((r.rel_err for r in report.finite_difference), default=None),
            "rows": [r.as_dict() for r in report.finite_difference],
        },
        "trajectory": {
            "steps": report.steps,
            "max_abs_param_err": max((r.max_abs_err for r in traj if r.quantity != "loss"), default=0.0),
            "max_abs_loss_err": max((r.max_abs_err for r in traj if r.quantity == "loss"), default=0.0),
            "rows": [r.as_dict() for r in traj],
        },
        "final_loss": report.final_loss,
        "y": np.asarray(report.y_final).tolist(),
    }
