"""``fcgrad audit``: where the blog's code departs from its own math, and what each departure costs.

Both sides start from the problem's parameters and train every ``w`` and ``b``, as the
blog's code does (also on Mazur's example, whose post keeps the biases fixed).

How a departure becomes a finding:
- Where: the blog's backward, fed JAX's correct inputs layer by layer (JAX's ``residual_y``
  for the loss, JAX's ``residual_x`` of the layer above for each layer), with only that
  departure on. A quantity it computes differently from JAX beyond the gradient tolerance
  is where the departure *originates*; inside a layer a wrong ``residual_z`` hides the three
  quantities computed from it. So 1/N lands on the top layer's ``residual_y``, the scalar
  bias on ``grad_b`` of each layer with more than one output, the update order on
  ``residual_x`` of each layer above the first. The first layer's ``residual_x`` (∂L/∂X, the
  blog's ``saliency``) feeds no layer and trains nothing, so it is left out.
- How much: that quantity of the variant with only that departure on, chained end to end
  through one step (``blog_gradients``) at the initial parameters, against JAX.
- What it costs: that variant trained for the problem's steps against the JAX run.
Attribution is checked on the combined variant too: each location where the variant with
every chosen departure on differs from JAX (fed JAX's inputs) must be claimed by exactly
the cause whose single-departure finding sits there; ``unexplained`` lists any other.
"""

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from fcgrad import manual, reference
from fcgrad.audits.drift import Divergence, _checkpoint_steps, _param_diff_per_entry, diverge  # noqa: F401
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import errors
from fcgrad.engine.problems import Problem
from fcgrad.manual.blog_code import (
    DEPARTURES,
    BlogDepartures,
    blog_fc_backward,
    blog_gradients,
    blog_loss_backward,
)

LOCAL_ORDER = ("residual_z", "grad_w", "grad_b", "residual_x")  # residual_z feeds the other three


def backward_order(location: tuple[int, str]) -> tuple[int, int]:
    """Sort key of a (layer, quantity): in the order the backward computes them, top layer first."""
    layer, quantity = location
    return (-layer, -1 if quantity == "residual_y" else LOCAL_ORDER.index(quantity))


@dataclass(frozen=True)
class Finding:
    cause: str  # one of DEPARTURES
    layer: int
    quantity: str  # the first quantity whose number the departure changes
    max_abs_err: float  # at step 0, only this departure on, against JAX
    rel_err: float
    explanation: str
    trajectory: Divergence  # only this departure on, against JAX

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "trajectory"}
        d.update(asdict(self.trajectory))
        return d


@dataclass
class AuditReport:
    problem: Problem  # as audited: trainable=None (every w and b)
    departures: BlogDepartures
    findings: list[Finding]
    not_found: dict[str, str]  # departure on but changing no number here -> why
    attribution: list[dict]  # locations where the combined variant differs: {layer, quantity, causes}
    unexplained: list[dict]  # locations no single departure accounts for (an audit of correct code: empty)
    combined: Divergence  # every chosen departure on, against JAX
    step0_tol: float
    trajectory_tol: float
    histories: dict = field(default_factory=dict, repr=False)  # the --save arrays, when asked

    ok: bool = True  # the audit ran; what it found does not change this


def audit_problem(p: Problem) -> Problem:
    """The problem as the audit runs it: both sides train every w and b, as the blog's code does."""
    return replace(p, trainable=None)


def _reference(p: Problem, params) -> dict:
    return reference.gradients(params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)


def _local_differences(
    p: Problem, ref: dict, departures: BlogDepartures, limit: float
) -> dict[tuple[int, str], tuple[float, float]]:
    """(layer, quantity) -> (max_abs, rel) where the blog's formulas, fed JAX's inputs, differ from JAX beyond ``limit``
    (relative)."""
    y, caches = manual.forward(p.params, p.x, p.activations)
    top = len(p.params) - 1
    found = {}
    err = errors(blog_loss_backward(y, p.t, p.loss, departures), ref["residual_y"])
    if err[1] > limit:
        found[(top, "residual_y")] = err
    for i in range(top, -1, -1):
        incoming = ref["residual_y"] if i == top else ref["layers"][i + 1]["residual_x"]  # (out, N), correct
        g, _ = blog_fc_backward(incoming, p.params[i], caches[i], p.activations[i], p.lr, departures)
        diffs = {q: errors(getattr(g, q), ref["layers"][i][q]) for q in LOCAL_ORDER}
        wrong = [q for q in LOCAL_ORDER if diffs[q][1] > limit and not (q == "residual_x" and i == 0)]
        if "residual_z" in wrong:
            wrong = ["residual_z"]  # the other three follow from it
        for q in wrong:
            found[(i, q)] = diffs[q]
    return found


def _end_to_end(p: Problem, ref: dict, departures: BlogDepartures, layer: int, quantity: str) -> tuple[float, float]:
    """Error of one quantity of the blog-code variant's step 0 (chained through the whole backward) against JAX."""
    g = blog_gradients(
        p.params, p.x, p.t, activations=p.activations, loss=p.loss, lr=p.lr, departures=departures, dtype=p.dtype
    )
    if quantity == "residual_y":
        return errors(g.residual_y, ref["residual_y"])
    return errors(getattr(g.layers[layer], quantity), ref["layers"][layer][quantity])


def explain(cause: str, p: Problem, layer: int) -> str:
    """One line, in the blog's terms."""
    n, width = p.batch, p.params[layer]["w"].shape[1]
    if cause == "unnormalized_loss_grad":
        what = "SquareLoss.backward returns y − t" if p.loss == "square" else f"the {p.loss} backward drops its 1/N"
        return (
            f"{what} but the forward divides by N = {n}: every gradient is {n}× too large, "
            f"an effective learning rate of lr·N = {p.lr * n:g}"
        )
    if cause == "scalar_bias_grad":
        return (
            f"grad_b sums residual_z over all axes, not only over the N columns: layer {layer}'s {width} biases "
            f"all move by one scalar, the sum of their {width} own gradients"
        )
    return (
        f"layer {layer}'s backward updates w before residual_x = w·residual_z: the residual sent to layer "
        f"{layer - 1} uses the updated w (w − lr·grad_w), not the w its forward used"
    )


def _no_finding_reason(cause: str, p: Problem) -> str:
    if cause == "unnormalized_loss_grad" and p.batch == 1:
        return "N = 1: y − t equals (y − t)/N, so the missing 1/N changes no number"
    if cause == "scalar_bias_grad" and all(layer["w"].shape[1] == 1 for layer in p.params):
        return "every layer has one output: the sum over all axes is the sum over the columns"
    if cause == "residual_after_update" and len(p.params) == 1:
        return "one layer: no residual is sent to a layer below (∂L/∂X trains nothing)"
    return "it changes no number beyond the gradient tolerance on this problem"


def _offset(progress, start: int, total: int):
    """``progress`` of one run among several: its steps counted after ``start`` of ``total``."""
    if progress is None:
        return None
    return lambda done, _steps: progress(start + done, total)


def audit(
    p: Problem,
    departures: BlogDepartures | None = None,
    *,
    keep_history: bool = False,
    progress=None,
    rtol: float | None = None,
    atol: float | None = None,
) -> AuditReport:
    """Run the blog-code variant (chosen departures on) and JAX from ``p.params``; find and attribute each.

    ``progress(done, total)`` counts the steps of every training run the audit makes (one per
    departure found, and the combined one). ``rtol``: the relative error at step 0 beyond which a departure
    changes a number; ``atol``: the parameters' drift beyond which the runs part (default: both by dtype,
    ``fcgrad.engine.tolerances``).
    """
    p = audit_problem(p)
    step0_tol = tol.grad_rel_tol(p.dtype) if rtol is None else rtol
    trajectory_tol = tol.traj_abs_tol(p.dtype) if atol is None else atol
    departures = BlogDepartures() if departures is None else departures
    ref = _reference(p, p.params)
    findings, not_found, claimed = [], {}, {}
    local = {cause: _local_differences(p, ref, BlogDepartures.only(cause), step0_tol) for cause in departures.on}
    runs = sum(1 for found in local.values() if found) + 1
    total = runs * p.steps
    started = 0
    for cause in departures.on:
        only = BlogDepartures.only(cause)
        if not local[cause]:
            not_found[cause] = _no_finding_reason(cause, p)
            continue
        trajectory, _ = diverge(p, only, progress=_offset(progress, started, total), atol=trajectory_tol)
        started += p.steps
        for layer, quantity in sorted(local[cause], key=backward_order):
            claimed.setdefault((layer, quantity), []).append(cause)
            max_abs, rel = _end_to_end(p, ref, only, layer, quantity)
            findings.append(Finding(cause, layer, quantity, max_abs, rel, explain(cause, p, layer), trajectory))
    combined_local = _local_differences(p, ref, departures, step0_tol)
    attribution = [
        {"layer": layer, "quantity": q, "causes": claimed.get((layer, q), [])}
        for layer, q in sorted(combined_local, key=backward_order)
    ]
    unexplained = [a for a in attribution if len(a["causes"]) != 1]
    unexplained += [
        {"layer": layer, "quantity": q, "causes": c, "missing_from_combined": True}
        for (layer, q), c in claimed.items()
        if (layer, q) not in combined_local
    ]
    combined, histories = diverge(
        p, departures, keep_history=keep_history, progress=_offset(progress, started, total), atol=trajectory_tol
    )
    return AuditReport(
        problem=p,
        departures=departures,
        findings=findings,
        not_found=not_found,
        attribution=attribution,
        unexplained=unexplained,
        combined=combined,
        step0_tol=step0_tol,
        trajectory_tol=trajectory_tol,
        histories=histories,
    )


def _json_safe(value):
    """Non-finite floats (a diverged run) become None: JSON has no inf or NaN."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def as_json(report: AuditReport) -> dict:
    p = report.problem
    return _json_safe(
        {
            "ok": report.ok,
            "problem": {**p.summary(), "trained": "every w and b, on both sides (as the blog's code does)"},
            "departures": list(report.departures.on),
            "findings": [f.as_dict() for f in report.findings],
            "not_found": report.not_found,
            "attribution": report.attribution,
            "unexplained": report.unexplained,
            "combined": asdict(report.combined),
            "tolerances": {"step0_rel": report.step0_tol, "trajectory_abs": report.trajectory_tol},
        }
    )


__all__ = ["DEPARTURES", "AuditReport", "Divergence", "Finding", "as_json", "audit", "diverge", "explain"]
