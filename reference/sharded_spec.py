"""A spec network's step (any optimizer, L2, dropout, layer norm) data parallel over a mesh; jax.grad and optax.

The step's columns go to S devices in ``np.array_split`` blocks, each zero-padded to the largest, with a
weight per column (1 real, 0 padding). The loss is summed column by column with those weights and the
GLOBAL 1/n, so padding never counts and each shard's part is its share of the mean; L2 is added once, on
the replicated parameters. Batch normalisation is not here: its statistics over a sharded batch are another
computation (per-shard or synchronised), not the one-device one.

- ``engine="jit"``: the one-device formulas under ``jax.jit``, the columns placed with
  ``NamedSharding(mesh, P(None, "data"))``; the compiler picks the collectives.
- ``engine="shard_map"``: per device, the parameters cast to device-varying, ``jax.grad`` of this shard's
  part, then ``psum`` of the gradients and the loss: the all-reduce written out.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fcgrad.reference import spec_model
from fcgrad.reference.model import LOSSES
from fcgrad.reference.optimizers import build
from fcgrad.reference.sharded import padded_columns

AXIS = "data"
ENGINES = ("jit", "shard_map")


def weighted_loss(params, x, t, masks, weights, n_total, spec, loss_name):
    """Σ over the columns of ``weights[j] · L(column j)`` / n_total: the real columns' share of the mean loss."""
    y, _ = spec_model.forward(params, x, spec, masks, [{} for _ in spec])
    per_column = jax.vmap(lambda yc, tc: LOSSES[loss_name](yc[:, None], tc[:, None]), in_axes=(1, 1))(y, t)
    return jnp.sum(per_column * weights) / n_total


def _penalty(params, l2):
    return 0.5 * l2 * sum(jnp.sum(p["w"] ** 2) for p in params)


def _local(params, x, t, masks, weights, *, n_total, spec, loss_name):
    """One device: this shard's part of the loss and of ∂L/∂params, then the all-reduce of both."""
    varying = jax.tree.map(lambda a: jax.lax.pcast(a, AXIS, to="varying"), params)
    value, grads = jax.value_and_grad(weighted_loss)(varying, x, t, masks, weights, n_total, spec, loss_name)
    return jax.lax.psum(value, AXIS), jax.lax.psum(grads, AXIS)


@partial(jax.jit, static_argnames=("mesh", "engine", "spec", "loss_name", "opt_name", "n_total"))
def step(params, opt_state, x, t, masks, weights, lr, hyper, l2, mesh, engine, spec, loss_name, opt_name, n_total):
    """One step from ``params`` and ``opt_state``: (new params, new state, the loss at ``params``)."""
    if engine == "jit":
        value, grads = jax.value_and_grad(weighted_loss)(params, x, t, masks, weights, n_total, spec, loss_name)
    else:
        data = P(None, AXIS)
        value, grads = jax.shard_map(
            partial(_local, n_total=n_total, spec=spec, loss_name=loss_name),
            mesh=mesh,
            in_specs=(P(), data, data, [data] * len(spec), P(AXIS)),
            out_specs=(P(), P()),
        )(params, x, t, masks, weights)
    value = value + _penalty(params, l2)
    grads = [{**g, "w": g["w"] + l2 * p["w"]} for g, p in zip(grads, params)]  # ∂(λ/2 ‖w‖²)/∂w = λ·w
    updates, opt_state = build(opt_name, lr, hyper).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


class ShardedSpecStep:
    """The compiled step of one engine on one mesh, with the step's columns split and placed."""

    def __init__(self, devices, engine: str):
        if engine not in ENGINES:
            raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.engine, self.n = engine, len(devices)
        self.columns = NamedSharding(self.mesh, P(None, AXIS))
        self.replicated = NamedSharding(self.mesh, P())

    def place(self, x, t, masks, spec, dtype):
        """The step's data padded into S blocks and placed over the mesh: (x, t, masks, weights)."""
        xp, weights = padded_columns(x, self.n)
        tp, _ = padded_columns(t, self.n)
        full = [np.ones((layer.n_out, x.shape[1]), dtype) if m is None else m for layer, m in zip(spec, masks)]
        mp = [padded_columns(np.asarray(m, dtype), self.n)[0] for m in full]
        put = lambda a: jax.device_put(jnp.asarray(a, dtype), self.columns)  # noqa: E731
        w = jax.device_put(jnp.asarray(weights[0], dtype), NamedSharding(self.mesh, P(AXIS)))  # (S·c,)
        return put(xp), put(tp), [put(m) for m in mp], w

    def __call__(self, params, opt_state, placed, lr, hyper, l2, spec, loss_name, opt_name, n_total):
        params, opt_state = jax.device_put((params, opt_state), self.replicated)
        x, t, masks, weights = placed
        return step(params, opt_state, x, t, masks, weights, lr, hyper, l2, self.mesh, self.engine, spec,
                    loss_name, opt_name, n_total)  # fmt: skip
