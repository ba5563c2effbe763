"""One JAX SGD step from each of many parameter sets at once (``jax.vmap`` of the reference step).

The float32 ``local`` rule feeds manual's own parameters at steps k..k+K−1 here and compares
manual's step k+1 with JAX's one step from manual's step k.

A ReLU is not differentiable at 0: where ``|z|`` is within the rounding of ``wᵀx + b``, the two
sides may take different sides of the kink and differ by that sample's whole contribution. A loss
with a kink (hinge, mean absolute error) does the same at the output: an entry of ``y`` within
rounding of its kink may flip its ``residual_y`` by up to ``LOSS_KINK_JUMP / N``. The
``kink`` bound is an upper bound, per layer, of ``max |Δgrad_w|`` and ``max |Δgrad_b|`` that such
flips can cause: the flipped contributions ``|x|·|∂L/∂a|`` of the ambiguous entries, carried
down through ``|w|`` and ``|σ'|`` to the layers below.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.manual.losses import LOSSES as MANUAL_LOSSES  # each loss's kink_distance, array-API: it runs under jit
from fcgrad.reference.model import ACTIVATIONS, loss
from fcgrad.reference.precision import as_jax, x64_for
from fcgrad.reference.train import sgd_step, static_trainable

# |z| below KINK_ROUNDING_ULPS · (in + 1) · (layer + 1) · u · (|w|ᵀ|x| + |b|) counts as at the kink: the
# rounding of a K-term dot product is at most about K·u relative to Σ|terms|, and each layer below adds
# its own. 4 makes the region generous (it is a few ulps wide either way; measured flips sit inside 1).
KINK_ROUNDING_ULPS = 4.0
# The most one output entry's ∂L/∂y can jump by when it crosses the loss's kink, times N: mean absolute
# error's sign(y − t) goes from −1 to +1 (2); hinge moves a wrong class by 1 and its true class by up to
# one per wrong class, so out − 1 (taken as the number of outputs, which also covers 2 when out = 2).
LOSS_KINK_JUMP = {"mae": lambda out: 2.0, "hinge": lambda out: float(max(out, 2))}


def _one(params, x, t, lr, activations, loss_name, trainable):
    value, new = sgd_step(params, x, t, lr, activations, loss_name, trainable)
    return value, new, _kink_bound(params, x, t, activations, loss_name)


def _kink_bound(params, x, t, activations, loss_name):
    """Per layer {"w": scalar, "b": scalar}: max change of grad_w, grad_b if kink entries flip."""
    if "relu" not in activations and loss_name not in LOSS_KINK_JUMP:  # no kink anywhere: nothing can flip
        return [{"w": jnp.zeros((), x.dtype), "b": jnp.zeros((), x.dtype)} for _ in params]
    u = jnp.finfo(x.dtype).eps / 2
    xs, zs, radii = [], [], []
    a = x
    for i, (layer, act) in enumerate(zip(params, activations)):
        xs.append(a)
        z = layer["w"].T @ a + layer["b"]
        k = layer["w"].shape[0] + 1
        radii.append(KINK_ROUNDING_ULPS * k * (i + 1) * u * (jnp.abs(layer["w"]).T @ jnp.abs(a) + jnp.abs(layer["b"])))
        zs.append(z)
        a = ACTIVATIONS[act](z)
    taps = {
        "x": [jnp.zeros_like(v) for v in xs],
        "z": [jnp.zeros_like(z) for z in zs],
        "y": jnp.zeros_like(a),
    }
    tap_grads = jax.grad(lambda tp: loss(params, x, t, activations, loss_name, tp))(taps)
    outs = tap_grads["x"][1:] + [tap_grads["y"]]  # ∂L/∂a of each layer's output
    bounds = [None] * len(params)
    # bound on |Δ ∂L/∂a| arriving from above; 0·(a real array), not a constant: XLA on CPU was seen to
    # return uninitialised memory for a batched product with a constant zero operand
    carried = 0.0 * jnp.abs(outs[-1])
    if loss_name in LOSS_KINK_JUMP:  # output entries within rounding of the loss's kink
        # a kink distance combines up to two entries of a column (hinge: y_j − y_class + 1): each carries the
        # last layer's z rounding and its activation's, and the distance its own few roundings
        y_radius = jnp.max(radii[-1] + KINK_ROUNDING_ULPS * u * jnp.abs(a), axis=0, keepdims=True)  # (1, N)
        near = MANUAL_LOSSES[loss_name].kink_distance(a, t) <= 2 * y_radius + KINK_ROUNDING_ULPS * u
        carried = carried + jnp.where(near, LOSS_KINK_JUMP[loss_name](a.shape[0]) / a.shape[1], 0.0)
    for i in reversed(range(len(params))):
        act, z = activations[i], zs[i]
        slope = jnp.abs(jax.vjp(ACTIVATIONS[act], z)[1](jnp.ones_like(z))[0])  # |σ'(z)|
        flips = (jnp.abs(z) <= radii[i]) if act == "relu" else jnp.zeros(z.shape, bool)
        e_z = slope * carried + jnp.where(flips, jnp.abs(outs[i]) + carried, 0.0)  # bound on |Δ residual_z|
        bounds[i] = {"w": jnp.max(jnp.abs(xs[i]) @ e_z.T), "b": jnp.max(jnp.sum(e_z, axis=1))}
        carried = jnp.abs(params[i]["w"]) @ e_z
    return bounds


@partial(jax.jit, static_argnames=("activations", "loss_name", "trainable"))
def _many_steps(stacked, x, t, lr, activations, loss_name, trainable):
    return jax.vmap(lambda params: _one(params, x, t, lr, activations, loss_name, trainable))(stacked)


class OneStep:
    """JAX's loss at each fed parameter set (K,), its parameters after one step, and the kink bounds."""

    def __init__(self, losses, new, kink):
        self.losses, self.new, self.kink = losses, new, kink


def jax_steps_from(p, stacked) -> OneStep:
    """For each entry j of ``stacked`` (per layer ``{"w": (K, in, out), "b": (K, out, 1)}``): one JAX step."""
    with x64_for(p.dtype):
        first = [{k: v[0] for k, v in layer.items()} for layer in stacked]
        _, jx, jt = as_jax(first, p.x, p.t, p.dtype)  # checks the layout, converts the data
        jstacked = jax.tree.map(lambda a: jnp.asarray(a, jx.dtype), stacked)
        losses, new, kink = _many_steps(
            jstacked, jx, jt, p.lr, tuple(p.activations), p.loss, static_trainable(p.trainable, len(stacked))
        )
        to_np = lambda tree: jax.tree.map(lambda v: np.asarray(v, np.float64), tree)  # noqa: E731
        return OneStep(np.asarray(losses), to_np(new), to_np(kink))
