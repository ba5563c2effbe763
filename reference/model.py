"""The network as JAX forward formulas only; every derivative comes from jax.grad.

Same layout as the blog: ``x`` (in, N), ``w`` (in, out), ``b`` (out, 1),
``z = wᵀ·x + b``. Parameters: ``[{"w": ..., "b": ...}, ...]``, plus ``gamma`` and ``beta``
on a normalised layer (and no ``b`` under batch norm).

One forward serves every network. A spec is a tuple of layers with the fields ``activation``,
``norm`` ("", "batch", "layer") and ``dropout`` (drop probability), as ``manual.spec.LayerSpec``
has; the blog's plain net is the spec of plain layers, given as one activation name per layer.
Either is a static argument of the compiled functions. Dropout masks (0/1 arrays) come in as data.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,  # lax.logistic: no overflow for large |z|
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "identity": lambda z: z,
}


def square_loss(y, t):
    """L = Σ (y − t)² / N / 2."""
    return jnp.sum((y - t) ** 2) / y.shape[1] / 2


def cross_entropy_loss(y, t):
    """L = −Σ t ⊙ log softmax(y) / N, softmax over the rows of each column."""
    return -jnp.sum(t * jax.nn.log_softmax(y, axis=0)) / y.shape[1]


def hinge_loss(y, t):
    """Multiclass hinge: Σ max(0, y_j − y_class + 1) over wrong classes j, / N; relu' = 0 at a kink."""
    margins = y - jnp.sum(t * y, axis=0, keepdims=True) + 1.0
    return jnp.sum(jax.nn.relu(margins) * (1 - t)) / y.shape[1]


def bce_logits_loss(y, t):
    """Binary cross-entropy from logits: Σ (softplus(y) − y·t) / N."""
    return jnp.sum(jax.nn.softplus(y) - y * t) / y.shape[1]


def mae_loss(y, t):
    """Σ |y − t| / N, with |d| written relu(d) + relu(−d) so that its derivative at d = 0 is 0."""
    d = y - t
    return jnp.sum(jax.nn.relu(d) + jax.nn.relu(-d)) / y.shape[1]


LOSSES = {
    "square": square_loss,
    "cross-entropy": cross_entropy_loss,
    "hinge": hinge_loss,
    "bce-logits": bce_logits_loss,
    "mae": mae_loss,
}


BN_EPS = 1e-5
BN_MOMENTUM = 0.9
LN_EPS = 1e-5


class Layer(NamedTuple):
    """What the forward reads of one layer; a plain layer is its activation alone."""

    activation: str
    norm: str = ""
    dropout: float = 0.0


def as_layers(spec) -> tuple:
    """A spec as it is, with each activation name (the blog's plain net) read as a plain layer."""
    return tuple(Layer(layer) if isinstance(layer, str) else layer for layer in spec)


def normalise(z, gamma, beta, axis: int, eps: float):
    """``(gamma ⊙ (z − mean) / √(var + eps) + beta, mean, var)``, the moments taken along ``axis``."""
    mean = jnp.mean(z, axis=axis, keepdims=True)
    centered = z - mean
    var = jnp.mean(centered**2, axis=axis, keepdims=True)
    return gamma * (centered * (1.0 / jnp.sqrt(var + eps))) + beta, mean, var


def layer_forward(layer, p, x, mask=None, running=None, training: bool = True, branch=None, tap_z=None):
    """``(y, new running averages)`` of one layer; batch norm over the N columns, layer norm over the rows.

    ``tap_z``: a zero added to the linear part ``z`` (see ``forward_with_running``).
    ``branch`` (a ReLU layer only): a 0/1 array of its shape that fixes which side of the kink each entry
    takes, ``y = n ⊙ branch``, so that ``jax.grad`` differentiates with that choice of relu'.
    """
    z = p["w"].T @ x
    if "b" in p:
        z = z + p["b"]
    if tap_z is not None:
        z = z + tap_z
    new_running = running
    if layer.norm == "batch" and training:
        n, mean, var = normalise(z, p["gamma"], p["beta"], 1, BN_EPS)
        if running is not None:
            new_running = {
                "mean": BN_MOMENTUM * running["mean"] + (1 - BN_MOMENTUM) * jax.lax.stop_gradient(mean),
                "var": BN_MOMENTUM * running["var"] + (1 - BN_MOMENTUM) * jax.lax.stop_gradient(var),
            }
    elif layer.norm == "batch":
        n = p["gamma"] * ((z - running["mean"]) / jnp.sqrt(running["var"] + BN_EPS)) + p["beta"]
    elif layer.norm == "layer":
        n, _, _ = normalise(z, p["gamma"], p["beta"], 0, LN_EPS)
    else:
        n = z
    y = ACTIVATIONS[layer.activation](n) if branch is None else n * branch
    if layer.dropout and training:
        y = y * mask / (1.0 - layer.dropout)
    return y, new_running


def forward_with_running(params, x, spec, *, masks=None, running=None, training: bool = True, branches=None,
                         taps=None):  # fmt: skip
    """``x`` (in, N) -> (output (out, N), each layer's new running averages): the one forward.

    ``masks``, ``running`` and ``branches`` hold one entry per layer (None: no dropout mask, no running
    averages, no fixed ReLU branch). ``taps``, when given, are zeros added to every layer's input and
    linear part (``taps["x"][i]`` (in, N), ``taps["z"][i]`` (out, N)) and to the output (``taps["y"]``):
    the gradient of the loss with respect to a tap is the residual of the quantity it is added to.
    """
    spec = as_layers(spec)
    none = [None] * len(spec)
    masks, running, branches = masks or none, running or none, branches or none
    new_running = []
    for i, (layer, p) in enumerate(zip(spec, params)):
        if taps is not None:
            x = x + taps["x"][i]
        tap_z = None if taps is None else taps["z"][i]
        x, r = layer_forward(layer, p, x, masks[i], running[i], training, branches[i], tap_z)
        new_running.append(r)
    if taps is not None:
        x = x + taps["y"]
    return x, new_running


def forward(params, x, spec, taps=None):
    """``x`` (in, N) -> output (out, N) in training mode, without dropout masks or running averages."""
    return forward_with_running(params, x, spec, taps=taps)[0]


def loss(params, x, t, spec, loss_name, taps=None):
    return LOSSES[loss_name](forward(params, x, spec, taps), t)


def l2_penalty(params, l2):
    """``(l2/2)·Σ‖w‖²`` over every layer's ``w``."""
    return 0.5 * l2 * sum(jnp.sum(p["w"] ** 2) for p in params)


def spec_loss(params, x, t, masks, running, l2, spec, loss_name, branches=None):
    """Training-mode loss with ``l2_penalty``; aux: the new running averages."""
    y, new_running = forward_with_running(params, x, spec, masks=masks, running=running, branches=branches)
    penalty = l2_penalty(params, l2)
    return LOSSES[loss_name](y, t) + penalty, new_running


@partial(jax.jit, static_argnames=("spec",))
def predict(params, x, spec, running):
    """Inference: running averages for batch norm, no dropout."""
    return forward_with_running(params, x, spec, running=running, training=False)[0]
