"""The reference model data parallel over a mesh of devices, two ways; every derivative from jax.grad.

The batch's N columns go to S devices in the blocks ``np.array_split`` makes (sizes differing by at
most one); each block is padded with zero columns to the largest size, and a mask (1 on real columns,
0 on padding) keeps the padding out of the loss. The parameters are replicated on every device.

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
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fcgrad.reference.model import LOSSES, forward
from fcgrad.reference.precision import DTYPES, check_shapes, dtype_name, x64_for
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


def global_loss(params, x, t, mask, n_total, activations, loss_name):
    """The loss of the real columns among ``x`` (in, c) with the GLOBAL 1/N.

    ``LOSSES`` divides by the c columns it is given; × c/N turns that mean into this block's
    share of the mean over all N samples. On the whole padded batch it is the one-device loss.
    """
    y = forward(params, x, activations)  # (out, c)
    return LOSSES[loss_name](y * mask, t * mask) * (x.shape[1] / n_total)


def _update(params, grads, lr, trainable):
    return [
        {"w": p["w"] - lr * g["w"] if tw else p["w"], "b": p["b"] - lr * g["b"] if tb else p["b"]}
        for p, g, (tw, tb) in zip(params, grads, trainable)
    ]


def _jit_value_and_grad(params, x, t, mask, *, n_total, activations, loss_name):
    return jax.value_and_grad(global_loss)(params, x, t, mask, n_total, activations, loss_name)


def _shard_value_and_grad(params, x, t, mask, *, n_total, activations, loss_name, form):
    """Per device: this shard's columns, the replicated parameters -> (loss, gradients), both summed."""
    if form == "explicit":
        params = jax.tree.map(lambda a: jax.lax.pcast(a, AXIS, to="varying"), params)
    value, grads = jax.value_and_grad(global_loss)(params, x, t, mask, n_total, activations, loss_name)
    if form != "implicit":
        grads = jax.lax.psum(grads, AXIS)  # the all-reduce of grad_w and grad_b
    return jax.lax.psum(value, AXIS), grads


def _value_and_grad_fn(mesh, engine, form, n_total, activations, loss_name):
    statics = dict(n_total=n_total, activations=activations, loss_name=loss_name)
    if engine == "jit":
        return partial(_jit_value_and_grad, **statics)
    data = P(None, AXIS)
    return jax.shard_map(
        partial(_shard_value_and_grad, form=form, **statics),
        mesh=mesh,
        in_specs=(P(), data, data, data),
        out_specs=(P(), P()),
    )


@partial(jax.jit, static_argnames=("mesh", "engine", "form", "n_total", "activations", "loss_name", "trainable"))
def sgd_step(params, x, t, mask, lr, mesh, engine, form, n_total, activations, loss_name, trainable):
    """One step: (loss at ``params``, parameters after the update)."""
    value, grads = _value_and_grad_fn(mesh, engine, form, n_total, activations, loss_name)(params, x, t, mask)
    return value, _update(params, grads, lr, trainable)


@partial(
    jax.jit, static_argnames=("mesh", "engine", "form", "n_total", "activations", "loss_name", "trainable", "steps")
)
def scan_train(params, x, t, mask, lr, mesh, engine, form, n_total, activations, loss_name, trainable, steps):
    """The gradients at ``params``, then ``steps`` SGD steps in one compiled loop.

    Returns (gradients, losses (steps,), history with entry 0 the initial parameters, final parameters).
    """
    value_and_grad = _value_and_grad_fn(mesh, engine, form, n_total, activations, loss_name)

    def body(p, _):
        value, grads = value_and_grad(p, x, t, mask)
        new = _update(p, grads, lr, trainable)
        return new, (value, new)

    first = value_and_grad(params, x, t, mask)
    final, (losses, history) = jax.lax.scan(body, params, None, length=steps)
    history = jax.tree.map(lambda p0, h: jnp.concatenate([p0[None], h]), params, history)
    return first, losses, history, final


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
    mesh = Mesh(np.array(devices), (AXIS,))
    dt = DTYPES[dtype_name(dtype)]
    xp, mask = padded_columns(np.asarray(x, np.float64), n_shards)
    tp, _ = padded_columns(np.asarray(t, np.float64), n_shards)
    split, replicated = NamedSharding(mesh, P(None, AXIS)), NamedSharding(mesh, P())
    data = [jax.device_put(jnp.asarray(a, dt), split) for a in (xp, tp, mask)]
    params = [{k: jax.device_put(jnp.asarray(v, dt), replicated) for k, v in p.items()} for p in params]
    return params, data, mesh, n_total


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
        jparams, (jx, jt, mask), mesh, n = placed(params, x, t, devices, dtype, engine, form)
        (value, grads), losses, history, final = scan_train(
            jparams,
            jx,
            jt,
            mask,
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
