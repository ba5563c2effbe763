"""The text of a ``CheckReport``: every row names its layer and quantity (its JSON: ``RunReport.as_json``).

Trajectory rows also say which rule judged them (``global``: both sides trained freely,
float64; ``local``: one JAX step from manual's own parameters, float32) and, when they fail,
the first step beyond their tolerance. ``ascii_fallback`` turns a report into plain ASCII for
a terminal that cannot encode it.
"""

import numpy as np

from fcgrad.engine.report_forms import softmax as _softmax
from fcgrad.engine.row_table import layer_label, table
from fcgrad.engine.run import CheckReport
from fcgrad.reports.ascii import transliterate

RULE_WORDS = {
    "rel": "",
    "global": "both sides train freely; per step, tol scaled by max(1, max|param|)",
    "local": (
        "each step from manual's own parameters: manual's step k+1 vs one JAX step from manual's step k;"
        " tol = one float32 step's rounding (scaled by max(1, max|param|)) + a share of the step's size"
        " + what ReLU entries at the kink may flip"
    ),
    "shadow": "distance from a float64 JAX run, within a factor of JAX float32's own",
}


def ascii_fallback(text: str) -> str:
    """The same report in ASCII (Δ -> d, ‖ -> ||, ≤ -> <=, ...), for a stream that cannot encode it."""
    return transliterate(text)


def describe(p) -> str:
    return (
        f"{p.name}: sizes {'-'.join(map(str, p.sizes))}, activations {','.join(p.activations)}, "
        f"loss {p.loss}, N={p.batch}, lr {p.lr:g}, steps {p.steps}, {p.dtype}"
    )


def _trajectory_title(report: CheckReport) -> str:
    words = RULE_WORDS.get(report.rule, report.rule)
    compared = report.steps_compared
    span = f"every one of {compared} steps" if compared == report.steps else f"the first {compared} steps"
    return f"trajectory, manual vs JAX at {span}, rule {report.rule} ({words})"


def _warnings(report: CheckReport) -> list[str]:
    lines = []
    if report.all_gradients_zero:
        lines.append("warning: every gradient is exactly zero on both sides: this check proves nothing about them")
    if report.divergence is not None:
        lines.append(("note: " if report.divergence.side == "both" else "") + report.divergence.describe())
    return lines


def _verdict(report: CheckReport) -> str:
    if report.ok:
        worst = max((r.rel_err for r in report.gradients), default=0.0)
        if report.steps == 0:
            span = "no training steps to compare"
        elif report.divergence is not None:
            span = f"every step before both diverged at step {report.divergence.step}"
        else:
            span = f"every step of {report.steps}"
        return f"OK: manual and JAX agree (worst gradient rel {worst:.1e}, {span})"
    parts = [f"layer {layer_label(r)} {r.quantity}" for r in report.failures()]
    if report.divergence is not None and report.divergence.side != "both":
        parts.append(f"{report.divergence.side} diverged at step {report.divergence.step}")
    first = [r.first_bad_step for r in report.failures() if r.first_bad_step is not None]
    where = f"; first step beyond tolerance: {min(first)}" if first else ""
    return f"FAILED: {len(parts)} mismatch(es): {', '.join(parts)}{where}"


def text(report: CheckReport, quiet: bool = False) -> str:
    """The report as the CLI prints it; ``quiet``: the verdict line and the failing rows only."""
    if quiet:
        bad = report.failures()
        lines = [_verdict(report)]
        if bad:
            lines.append(table("failing rows:", bad))
        return "\n".join(lines + _named(report) + _warnings(report))
    p = report.problem
    parts = [
        f"fcgrad check — {describe(p)}",
        f"tolerances: gradients rel ≤ {report.rtol:.1e}; trajectory max|Δ| ≤ {report.atol:.1e}"
        f" × max(1, max|param|) per step (rule {report.rule})",
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
    parts.append("")
    if report.steps == 0:
        parts.append("trajectory: --steps 0, nothing to compare (no training step was taken)")
    else:
        parts.append(table(_trajectory_title(report), report.trajectory))
    y_name = "softmax(y)" if p.loss == "cross-entropy" else "y"
    y = _softmax(report.y_final) if p.loss == "cross-entropy" else report.y_final
    parts += ["", f"final loss {report.final_loss:.10g}", "", _arr("X", p.x), _arr("t", p.t), _arr(y_name, y)]
    if p.loss == "cross-entropy":
        parts.append("(softmax(y): the output's softmax probabilities, each column sums to 1)")
    parts += ["", *_named(report), *_warnings(report), _verdict(report)]
    return "\n".join(parts)


def _named(report: CheckReport) -> list[str]:
    """One line per failing gradient row the catalogue of classic mistakes recognises."""
    return [
        f"layer {layer} {quantity}: {d}"  # gradient rows: a real layer
        for (layer, quantity), found in report.diagnoses.items()
        for d in found[:1]
    ]


def _arr(name: str, a: np.ndarray) -> str:
    """``name=[[...]]`` as the blog prints its X, t and y."""
    return f"{name}=" + np.array2string(np.asarray(a), precision=6, separator=", ", prefix=f"{name}=")
