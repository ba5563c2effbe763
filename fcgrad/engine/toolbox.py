"""The check of a spec network trained with an optimizer on mini-batches: manual and JAX+optax, every step.

Both sides start from the same parameters, see the same batches (``manual.batches.schedule``)
and the same dropout masks (drawn once, handed to both as data), and each then runs on its own:
manual with its hand-derived backward and hand-written optimizer, the reference with ``jax.grad``
and optax. After every step the loss, every parameter, batch norm's running averages and the
optimizer's moments are compared within crosscheck's trajectory tolerance (scaled by max(1, max|JAX|)).
"""

import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.diagnosis.toolbox import StepRecord, diagnose_layers, diagnose_step
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import Row, rel_row
from fcgrad.engine.timing import Timings
from fcgrad.engine.trajectory import StepRows
from fcgrad.manual import batches, network, optimizers, validate
from fcgrad.manual.errors import DivergenceError, FcgradError
from fcgrad.manual.losses import LOSSES
from fcgrad.manual.spec import Spec, check_spec_params, format_spec, init_running, init_spec_params, parse_spec
from fcgrad.reference.grads import spec_value_and_grads
from fcgrad.reference.optimizers import with_moments
from fcgrad.reference.precision import x64_for
from fcgrad.reference.train import init_opt_state, jit_spec_step, jit_spec_step_on_branches

MASK_STREAM = 1  # dropout masks come from default_rng([seed, MASK_STREAM]), apart from the shuffling


@dataclass(frozen=True)
class ToolboxProblem:
    name: str
    spec: Spec
    loss: str
    x: np.ndarray = field(repr=False)  # (in, N)
    t: np.ndarray = field(repr=False)  # (out, N)
    params: list = field(repr=False)
    optimizer: optimizers.Optimizer
    batch_size: int | None = None  # None: every step sees all N columns
    epochs: int = 1
    seed: int = 0  # shuffling and dropout masks
    l2: float = 0.0
    dtype: str = "float64"
    steps: int | None = None  # None: every step of ``epochs`` epochs; else this many steps, epochs as needed
    rtol: float | None = None  # the gradient tolerance; None: the dtype's default
    atol: float | None = None  # the trajectory tolerance; None: the dtype's default

    def schedule(self) -> list[np.ndarray]:
        n = self.x.shape[1]
        if self.steps is None:
            return batches.schedule(n, self.batch_size, self.epochs, self.seed)
        per_epoch = 1 if self.batch_size is None else -(-n // self.batch_size)
        return batches.schedule(n, self.batch_size, max(1, -(-self.steps // per_epoch)), self.seed)[: self.steps]


def make_problem(
    spec,
    x,
    t,
    *,
    loss: str = "cross-entropy",
    optimizer: optimizers.Optimizer | str | None = None,
    batch_size: int | None = None,
    epochs: int = 1,
    seed: int = 0,
    l2: float = 0.0,
    params=None,
    dtype: str = "float64",
    name: str | None = None,
    steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> ToolboxProblem:
    """Check every input and fill in defaults (Adam with optax's settings, parameters from ``seed``)."""
    spec = parse_spec(spec) if isinstance(spec, str) else tuple(spec)
    dt = validate.check_dtype(dtype)
    loss = validate.check_loss(loss)
    params = init_spec_params(spec, seed=seed, dtype=dt) if params is None else check_spec_params(spec, params, dt)
    x, t = validate.check_data(x, t, params, dt)
    if LOSSES[loss].one_hot and not (np.all((t == 0) | (t == 1)) and np.all(t.sum(axis=0) == 1)):
        raise FcgradError(f"T: the {loss} loss expects one-hot columns (0s and a single 1), got other values")
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not (np.isfinite(l2) and l2 >= 0):
        raise FcgradError(f"l2: expected a non-negative finite number, got {l2!r}")
    if optimizer is None or isinstance(optimizer, str):  # a name: optax's defaults, lr 1e-3
        optimizer = optimizers.make_optimizer(optimizer or "adam", 1e-3)
    if not isinstance(optimizer, optimizers.Optimizer):
        raise FcgradError(f"optimizer: expected a name or make_optimizer(...), got {optimizer!r}")
    steps = None if steps is None else validate.check_steps(steps)
    p = ToolboxProblem(
        name or format_spec(spec), spec, loss, x, t, params, optimizer, batch_size, epochs,
        validate.check_seed(seed), float(l2), dt.name, steps, rtol, atol,
    )  # fmt: skip
    p.schedule()  # checks batch_size and epochs now, before any work
    return p


@dataclass
class ToolboxReport:
    problem: ToolboxProblem
    rows: list[Row]  # loss (layer -1), then per layer: params, running averages, optimizer moments
    steps: int
    losses_manual: np.ndarray  # (steps,) loss at the parameters each step starts from
    losses_reference: np.ndarray
    params_manual: list  # after the last step
    params_reference: list
    running_manual: list
    running_reference: list
    seconds: float  # wall time of the whole comparison (both sides)
    # (layer, parameter) of a failing row -> the classic optimizer mistakes its first failing step matches
    diagnoses: dict = field(default_factory=dict)
    first_failing_step: int | None = None  # the first step where a parameter left its tolerance
    kink_steps: list = field(default_factory=list)  # steps judged on manual's side of every ReLU kink
    histories: dict = field(default_factory=dict, repr=False)  # every step's batch, masks and both sides' state
    timings: Timings | None = field(default=None, repr=False)  # where the time went

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]


def _moments(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "count"}


def host_copy(tree, dt):
    """Manual's arrays for a compiled JAX step, as NumPy copies of ``dt``: the compiled call takes NumPy arrays in
    microseconds, where making each a JAX array first took a tenth of a millisecond (most of a small step)."""
    return jax.tree.map(lambda a: np.array(a, dt), tree)


def _step_fails(a, r, limit: float) -> bool:
    """One step's parameter array beyond the trajectory tolerance (as the rows judge it; NaN fails)."""
    a, r = np.asarray(a, np.float64), np.asarray(r, np.float64)
    return not bool(np.max(np.abs(a - r)) <= limit * max(1.0, float(np.max(np.abs(r)))))


def compare_spec_gradients(p: ToolboxProblem, *, params=None, seed: int = 0) -> list[Row]:
    """Manual vs JAX at ``params`` (default: the initial ones) on all N columns, one seeded set of masks.

    Rows: the loss, ∂L/∂ every parameter, and ``residual_x`` of layer 0 (∂L/∂X), within the gradient tolerance.
    """
    params = p.params if params is None else params
    dt = np.dtype(p.dtype)
    masks = batches.step_masks(p.spec, p.x.shape[1], np.random.default_rng([seed, MASK_STREAM]), dt)
    running = init_running(p.spec, dt)
    m = network.spec_loss_and_gradients(params, p.x, p.t, p.spec, p.loss, masks, running, p.l2)
    with x64_for(p.dtype):
        value, grads, grad_x = spec_value_and_grads(
            params, p.x, p.t, masks, running, jnp.asarray(p.l2, dt), p.spec, p.loss
        )
        grads, grad_x, value = jax.tree.map(np.asarray, (grads, grad_x, value))
    limit = tol.grad_rel_tol(p.dtype) if p.rtol is None else p.rtol
    rows = [rel_row(-1, "loss", m.loss, value, limit)]
    rows += [rel_row(i, f"grad_{k}", m.grads[i][k], grads[i][k], limit) for i in range(len(p.spec)) for k in grads[i]]
    rows.append(rel_row(0, "residual_x", m.layers[0].residual_x, grad_x, limit))
    return rows


def diagnose_gradients(p: ToolboxProblem, rows: list[Row], *, params=None, seed: int = 0) -> dict:
    """When a row of ``compare_spec_gradients`` (same ``params`` and ``seed``) fails: the catalogue's names for
    the batch norm and dropout backwards that differ from the reference's, ``{(layer, stage): [Diagnosis]}``."""
    if all(r.ok for r in rows):
        return {}
    params = p.params if params is None else params
    masks = batches.step_masks(p.spec, p.x.shape[1], np.random.default_rng([seed, MASK_STREAM]), np.dtype(p.dtype))
    return diagnose_layers(p, params, masks)


def check_toolbox(
    p: ToolboxProblem,
    *,
    update=optimizers.update,
    rule: str = "local",
    keep_history: bool = False,
    timings: Timings | None = None,
) -> ToolboxReport:
    """Run both sides through every step of ``p``'s schedule and compare after each step.

    ``update`` is the manual optimizer step (``manual.optimizers.update`` unless a test plants a mistake).
    ``rule``: ``local`` (default) gives JAX+optax manual's own parameters, running averages and optimizer
    state before every step, so each step is judged on its own: adaptive optimizers near a minimum (RMSProp
    at optax's decay 0.9) amplify rounding chaotically, and two correct free-running sides part by 4e-4
    within 1,000 steps. ``global`` lets both sides run freely from the same start.
    ``keep_history``: ``report.histories`` holds what a replay needs (``history_arrays``).
    """
    if rule not in ("local", "global"):
        raise ValueError(f"rule: expected local or global, got {rule!r}")
    start = time.perf_counter()
    n_layers = len(p.spec)
    limit = tol.traj_abs_tol(p.dtype) if p.atol is None else p.atol
    dt = np.dtype(p.dtype)
    opt = p.optimizer
    judged = StepRows(limit)  # each step judged on its own (NaN fails), in blocks of steps

    def add(layer: int, quantity: str, a, r):
        judged.add((layer, quantity), a, r)

    pm, rm = p.params, init_running(p.spec, dt)
    sm = optimizers.init_state(opt, pm)
    mask_rng = np.random.default_rng([p.seed, MASK_STREAM])
    losses_m, losses_r = [], []
    record = None  # manual's side of the first step where a parameter fails
    timings = Timings() if timings is None else timings
    kept = _History(p, pm, rm, sm) if keep_history else None
    relu = any(layer.activation == "relu" for layer in p.spec)
    kink_steps = []  # steps judged again with JAX on manual's side of every ReLU kink
    with x64_for(p.dtype):
        pr, rr = host_copy(pm, dt), host_copy(rm, dt)
        hyper = {k: jnp.asarray(v, dt) for k, v in opt.hyper.items()}
        lr, l2 = jnp.asarray(opt.lr, dt), jnp.asarray(p.l2, dt)
        sr = init_opt_state(opt.name, lr, hyper, pr)
        # a diverging run overflows before its loss turns inf; the check of the loss reports it
        with np.errstate(over="ignore", invalid="ignore"):
            for k, idx in enumerate(p.schedule()):
                masks = batches.step_masks(p.spec, len(idx), mask_rng, dt)
                xb, tb = p.x[:, idx], p.t[:, idx]
                with timings.phase("manual_run"):
                    g = network.spec_loss_and_gradients(pm, xb, tb, p.spec, p.loss, masks, rm, p.l2)
                if not np.isfinite(g.loss):
                    raise DivergenceError(
                        f"training diverged: the manual loss is {g.loss} at step {k} ({opt.describe()}); "
                        "try a smaller learning rate",
                        k,
                    )
                if rule == "local":  # JAX+optax starts this step where manual starts it
                    pr, rr = host_copy(pm, dt), host_copy(rm, dt)
                    sr = with_moments(opt.name, sr, host_copy(sm, dt))
                pm_before, sm_before, rm_before, start_r = pm, sm, rm, (pr, sr, rr)
                with timings.phase("manual_run"):
                    pm, sm = update(opt, g.grads, sm, pm)
                rm = g.running
                with timings.phase("jax_run"):
                    pr, sr, rr, value, moments = jit_spec_step(
                        pr, sr, rr, xb, tb, masks, lr, hyper, l2, p.spec, p.loss, opt.name
                    )
                    hp, hr, hs = jax.tree.map(np.asarray, (pr, rr, moments))
                if rule == "local" and relu and _any_step_fails(pm, hp, g.loss, value, limit):
                    # a ReLU entry within rounding of its kink may have taken the other side on JAX's run: the
                    # same step again with every ReLU entry on manual's side of the kink; a wrong term still fails
                    with timings.phase("jax_run"):
                        branches = _manual_branches(pm_before, xb, p.spec, masks, rm_before)
                        pr, sr, rr, value, moments = jit_spec_step_on_branches(
                            *start_r, xb, tb, masks, branches, lr, hyper, l2, p.spec, p.loss, opt.name
                        )
                        hp, hr, hs = jax.tree.map(np.asarray, (pr, rr, moments))
                        kink_steps.append(k)
                if kept is not None:
                    kept.add(idx, masks, pm, hp, rm, hr, sm, hs)
                with timings.phase("comparisons"):
                    if record is None and any(
                        _step_fails(pm[i][q], hp[i][q], limit) for i in range(n_layers) for q in pm[i]
                    ):
                        record = StepRecord(k, pm_before, g.grads, sm_before, pm)
                    losses_m.append(g.loss)
                    losses_r.append(float(value))
                    for i in range(n_layers):
                        for key in pm[i]:
                            add(i, key, pm[i][key], hp[i][key])
                        for key in rm[i]:
                            add(i, f"running_{key}", rm[i][key], hr[i][key])
                        for name, tree in _moments(sm).items():
                            for key in tree[i]:
                                add(i, f"{name}[{key}]", tree[i][key], hs[name][i][key])
        final_r = jax.tree.map(np.asarray, (pr, rr))
    judged.add_steps((-1, "loss"), np.array(losses_m), np.array(losses_r))
    order = [(-1, "loss")] + [key for key in judged.acc if key != (-1, "loss")]
    rows = judged.rows(order, rule)
    diagnoses = {}
    if record is not None:
        failing = [(r.layer, r.quantity) for r in rows if not r.ok and r.layer >= 0 and r.quantity in pm[r.layer]]
        diagnoses = diagnose_step(opt, record, failing)
    return ToolboxReport(
        p, rows, len(losses_m), np.array(losses_m), np.array(losses_r), pm, final_r[0], rm, final_r[1],
        time.perf_counter() - start, diagnoses, None if record is None else record.step, kink_steps,
        {} if kept is None else kept.arrays(losses_m, losses_r), timings,
    )  # fmt: skip


def _any_step_fails(pm, hp, loss_m, loss_r, limit: float) -> bool:
    """Any parameter, or the loss, of one step beyond the trajectory tolerance."""
    loss_fails = _step_fails(np.array([loss_m]), np.array([float(loss_r)]), limit)
    return loss_fails or any(_step_fails(pm[i][q], hp[i][q], limit) for i in range(len(pm)) for q in pm[i])


def _manual_branches(params, x, spec, masks, running) -> list:
    """Each ReLU layer's side of the kink on manual's forward, 1 where its input is > 0 (relu' there), else 0."""
    _, caches, _ = network.spec_forward(params, x, spec, masks, running)
    return [
        (cache.n > 0).astype(x.dtype) if layer.activation == "relu" else None for layer, cache in zip(spec, caches)
    ]


class StepInputs:
    """Each step's columns of X and dropout masks, padded to the batch size: ``batch_index`` (steps, batch), -1
    past a short last batch, and ``mask{i}`` (steps, out, batch) for each layer with dropout, 0 there."""

    def __init__(self, n_layers: int, batch: int):
        self.batch = batch
        self.index, self.masks = [], [[] for _ in range(n_layers)]

    def add(self, idx, masks) -> None:
        row = np.full(self.batch, -1, np.int64)
        row[: len(idx)] = idx
        self.index.append(row)
        for i, mask in enumerate(masks):
            if mask is not None:
                padded = np.zeros((mask.shape[0], self.batch), mask.dtype)
                padded[:, : mask.shape[1]] = mask
                self.masks[i].append(padded)

    def arrays(self) -> dict:
        out = {"batch_index": np.array(self.index, np.int64).reshape(len(self.index), self.batch)}
        for i, layer_masks in enumerate(self.masks):
            if layer_masks:
                out[f"mask{i}"] = np.array(layer_masks)
        return out


class _History:
    """What a replay of a toolbox run needs, step by step: the steps' inputs, then each side's loss, parameters,
    running averages and optimizer moments (``{name}_{key}{i}_{side}``), entry 0 the state before step 0."""

    def __init__(self, p: ToolboxProblem, params, running, state):
        self.p = p
        self.inputs = StepInputs(len(p.spec), p.x.shape[1] if p.batch_size is None else p.batch_size)
        self.params = {side: [[dict(layer) for layer in params]] for side in ("manual", "reference")}
        self.running = {side: [[dict(layer) for layer in running]] for side in ("manual", "reference")}
        self.moments = {side: [_moments(state)] for side in ("manual", "reference")}

    def add(self, idx, masks, pm, hp, rm, hr, sm, hs) -> None:
        self.inputs.add(idx, masks)
        self.params["manual"].append(pm)
        self.params["reference"].append(hp)
        self.running["manual"].append(rm)
        self.running["reference"].append(hr)
        self.moments["manual"].append(_moments(sm))
        self.moments["reference"].append(hs)

    def arrays(self, losses_m, losses_r) -> dict:
        out = {**self.inputs.arrays(), "loss_manual": np.array(losses_m), "loss_reference": np.array(losses_r)}
        for side in ("manual", "reference"):
            for i in range(len(self.p.spec)):
                for key in self.params[side][0][i]:
                    out[f"{key}{i}_{side}"] = np.array([np.asarray(s[i][key]) for s in self.params[side]])
                for key in self.running[side][0][i]:
                    out[f"running_{key}{i}_{side}"] = np.array([np.asarray(s[i][key]) for s in self.running[side]])
                for name, tree in self.moments[side][0].items():
                    for key in tree[i]:
                        kept = [np.asarray(s[name][i][key]) for s in self.moments[side]]
                        out[f"{name}_{key}{i}_{side}"] = np.array(kept)
        return out
