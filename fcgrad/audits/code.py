"""``fcgrad audit --code FILE.py``: a user's own NumPy network against JAX, with each mistake located and named.

The file follows one of the protocols of ``fcgrad.audits.code_load`` (the blog's classes, or a
``step`` function). Both sides start from the problem's parameters and data; the activation of
each layer and the loss are read off the user's forward (``y = f(wᵀx + b)`` for a library
activation, ``L`` = the square or cross-entropy loss), so JAX runs the same model.

The findings, as ``fcgrad.audits.blog`` makes them for the blog's code:
- end to end at step 0: ``residual_y``, then each layer's ``grad_w``, ``grad_b`` (read from its
  update) and ``residual_x``, against JAX;
- where (classes only): each layer's backward fed JAX's upstream (``residual_y`` for the top
  layer, the ``residual_x`` of the layer above for the others), on fresh copies of the net; a
  quantity wrong there originates in that layer; the catalogue (``fcgrad.diagnosis.catalogue``) names it;
- drift: the file's own training step and JAX's ``p.steps`` times, every step compared.
The first layer's ``residual_x`` (∂L/∂X) trains nothing and is left out, as in ``audit``.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from fcgrad import reference
from fcgrad.audits.blog import Divergence, _checkpoint_steps, _param_diff_per_entry, backward_order
from fcgrad.audits.code_load import ClassNet, build_class_net, load_module
from fcgrad.audits.code_step import StepNet, build_step_net
from fcgrad.diagnosis.catalogue import Diagnosis, diagnose
from fcgrad.diagnosis.network import network_context
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import Row, errors
from fcgrad.engine.problems import Problem, and_example, random_problem
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.losses import LOSSES
from fcgrad.testing import BACKWARD_REL_TOL

# Rows pass within the layer helper's BACKWARD_REL_TOL (1e-10): a user's formula may be written another way
# than the library's (from y rather than z), which costs digits: measured rel 4.4e-11 on residual_z of a
# correct tanh layer driven into saturation (|z| ≈ 30), where 1 − y² is a difference of nearly equal numbers.
# A gradient read back from an update, (w − (w − lr·g)) / lr, carries the rounding of w itself: up to
# about ε·max|w| / lr per entry. Measured on a correct class network in the blog's shape (examples/ with
# its mistakes fixed) and on the blog's code: max|Δ| ≤ 8.2e-16 with lr 0.1 and |w| ≤ 1.3, where
# ε·|w|/lr = 2.9e-15. 8× that bound covers the two roundings (the product and the difference) with room,
# and stays 1e8× below an O(1e-3) wrong gradient.
UPDATE_ROUNDING_FACTOR = 8.0
# A layer's forward or the loss matches a library formula to a few ulps when it is that formula
# (measured rel ≤ 1e-16 on the fixtures); 1e-9 tells formulas apart without being fooled by rounding.
FORMULA_MATCH_TOL = 1e-9
BLOG_SIZES = (2, 4, 1)


@dataclass(frozen=True)
class CodeFinding:
    layer: int
    quantity: str
    max_abs_err: float  # fed JAX's upstream (classes), or end to end (step protocol)
    rel_err: float
    diagnoses: tuple[Diagnosis, ...]
    note: str = ""  # e.g. residual_z named as the suspect


@dataclass
class CodeAuditReport:
    file: str
    protocol: str  # "classes" or "step"
    problem: Problem
    end_to_end: list[Row]  # step 0, the file's own numbers flowing down
    isolated: list[Row]  # each layer fed JAX's upstream (classes only)
    findings: list[CodeFinding]
    drift: Divergence
    histories: dict = field(default_factory=dict, repr=False)  # loss_code, loss_reference, param_maxdiff per step

    @property
    def ok(self) -> bool:
        return not self.findings and all(r.ok for r in self.end_to_end)


def _match(what: str, candidates: dict, value_of, actual, file: str) -> str:
    for name, fn in candidates.items():
        expected = value_of(fn)
        if np.shape(expected) == np.shape(actual) and errors(actual, expected)[1] <= FORMULA_MATCH_TOL:
            return name
    raise FcgradError(f"{file}: {what} matches none of {', '.join(candidates)}; expected one of the library's")


def _read_model(cn: ClassNet, p: Problem) -> tuple[tuple[str, ...], str]:
    """The activation of each layer and the loss the user's forward computes."""
    cn.set_params(p.params, p.lr)
    acts, x = [], p.x
    for i, lp in enumerate(p.params):
        y = np.asarray(cn.forward_one(i, x))
        z = lp["w"].T @ x + lp["b"]  # (out, in)·(in, N) + (out, 1) -> (out, N)
        acts.append(_match(f"layer {i} forward f(wᵀx + b)", ACTIVATIONS, lambda a, z=z: a.forward(z), y, cn.file))
        x = y
    value = cn.loss_forward(x, p.t)
    loss = _match("the loss forward(y, t)", LOSSES, lambda lo: float(lo.forward(x, p.t)), value, cn.file)
    return tuple(acts), loss


def _problem_for(sizes: tuple[int, ...], problem: Problem | None, file: str) -> Problem:
    if problem is None:
        return and_example() if sizes == BLOG_SIZES else random_problem(list(sizes))
    if tuple(problem.sizes) != sizes:
        raise FcgradError(
            f"{file}: the network has sizes {'-'.join(map(str, sizes))}, the problem "
            f"{'-'.join(map(str, problem.sizes))}; expected the same widths"
        )
    return problem


def _row(layer: int, quantity: str, a, r, floor: float = 0.0) -> Row:
    limit = BACKWARD_REL_TOL
    a = np.asarray(a, np.float64)
    if a.shape != np.shape(r):
        return Row(layer, quantity, float("nan"), float("nan"), limit, False)
    max_abs, rel = errors(a, r)
    return Row(layer, quantity, max_abs, rel, limit, bool(rel <= limit or max_abs <= floor))


def _residual_floor(upstream) -> float:
    """Rounding of an activation's derivative written from y (1 − y² loses digits where y saturates): ε per entry."""
    return UPDATE_ROUNDING_FACTOR * float(np.finfo(np.float64).eps) * float(np.max(np.abs(upstream), initial=0.0))


def _floor(w, lr: float) -> float:
    return UPDATE_ROUNDING_FACTOR * float(np.finfo(np.float64).eps) * max(1.0, float(np.max(np.abs(w)))) / lr


def _layer_rows(i: int, grads, ref_layer: dict, params, lr: float, upstream) -> tuple[list[Row], dict]:
    """Rows of one layer's (grad_w, grad_b, residual_x, residual_z or None), residual_z first when known."""
    grad_w, grad_b, residual_x, residual_z = grads
    rows, values = [], {"grad_w": grad_w, "grad_b": grad_b}
    if residual_z is not None:
        rows.append(_row(i, "residual_z", residual_z, ref_layer["residual_z"], _residual_floor(upstream)))
        values["residual_z"] = residual_z
    rows += [
        _row(i, "grad_w", grad_w, ref_layer["grad_w"], _floor(params[i]["w"], lr)),
        _row(i, "grad_b", grad_b, ref_layer["grad_b"], _floor(params[i]["b"], lr)),
    ]
    if i > 0 and residual_x is not None:
        rows.append(_row(i, "residual_x", residual_x, ref_layer["residual_x"]))
        values["residual_x"] = residual_x
    return rows, values


def _classes_step0(cn: ClassNet, p: Problem, ref: dict) -> tuple[list[Row], list[Row], dict]:
    """(end-to-end rows, isolated rows, isolated values by (layer, quantity))."""
    top = len(p.params) - 1
    cn.set_params(p.params, p.lr)
    cn.loss_forward(cn.forward(p.x), p.t)
    residual = cn.loss_backward()
    e2e = [_row(top, "residual_y", residual, ref["residual_y"])]
    iso, values = list(e2e), {(top, "residual_y"): residual}
    for i in range(top, -1, -1):
        g = cn.layer_backward(i, residual)
        e2e += _layer_rows(i, g, ref["layers"][i], p.params, p.lr, residual)[0]
        residual = g.residual_x
    for i in range(top, -1, -1):
        cn.set_params(p.params, p.lr)
        cn.forward(p.x)
        upstream = ref["residual_y"] if i == top else ref["layers"][i + 1]["residual_x"]  # (out, N), correct
        rows, vals = _layer_rows(i, cn.layer_backward(i, upstream), ref["layers"][i], p.params, p.lr, upstream)
        iso += rows
        values.update({(i, q): v for q, v in vals.items()})
    return e2e, iso, values


def _findings(rows: list[Row], values: dict, p: Problem, ref: dict, *, first_only: bool = False) -> list[CodeFinding]:
    """Failing rows as findings, named by the catalogue; within a layer a wrong residual_z hides what follows.

    ``first_only`` (end-to-end rows): only the first wrong quantity in backward order, the others inherit it.
    """
    wrong = {(r.layer, r.quantity): r for r in rows if not r.ok}
    measured = {(r.layer, r.quantity) for r in rows}
    notes: dict[tuple[int, str], str] = {}
    for layer in {k[0] for k in wrong}:
        after = [(layer, q) for q in ("grad_w", "grad_b", "residual_x") if (layer, q) in measured]
        if (layer, "residual_z") in wrong:
            for k in after:
                wrong.pop(k, None)
        elif (layer, "residual_z") not in measured and len(after) > 1 and all(k in wrong for k in after):
            notes[after[0]] = (
                f"{', '.join(q for _, q in after)} are all wrong from correct inputs: residual_z (the activation's "
                "derivative) is the suspect; name it residual_z in the backward and the audit will check it"
            )
            for k in after[1:]:
                wrong.pop(k)
    out = []
    for key in sorted(wrong, key=backward_order):
        r = wrong[key]
        truth = ref["residual_y"] if r.quantity == "residual_y" else ref["layers"][r.layer][r.quantity]
        ctx = network_context(p, ref, r.layer, r.quantity)
        found = tuple(diagnose(values[key], truth, ctx))
        out.append(CodeFinding(r.layer, r.quantity, r.max_abs_err, r.rel_err, found, notes.get(key, "")))
        if first_only:
            break
    return out


def _finite(values: np.ndarray, k: int) -> float | None:
    return float(values[k]) if k < len(values) and np.isfinite(values[k]) else None


def drift(stepper, p: Problem) -> tuple[Divergence, dict]:
    """``stepper(params) -> (loss, new params)`` and JAX, ``p.steps`` steps from ``p.params``, every step compared."""
    params, losses, history, diverged = p.params, [], [p.params], None
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(p.steps):
            value, params = stepper(params)
            if not np.isfinite(value):
                diverged = k
                break
            losses.append(value)
            history.append(params)
    done = len(losses)
    common = dict(activations=p.activations, loss=p.loss)
    r = reference.train(p.params, p.x, p.t, lr=p.lr, steps=done, **common)
    if diverged is None:  # entry k of each: the loss at the parameters after k steps
        losses.append(stepper(params)[0])
    final_ref = reference.gradients(r["final"], p.x, p.t, **common)["loss"]
    mine = [{q: np.stack([h[i][q] for h in history[: done + 1]]) for q in ("w", "b")} for i in range(len(p.params))]
    dp, scale = _param_diff_per_entry(mine, r["params"])  # (done + 1,)
    lc, lj = np.asarray(losses, np.float64), np.append(r["losses"], final_ref)[: len(losses)]
    over = np.flatnonzero(dp[1:] > tol.TRAJ_ABS_TOL_F64 * max(1.0, scale))
    checkpoints = [
        {"step": m, "loss_blog": _finite(lc, m), "loss_jax": _finite(lj, m), "param_max_abs_diff": float(dp[m])}
        for m in _checkpoint_steps(done) if m <= done
    ]  # fmt: skip
    div = Divergence(
        steps=done,
        diverged_at_step=diverged,
        loss_max_abs_diff=float(np.max(np.abs(lc[:done] - lj[:done]))) if done else 0.0,
        param_max_abs_diff=float(np.max(dp)),
        first_step_params_differ=int(over[0]) + 1 if over.size else None,
        final_loss_blog=_finite(lc, done),
        final_loss_jax=_finite(lj, done),
        final_param_max_abs_diff=float(dp[-1]),
        checkpoints=checkpoints,
    )
    return div, {"loss_code": lc, "loss_reference": lj, "param_maxdiff": dp}


def audit_code(path: str, problem: Problem | None = None, *, steps: int | None = None) -> CodeAuditReport:
    """Audit the network in ``path`` on ``problem`` (default: the blog's AND for a 2-4-1 net, else a random one)."""
    module = load_module(path)
    if hasattr(module, "Net"):
        net: ClassNet | StepNet = build_class_net(module, path)
        p = _problem_for(net.sizes, problem, path)
        acts, loss = _read_model(net, p)
    else:
        net = build_step_net(module, path)
        p = problem or and_example()
        acts, loss = net.model(p)
    p = replace(p, activations=acts, loss=loss, trainable=None, dtype="float64")
    p = p.with_options(steps=steps, dtype="float64")
    ref = reference.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss)
    if isinstance(net, ClassNet):
        e2e, iso, values = _classes_step0(net, p, ref)
        findings = _findings(iso, values, p, ref)
    else:
        e2e, values = net.step0(p, ref, _row, _layer_rows)
        iso, findings = [], _findings(e2e, values, p, ref, first_only=True)
    div, histories = drift(net.stepper(p), p)
    return CodeAuditReport(
        path, "classes" if isinstance(net, ClassNet) else "step", p, e2e, iso, findings, div, histories
    )
