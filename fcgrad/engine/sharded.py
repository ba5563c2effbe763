"""``fcgrad check --devices S``: five sides of one data-parallel step, compared, and the usual mistakes named.

The sides: one-device manual, manual over S shards (``manual.sharded``), one-device JAX, and JAX
over a mesh of S devices by ``jit`` sharding and by ``shard_map`` (``reference.sharded``). Each
sharded side is compared with the one-device side of its own engine (so a row that fails points
at the sharding, not at the derivation) and manual with JAX as ``fcgrad check`` does: the gradients
at the initial parameters, then the loss and every parameter at every step of training. Splitting
the batch changes only the order of the sums, so the float64 tolerances of ``tolerances.py`` hold.

A sharded gradient that disagrees is tested against what each known mistake would give, computed
from the shards' own one-device gradients G_k (the local means over each shard's n_k columns):
the right sum Σ n_k/N·G_k, a mean of per-shard means Σ G_k/S, a double all-reduce S·Σ n_k/N·G_k,
and no all-reduce (shard 0 keeps n_0/N·G_0). A match within the gradient tolerance names the mistake.
"""

from dataclasses import dataclass, field

import jax
import numpy as np

from fcgrad import manual, reference
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import Row, errors, rel_row
from fcgrad.engine.problems import Problem
from fcgrad.engine.run import compare_gradients, compare_trajectories
from fcgrad.manual import sharded as manual_sharded
from fcgrad.manual.errors import FcgradError
from fcgrad.reference import sharded as reference_sharded

MEAN_OF_MEANS = "mean of per-shard means"
DOUBLE_ALL_REDUCE = "double all-reduce"
BIAS_UNREDUCED = "bias gradient left unreduced"
LOCAL_UPDATES = "replicas updating from local gradients"
REPLICAS_DISAGREE = "replicas disagree"
UNEXPLAINED = "unexplained mismatch"

# what each one is, for a catalogue of mistakes and for the report
MISTAKES = {
    MEAN_OF_MEANS: "each shard's local mean weighted 1/S, not n_k/N: wrong whenever the shards are uneven",
    DOUBLE_ALL_REDUCE: "the summed gradient summed again: S times too large (psum after jax.grad in shard_map)",
    BIAS_UNREDUCED: "grad_w all-reduced but grad_b not: the replicas' biases part after the first step",
    LOCAL_UPDATES: "no all-reduce: every replica steps with its own shard's gradient and the replicas part",
    REPLICAS_DISAGREE: "the replicas' parameters part although their gradients agree",
    UNEXPLAINED: "a sharded gradient that matches neither the one-device one nor a known mistake",
}

HISTORY_BYTES = 1 << 30  # every side's parameters at every step are held at once; refuse runs above this


@dataclass(frozen=True)
class Comparison:
    pair: str  # "manual-sharded vs manual": the side and its baseline
    what: str  # "gradients", "trajectory" or "replicas"
    rows: list[Row]


@dataclass(frozen=True)
class Finding:
    side: str
    mistake: str  # one of the names above
    detail: str  # the layers and quantities, and by how much
    step: int | None = None  # the first step after which the replicas disagree, when they do


@dataclass
class ShardedReport:
    problem: Problem
    devices: list = field(repr=False)
    shard_sizes: tuple[int, ...]
    comparisons: list[Comparison]
    findings: list[Finding]
    # every side's loss (steps,) and parameters (steps+1, ...) at every step, for --save: loss_<side>, w0_<side>, ...
    histories: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.findings and all(r.ok for c in self.comparisons for r in c.rows)

    def failures(self) -> list[tuple[str, Row]]:
        return [(c.pair, r) for c in self.comparisons for r in c.rows if not r.ok]


def arrange_devices(n: int, *, platform: str | None = None) -> list:
    """The first ``n`` devices of ``platform`` (default: JAX's default backend), asking for ``n`` host devices first.

    Call before anything runs on JAX: the number of CPU devices is fixed when JAX starts.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise FcgradError(f"--devices: expected a positive number of devices, got {n!r}")
    wanted = max(int(n), jax.config.jax_num_cpu_devices)
    try:
        jax.config.update("jax_num_cpu_devices", wanted)
    except RuntimeError:
        pass  # JAX has started already: what it has is all there is
    try:
        devices = jax.devices(platform)
    except RuntimeError as exc:
        raise FcgradError(f"--devices: expected a JAX platform {platform!r}, got none ({exc})") from None
    if len(devices) < n:
        kind = devices[0].platform
        hint = (
            "JAX had started before the devices were asked for; ask first (XLA_FLAGS="
            f"--xla_force_host_platform_device_count={n} works too)"
            if kind == "cpu"
            else f"run with JAX_PLATFORMS=cpu for {n} host devices"
        )
        raise FcgradError(f"--devices {n}: expected {n} devices, got {len(devices)} {kind} device(s); {hint}")
    return devices[:n]


def _check_size(p: Problem, n: int) -> None:
    if n > p.batch:
        raise FcgradError(f"--devices {n}: expected at most N = {p.batch} devices (one sample each), got {n}")
    per_step = sum(v.size for layer in p.params for v in layer.values()) * np.dtype(p.dtype).itemsize
    held = (p.steps + 1) * per_step * (4 + n)  # four one-replica sides and the S manual replicas
    if held > HISTORY_BYTES:
        raise FcgradError(
            f"--devices: the check holds every step of every side, expected at most {HISTORY_BYTES >> 20} MiB, "
            f"got {held >> 20} MiB for {p.steps} steps: use fewer --steps"
        )


def _hypotheses(p: Problem, n: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """grad_w and grad_b per layer as each known mistake would compute them over these shards."""
    xs, ts = manual_sharded.split_columns(p.x, n), manual_sharded.split_columns(p.t, n)
    sizes = [x_k.shape[1] for x_k in xs]
    local = [
        manual.gradients(p.params, x_k, t_k, activations=p.activations, loss=p.loss, dtype=p.dtype).layers
        for x_k, t_k in zip(xs, ts)
    ]

    def combine(weights):  # Σ_k weight_k · G_k, layer by layer
        return [
            {q: sum(w * getattr(g[i], q) for w, g in zip(weights, local)) for q in ("grad_w", "grad_b")}
            for i in range(len(p.params))
        ]

    right = [n_k / p.batch for n_k in sizes]
    return {
        MEAN_OF_MEANS: combine([1 / n] * n),
        DOUBLE_ALL_REDUCE: combine([n * w for w in right]),
        "no all-reduce": combine([right[0]] + [0.0] * (n - 1)),
    }


def name_gradient_mistake(side: str, grads: list[dict], hypotheses: dict, rows: list[Row], limit: float):
    """The Finding that explains every failing grad_w/grad_b row of ``side`` (None when none fails)."""
    failing = [(r.layer, r.quantity) for r in rows if not r.ok and r.quantity in ("grad_w", "grad_b")]
    if not failing:
        return None
    where = ", ".join(f"layer {i} {q}" for i, q in failing)
    for name, predicted in hypotheses.items():
        if all(errors(grads[i][q], predicted[i][q])[1] <= limit for i, q in failing):
            if name == "no all-reduce":
                name = BIAS_UNREDUCED if {q for _, q in failing} == {"grad_b"} else LOCAL_UPDATES
            return Finding(side, name, f"{where} equal what {name} gives")
    return Finding(side, UNEXPLAINED, f"{where} match no known data-parallel mistake")


def _grad_rows(side: list[dict], base: list[dict], limit: float) -> list[Row]:
    """grad_w and grad_b of every layer; both sides as ``[{"grad_w", "grad_b"}, ...]``."""
    return [rel_row(i, q, side[i][q], base[i][q], limit) for i in range(len(side)) for q in ("grad_w", "grad_b")]


def _param_grads(layers) -> list[dict]:
    return [{"grad_w": g.grad_w, "grad_b": g.grad_b} for g in layers]


def _trajectory_row(layer: int, quantity: str, a, r, limit: float) -> Row:
    max_abs, rel = errors(a, r)
    scaled = limit * max(1.0, float(np.max(np.abs(r))))
    return Row(layer, quantity, max_abs, rel, scaled, bool(max_abs <= scaled))


def _param_grads(layers) -> list[dict]:
    return [{"grad_w": g.grad_w, "grad_b": g.grad_b} for g in layers]


def _trajectory_rows(losses, history, base_losses, base_history: dict, limit: float) -> list[Row]:
    """``history`` per layer {"w", "b"} stacked over steps; ``base_history`` keyed ``w0``, ``b0``, ..."""
    rows = [_trajectory_row(-1, "loss", losses, base_losses, limit)]
    rows += [
        _trajectory_row(i, k, history[i][k], base_history[f"{k}{i}"], limit)
        for i in range(len(history))
        for k in ("w", "b")
    ]
    return rows


def first_disagreement(replicas: list, limit: float) -> tuple[int, str] | None:
    """(first step after which some replica's parameter differs from replica 0's beyond ``limit``, where)."""
    first = None
    for i in range(len(replicas[0])):
        for k in ("w", "b"):
            ref = replicas[0][i][k]  # (steps+1, ...)
            bound = limit * max(1.0, float(np.max(np.abs(ref))))
            for r, rep in enumerate(replicas[1:], start=1):
                bad = np.flatnonzero(np.max(np.abs(rep[i][k] - ref).reshape(len(ref), -1), axis=1) > bound)
                if bad.size and (first is None or bad[0] < first[0]):
                    first = (int(bad[0]), f"layer {i} {k} of replica {r}")
    return first


def _gradient_comparisons(
    p: Problem, n: int, jax_runs: dict, rtol: float | None = None
) -> tuple[list[Comparison], list[Finding]]:
    """At the initial parameters: manual vs JAX, and each sharded side vs its one-device baseline."""
    common = dict(activations=p.activations, loss=p.loss, dtype=p.dtype)
    limit, last = tol.grad_rel_tol(p.dtype) if rtol is None else rtol, len(p.params) - 1
    m1 = manual.gradients(p.params, p.x, p.t, **common)
    j1 = reference.gradients(p.params, p.x, p.t, **common)
    ms = manual_sharded.sharded_gradients(p.params, p.x, p.t, n, **common)
    baselines = {"manual": (_param_grads(m1.layers), m1.loss), "jax": (j1["layers"], j1["loss"])}
    sides = {"manual-sharded": ([{"grad_w": g["w"], "grad_b": g["b"]} for g in ms.reduced[0]], ms.loss, "manual")}
    sides.update({side: (r["gradients"]["layers"], r["gradients"]["loss"], "jax") for side, r in jax_runs.items()})
    comparisons = [Comparison("manual vs jax", "gradients", compare_gradients(p, rtol=rtol))]
    hypotheses = _hypotheses(p, n)
    findings = []
    for side, (grads, loss, base_name) in sides.items():
        base_grads, base_loss = baselines[base_name]
        rows = _grad_rows(grads, base_grads, limit)
        if side == "manual-sharded":  # residual_x stays with its shard: side by side it is the one-device one
            rows += [
                rel_row(i, "residual_x", ms.residual_x[i], m1.layers[i].residual_x, limit) for i in range(last + 1)
            ]
        rows.append(rel_row(last, "loss", loss, base_loss, limit))
        comparisons.append(Comparison(f"{side} vs {base_name}", "gradients", rows))
        finding = name_gradient_mistake(side, grads, hypotheses, rows, limit)
        if finding:
            findings.append(finding)
    return comparisons, findings


def _replica_rows(replicas: list, limit: float) -> list[Row]:
    """Every replica but 0 against replica 0 at every step, one row per layer and parameter."""
    rows = []
    for i in range(len(replicas[0])):
        for k in ("w", "b"):
            others = np.stack([r[i][k] for r in replicas[1:]])  # (S−1, steps+1, ...)
            rows.append(_trajectory_row(i, k, others, np.broadcast_to(replicas[0][i][k], others.shape), limit))
    return rows


def sharded_check(
    p: Problem,
    n: int,
    *,
    platform: str | None = None,
    form: str = "explicit",
    rtol: float | None = None,
    atol: float | None = None,
) -> ShardedReport:
    """Every comparison of ``fcgrad check --devices n`` on one problem (``form``: see ``reference.sharded``).

    ``rtol`` and ``atol`` override the gradient and trajectory tolerances, as in ``fcgrad.engine.run.check``.
    """
    devices = arrange_devices(n, platform=platform)
    _check_size(p, n)
    train = dict(activations=p.activations, loss=p.loss, dtype=p.dtype, lr=p.lr, steps=p.steps, trainable=p.trainable)
    jax_runs = {
        f"jax-{engine}-sharded": reference_sharded.train(
            p.params, p.x, p.t, devices=devices, engine=engine, form=form, **train
        )
        for engine in reference_sharded.ENGINES
    }
    comparisons, findings = _gradient_comparisons(p, n, jax_runs, rtol)

    limit = tol.traj_abs_tol(p.dtype) if atol is None else atol
    # the global rule: the other sides are compared with the whole one-device JAX run it keeps
    traj = compare_trajectories(p, keep_history=True, rule="global", atol=atol)
    traj_rows, hist = traj.rows, traj.histories
    comparisons.append(Comparison("manual vs jax", "trajectory", traj_rows))
    base = {  # the one-device histories, keyed loss, w0, b0, ...
        name: {key[: -len(suffix)]: v for key, v in hist.items() if key.endswith(suffix)}
        for name, suffix in (("manual", "_manual"), ("jax", "_reference"))
    }
    mt = manual_sharded.sharded_train(p.params, p.x, p.t, n, **train)
    runs = {"manual-sharded": (mt.losses, mt.replicas[0], "manual")}
    runs.update({side: (r["losses"], r["params"], "jax") for side, r in jax_runs.items()})
    for side, (losses, history, base_name) in runs.items():
        rows = _trajectory_rows(losses, history, base[base_name]["loss"], base[base_name], limit)
        comparisons.append(Comparison(f"{side} vs {base_name}", "trajectory", rows))
    if n > 1:
        comparisons.append(
            Comparison("manual-sharded replicas vs replica 0", "replicas", _replica_rows(mt.replicas, limit))
        )
    disagreement = first_disagreement(mt.replicas, limit)
    if disagreement:  # named by the gradient finding that explains it, when there is one
        step, where = disagreement
        named = [f for f in findings if f.side == "manual-sharded" and f.mistake in (BIAS_UNREDUCED, LOCAL_UPDATES)]
        mistake = named[0].mistake if named else REPLICAS_DISAGREE
        detail = "; ".join([f.detail for f in named] + [f"{where} differs from replica 0's after step {step}"])
        findings = [f for f in findings if f not in named] + [Finding("manual-sharded", mistake, detail, step)]
    sizes = tuple(int(x_k.shape[1]) for x_k in manual_sharded.split_columns(p.x, n))
    return ShardedReport(p, devices, sizes, comparisons, findings, _histories(hist, mt, jax_runs, sizes))


def _histories(one_device: dict, mt, jax_runs: dict, sizes) -> dict:
    """Each side's every step under one naming: ``loss_<side>`` and ``w{i}_<side>``, ``b{i}_<side>``; the sides are
    ``manual``, ``reference`` (one-device JAX), ``manual_sharded`` (every replica: ``..._replica{r}``) and
    ``jax_jit_sharded``, ``jax_shard_map_sharded``."""
    out = {k: v for k, v in one_device.items() if not k.startswith("maxdiff_")}
    out["shard_sizes"] = np.array(sizes)
    out["loss_manual_sharded"] = np.asarray(mt.losses)
    for r, replica in enumerate(mt.replicas):
        for i, layer in enumerate(replica):
            for key, value in layer.items():
                out[f"{key}{i}_manual_sharded_replica{r}"] = np.asarray(value)
    for side, run in jax_runs.items():
        name = side.replace("-", "_")
        out[f"loss_{name}"] = np.asarray(run["losses"])
        for i, layer in enumerate(run["params"]):
            for key, value in layer.items():
                out[f"{key}{i}_{name}"] = np.asarray(value)
    return out
