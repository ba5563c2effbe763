"""``--devices S`` with an optimizer, mini-batches, L2 or dropout: five sides of every step, each judged locally.

The sides: one-device manual (``manual.network`` + ``manual.optimizers``), manual over S shards (the same
backward on each column block, weighted n_k/n, summed by the ring all-reduce of ``manual.sharded``, then the
same optimizer), one-device JAX + optax (``reference.train``), and JAX + optax over a mesh of S devices by
``jit`` sharding and by ``shard_map`` (``reference.sharded``). Every step of every side starts from the
one-device manual side's parameters and optimizer state (the toolbox check's ``local`` rule), so each step is
judged on its own: each sharded side against its own engine's one-device step, and manual against JAX, the loss
and every parameter within the trajectory tolerance scaled by max(1, max|baseline|). The same batches and
dropout masks reach every side.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.engine import tolerances as tol
from fcgrad.engine.sharded import Comparison, ShardedReport
from fcgrad.engine.toolbox import MASK_STREAM, StepInputs, ToolboxProblem, host_copy
from fcgrad.engine.trajectory import RowAccumulator, step_scale
from fcgrad.manual import batches, network, optimizers
from fcgrad.manual.errors import DivergenceError, FcgradError
from fcgrad.manual.sharded import sharded_spec_gradients, split_columns
from fcgrad.reference.optimizers import with_moments
from fcgrad.reference.precision import x64_for
from fcgrad.reference.sharded import ENGINES, ShardedSpecStep
from fcgrad.reference.train import init_opt_state, jit_spec_step

PAIRS = {  # side -> the one-device side it is held against
    "jax": "manual",
    "manual-sharded": "manual",
    "jax-jit-sharded": "jax",
    "jax-shard_map-sharded": "jax",
}


def check_toolbox_sharded(p: ToolboxProblem, devices: list) -> ShardedReport:
    if any(layer.norm == "batch" for layer in p.spec):
        raise FcgradError("--devices with batch norm: its statistics over a sharded batch are another computation")
    start = time.perf_counter()
    n = len(devices)
    schedule = p.schedule()
    smallest = min(len(idx) for idx in schedule)
    if smallest < n:
        raise FcgradError(f"--devices {n}: a step of {smallest} sample(s) cannot give every device a column")
    dt = np.dtype(p.dtype)
    limit = tol.traj_abs_tol(p.dtype) if p.atol is None else p.atol
    opt = p.optimizer
    acc = {(side, key): RowAccumulator() for side in PAIRS for key in _row_keys(p)}
    first = {f"{key}{i}": np.asarray(value) for i, layer in enumerate(p.params) for key, value in layer.items()}
    history = {side: {"loss": [], **{key: [value] for key, value in first.items()}} for side in ("manual", *PAIRS)}
    inputs = StepInputs(len(p.spec), p.x.shape[1] if p.batch_size is None else p.batch_size)
    mask_rng = np.random.default_rng([p.seed, MASK_STREAM])
    pm, sm = p.params, optimizers.init_state(opt, p.params)
    no_running = [{} for _ in p.spec]
    with x64_for(p.dtype), np.errstate(over="ignore", invalid="ignore"):
        hyper = {k: jnp.asarray(v, dt) for k, v in opt.hyper.items()}
        lr, l2 = jnp.asarray(opt.lr, dt), jnp.asarray(p.l2, dt)
        sharded = {f"jax-{e}-sharded": ShardedSpecStep(devices, e) for e in ENGINES}
        state0 = init_opt_state(opt.name, lr, hyper, host_copy(pm, dt))
        for k, idx in enumerate(schedule):
            masks = batches.step_masks(p.spec, len(idx), mask_rng, dt)
            inputs.add(idx, masks)
            xb, tb = p.x[:, idx], p.t[:, idx]
            g = network.spec_loss_and_gradients(pm, xb, tb, p.spec, p.loss, masks, no_running, p.l2)
            if not np.isfinite(g.loss):
                raise DivergenceError(f"training diverged: the manual loss is {g.loss} at step {k}", k)
            pm_next, sm_next = optimizers.update(opt, g.grads, sm, pm)
            new, loss = {"manual": pm_next}, {"manual": g.loss}
            gs = sharded_spec_gradients(pm, xb, tb, p.spec, p.loss, masks, n, p.l2)
            new["manual-sharded"], loss["manual-sharded"] = optimizers.update(opt, gs.grads, sm, pm)[0], gs.loss
            # every JAX side from manual's state
            jp, js = host_copy(pm, dt), with_moments(opt.name, state0, host_copy(sm, dt))
            r = jit_spec_step(jp, js, no_running, xb, tb, masks, lr, hyper, l2, p.spec, p.loss, opt.name)
            new["jax"], loss["jax"] = jax.tree.map(np.asarray, r[0]), float(r[3])
            for side, run in sharded.items():
                placed = run.place(xb, tb, masks, dt)
                params, _, value = run(jp, js, placed, lr, hyper, l2, p.spec, p.loss, opt.name, len(idx))
                new[side], loss[side] = jax.tree.map(np.asarray, params), float(value)
            for side, base in PAIRS.items():
                a, r_ = loss[side], loss[base]
                acc[(side, (-1, "loss"))].add(np.array([a]), np.array([r_]), limit * step_scale(np.array([r_])))
                for i, layer in enumerate(new[base]):
                    for key in layer:
                        ref = np.asarray(layer[key])[None]
                        acc[(side, (i, key))].add(np.asarray(new[side][i][key])[None], ref, limit * step_scale(ref))
            for side in history:
                history[side]["loss"].append(loss[side])
                for i, layer in enumerate(new[side]):
                    for key, value in layer.items():
                        history[side].setdefault(f"{key}{i}", []).append(np.asarray(value))
            pm, sm = pm_next, sm_next
    comparisons = [
        Comparison(f"{side} vs {base}", "trajectory", [acc[(side, key)].row(*key, "local")[0] for key in _row_keys(p)])
        for side, base in PAIRS.items()
    ]
    sizes = tuple(int(b.shape[1]) for b in split_columns(p.x, n))
    report = ShardedReport(p, devices, sizes, comparisons, [], {**inputs.arrays(), **_arrays(history)})
    report.seconds = time.perf_counter() - start
    return report


def _row_keys(p: ToolboxProblem) -> list[tuple[int, str]]:
    return [(-1, "loss")] + [(i, key) for i, layer in enumerate(p.params) for key in layer]


def _arrays(history: dict) -> dict:
    """``loss_<side>`` (steps,) and ``w{i}_<side>`` (steps+1, ...): entry 0 the initial parameters, entry k+1 each
    side's step k from manual's state k."""
    out = {}
    for side, kept in history.items():
        name = side.replace("-", "_")
        for key, values in kept.items():
            out[f"{key}_{name}"] = np.array(values)
    return out
