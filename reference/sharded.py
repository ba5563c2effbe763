"""The reference model data parallel over a mesh of devices, two ways; every derivative from jax.grad.

Two uses share the loss, the placement on the mesh and the value-and-gradient of each engine below: the
blog's net trained by free-running full-batch SGD (``train``, ``gradients``, ``sgd_step``, ``scan_train``)
and one optax step of a spec network (``ShardedSpecStep``, ``step``: any optimizer, L2, dropout, layer norm).

The N columns go to S devices in the blocks ``np.array_split`` makes (sizes differing by at most one);
each block is padded with zero columns to the largest size, with a weight per column (1 real, 0
padding). The loss is summed column by column with those weights and the GLOBAL 1/N, so padding never
counts and each shard's part is its share of the mean. The parameters are replicated on every device;
a spec step adds L2 once, on the replicated parameters. Batch normalisation is not here: its statistics
over a sharded batch are another computation (per-shard or synchronised), not the one-device one.

- ``engine="jit"``: the one-device formulas under ``jax.jit``, inputs placed with
  ``NamedSharding(mesh, PartitionSpec(None, "data"))``; the compiler picks the collectives.
- ``engine="shard_map"``: per-device code under ``jax.shard_map`` with the collective written out.

How the gradient of replicated parameters comes back inside ``shard_map`` (``check_vma=True``):
a replicated (device-invariant) input used with per-device data is implicitly cast to
per-device, and the transpose of that cast is a ``psum``. So ``jax.grad`` with respect to the
replicated parameters already returns the SUM over devices; adding ``psum`` sums it S times over.
The forms, pinned by the tests:

- ``"explicit"``: cast the parameters to per-device (``lax.pcast(..., to="varying")``) before
  differentiating, so ``jax.grad`` returns this shard's part, then ``psum`` it: the collective is
  the one written in the code. The default.
- ``"implicit"``: ``jax.grad`` with respect to the replicated parameters, no ``psum``: also right.
- ``"psum-after-grad"``: ``jax.grad`` with respect to the replicated parameters, then ``psum``:
  S times the gradient. A mistake, kept so the check can show that it finds it.

A spec step always takes the explicit form.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fcgrad.reference.model import LOSSES, forward_with_running, l2_penalty
from fcgrad.reference.optimizers import apply_updates, build
from fcgrad.reference.precision import DTYPES, check_shapes, dtype_name, to_jax, x64_for
from fcgrad.reference.train import static_trainable

AXIS = "data"
ENGINES = ("jit", "shard_map")
FORMS = ("explicit", "implicit", "psum-after-grad")


def padded_columns(a: np.ndarray, n_shards: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, N)`` -> ``(rows, S·c)`` with block k = the k-th ``np.array_split`` block, zero-padded to c,
    and the mask ``(1, S·c)``: 1 on real columns, 0 on padding."""
    blocks = np.array_split(a, n_shards, axis=1)
    width = blocks[0].shape[1]  # array_split puts the larger blocks first
    padded = [np.pad(b, ((0, 0), (0, width - b.shape[1]))) for b in blocks]
    mask = [np.pad(np.ones((1, b.shape[1]), a.dtype), ((0, 0), (0, width - b.shape[1]))) for b in blocks]
    return np.concatenate(padded, axis=1), np.concatenate(mask, axis=1)


def global_loss(params, x, t, weights, n_total, spec, loss_name, masks=None):
    """Σ over the columns of ``weights[j] · L(column j)`` / n_total: the real columns' share of the mean loss.

    ``x`` (in, c) and ``t`` (out, c) are a block of columns, ``weights`` (1, c); on the whole padded batch
    it is the one-device loss. ``spec``: a spec, or one activation name per layer (``model``).
    """
    y, _ = forward_with_running(params, x, spec, masks=masks)  # (out, c)
    per_column = jax.vmap(lambda yc, tc: LOSSES[loss_name](yc[:, None], tc[:, None]), in_axes=(1, 1))(y, t)  # (c,)
    return jnp.sum(per_column * weights[0]) / n_total


def _jit_value_and_grad(params, x, t, weights, masks, *, n_total, spec, loss_name):
    return jax.value_and_grad(global_loss)(params, x, t, weights, n_total, spec, loss_name, masks)


def _shard_value_and_grad(params, x, t, weights, masks, *, n_total, spec, loss_name, form):
    """Per device: this shard's columns, the replicated parameters -> (loss, gradients), both summed."""
    if form == "explicit":
        params = jax.tree.map(lambda a: jax.lax.pcast(a, AXIS, to="varying"), params)
    value, grads = jax.value_and_grad(global_loss)(params, x, t, weights, n_total, spec, loss_name, masks)
    if form != "implicit":
        grads = jax.lax.psum(grads, AXIS)  # the all-reduce of grad_w and grad_b
    return jax.lax.psum(value, AXIS), grads


def value_and_grad_fn(mesh, engine, form, n_total, spec, loss_name):
    """``(params, x, t, weights, masks) -> (loss, ∂L/∂params)`` of all N columns, by ``engine`` over ``mesh``."""
    statics = dict(n_total=n_total, spec=spec, loss_name=loss_name)
    if engine == "jit":
        return partial(_jit_value_and_grad, **statics)
    data = P(None, AXIS)
    return jax.shard_map(
        partial(_shard_value_and_grad, form=form, **statics),
        mesh=mesh,
        in_specs=(P(), data, data, data, data),
        out_specs=(P(), P()),
    )


def _update(params, grads, lr, trainable):
    return [
        {"w": p["w"] - lr * g["w"] if tw else p["w"], "b": p["b"] - lr * g["b"] if tb else p["b"]}
        for p, g, (tw, tb) in zip(params, grads, trainable)
    ]


@partial(jax.jit, static_argnames=("mesh", "engine", "form", "n_total", "activations", "loss_name", "trainable"))
def sgd_step(params, x, t, weights, lr, mesh, engine, form, n_total, activations, loss_name, trainable):
    """One step: (loss at ``params``, parameters after the update)."""
    value, grads = value_and_grad_fn(mesh, engine, form, n_total, activations, loss_name)(params, x, t, weights, None)
    return value, _update(params, grads, lr, trainable)


@partial(
    jax.jit, static_argnames=("mesh", "engine", "form", "n_total", "activations", "loss_name", "trainable", "steps")
)
def scan_train(params, x, t, weights, lr, mesh, engine, form, n_total, activations, loss_name, trainable, steps):
    """The gradients at ``params``, then ``steps`` SGD steps in one compiled loop.

    Returns (gradients, losses (steps,), history with entry 0 the initial parameters, final parameters).
    """
    value_and_grad = value_and_grad_fn(mesh, engine, form, n_total, activations, loss_name)

    def body(p, _):
        value, grads = value_and_grad(p, x, t, weights, None)
        new = _update(p, grads, lr, trainable)
        return new, (value, new)

    first = value_and_grad(params, x, t, weights, None)
    final, (losses, history) = jax.lax.scan(body, params, None, length=steps)
    history = jax.tree.map(lambda p0, h: jnp.concatenate([p0[None], h]), params, history)
    return first, losses, history, final


@partial(jax.jit, static_argnames=("mesh", "engine", "spec", "loss_name", "opt_name", "n_total"))
def step(params, opt_state, x, t, masks, weights, lr, hyper, l2, mesh, engine, spec, loss_name, opt_name, n_total):
    """One spec step from ``params`` and ``opt_state``: (new params, new state, the loss at ``params``)."""
    value, grads = value_and_grad_fn(mesh, engine, "explicit", n_total, spec, loss_name)(params, x, t, weights, masks)
    penalty, grad_penalty = jax.value_and_grad(l2_penalty)(params, l2)  # once, on the replicated parameters
    grads = jax.tree.map(jnp.add, grads, grad_penalty)
    updates, opt_state = build(opt_name, lr, hyper).update(grads, opt_state, params)
    return apply_updates(params, updates), opt_state, value + penalty


class DataMesh:
    """S devices on the axis ``AXIS``: columns split over them, parameters replicated."""

    def __init__(self, devices):
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.n = len(devices)
        self.columns = NamedSharding(self.mesh, P(None, AXIS))
        self.replicated = NamedSharding(self.mesh, P())

    def split(self, arrays, dtype):
        """Each (rows, N) array padded into S blocks of columns and placed (None stays None), and the
        weights (1, S·c): 1 on real columns, 0 on padding."""
        put = lambda a: jax.device_put(to_jax(a, dtype), self.columns)  # noqa: E731
        placed = [None if a is None else put(padded_columns(np.asarray(a), self.n)[0]) for a in arrays]
        _, weights = padded_columns(np.ones((1, np.shape(arrays[0])[1])), self.n)
        return placed, put(weights)

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)


def placed(params, x, t, devices, dtype, engine, form):
    """Checked inputs on the mesh: parameters replicated, columns split (call inside ``x64_for``)."""
    check_shapes(params, x, t)
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    n_shards, n_total = len(devices), np.shape(x)[1]
    if not 1 <= n_shards <= n_total:
        raise ValueError(f"devices: expected 1 to N = {n_total} devices (one sample each at least), got {n_shards}")
    data_mesh, dt = DataMesh(devices), DTYPES[dtype_name(dtype)]
    (xp, tp), weights = data_mesh.split((x, t), dt)
    params = data_mesh.replicate([{k: to_jax(v, dt) for k, v in p.items()} for p in params])
    return params, (xp, tp, weights), data_mesh.mesh, n_total


def train(
    params,
    x,
    t,
    *,
    devices,
    activations,
    loss="square",
    lr=0.1,
    steps=1_000,
    trainable=None,
    engine="jit",
    form="explicit",
    dtype="float64",
):
    """``reference.train``'s contract, data parallel over ``devices``, plus the gradients at ``params``.

    Returns NumPy arrays: ``{"losses", "params", "final", "gradients": {"loss", "layers": [{"grad_w",
    "grad_b"}, ...]}}``; ``params`` per layer ``{"w": (steps+1, in, out), "b": (steps+1, out, 1)}``.
    """
    with x64_for(dtype):
        jparams, (jx, jt, weights), mesh, n = placed(params, x, t, devices, dtype, engine, form)
        (value, grads), losses, history, final = scan_train(
            jparams,
            jx,
            jt,
            weights,
            lr,
            mesh,
            engine,
            form,
            n,
            tuple(activations),
            loss,
            static_trainable(trainable, len(params)),
            int(steps),
        )
        to_np = lambda tree: jax.tree.map(np.asarray, tree)  # noqa: E731
        layers = [{"grad_w": np.asarray(g["w"]), "grad_b": np.asarray(g["b"])} for g in grads]
        return {
            "losses": np.asarray(losses),
            "params": to_np(history),
            "final": to_np(final),
            "gradients": {"loss": float(value), "layers": layers},
        }


def gradients(params, x, t, *, devices, activations, loss="square", engine="jit", form="explicit", dtype="float64"):
    """Loss and every layer's grad_w, grad_b, data parallel over ``devices``: ``train``'s ``gradients``, no step."""
    common = dict(devices=devices, activations=activations, loss=loss, engine=engine, form=form, dtype=dtype)
    return train(params, x, t, steps=0, **common)["gradients"]


class ShardedSpecStep(DataMesh):
    """The compiled spec ``step`` of one engine on one mesh, with the step's columns split and placed."""

    def __init__(self, devices, engine: str):
        if engine not in ENGINES:
            raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
        super().__init__(devices)
        self.engine = engine

    def place(self, x, t, masks, dtype):
        """The step's data padded into S blocks and placed over the mesh: (x, t, masks, weights)."""
        (xp, tp, *mp), weights = self.split((x, t, *masks), dtype)
        return xp, tp, mp, weights

    def __call__(self, params, opt_state, placed, lr, hyper, l2, spec, loss_name, opt_name, n_total):
        params, opt_state = self.replicate((params, opt_state))
        x, t, masks, weights = placed
        return step(params, opt_state, x, t, masks, weights, lr, hyper, l2, self.mesh, self.engine, spec,
                    loss_name, opt_name, n_total)  # fmt: skip
