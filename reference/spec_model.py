"""A spec network (widths, activations, batch/layer norm, dropout, L2) as JAX forwards only.

Every derivative comes from ``jax.grad``; every update from optax (``reference.optimizers``).
``spec`` is a tuple of layers with the fields ``n_in``, ``n_out``, ``activation``, ``norm``
("", "batch", "layer") and ``dropout`` (drop probability), as ``manual.spec.LayerSpec`` has;
it is a static argument of the compiled steps. Dropout masks (0/1 arrays) come in as data.
"""

from functools import partial

import jax
import jax.numpy as jnp
import optax

from fcgrad.reference.model import ACTIVATIONS, LOSSES
from fcgrad.reference.optimizers import build, state_moments

BN_EPS = 1e-5
BN_MOMENTUM = 0.9
LN_EPS = 1e-5


def _normalise(z, gamma, beta, axis: int, eps: float):
    mean = jnp.mean(z, axis=axis, keepdims=True)
    centered = z - mean
    var = jnp.mean(centered**2, axis=axis, keepdims=True)
    return gamma * (centered * (1.0 / jnp.sqrt(var + eps))) + beta, mean, var


def layer_forward(layer, p, x, mask, running, training: bool, branch=None):
    """``(y, new running averages)`` of one layer; batch norm over the N columns, layer norm over the rows.

    ``branch`` (a ReLU layer only): a 0/1 array of its shape that fixes which side of the kink each entry
    takes, ``y = n ⊙ branch``, so that ``jax.grad`` differentiates with that choice of relu'.
    """
    z = p["w"].T @ x
    if "b" in p:
        z = z + p["b"]
    new_running = running
    if layer.norm == "batch" and training:
        n, mean, var = _normalise(z, p["gamma"], p["beta"], 1, BN_EPS)
        new_running = {
            "mean": BN_MOMENTUM * running["mean"] + (1 - BN_MOMENTUM) * jax.lax.stop_gradient(mean),
            "var": BN_MOMENTUM * running["var"] + (1 - BN_MOMENTUM) * jax.lax.stop_gradient(var),
        }
    elif layer.norm == "batch":
        n = p["gamma"] * ((z - running["mean"]) / jnp.sqrt(running["var"] + BN_EPS)) + p["beta"]
    elif layer.norm == "layer":
        n, _, _ = _normalise(z, p["gamma"], p["beta"], 0, LN_EPS)
    else:
        n = z
    y = ACTIVATIONS[layer.activation](n) if branch is None else n * branch
    if layer.dropout and training:
        y = y * mask / (1.0 - layer.dropout)
    return y, new_running


def forward(params, x, spec, masks, running, training: bool = True, branches=None):
    new_running = []
    branches = [None] * len(spec) if branches is None else branches
    for layer, p, mask, r, branch in zip(spec, params, masks, running, branches):
        x, r = layer_forward(layer, p, x, mask, r, training, branch)
        new_running.append(r)
    return x, new_running


def loss(params, x, t, masks, running, l2, spec, loss_name, branches=None):
    """Training-mode loss with ``(l2/2)·Σ‖w‖²``; aux: the new running averages."""
    y, new_running = forward(params, x, spec, masks, running, branches=branches)
    penalty = 0.5 * l2 * sum(jnp.sum(p["w"] ** 2) for p in params)
    return LOSSES[loss_name](y, t) + penalty, new_running


def step(params, opt_state, running, x, t, masks, lr, hyper, l2, spec, loss_name, opt_name, branches=None):
    """One training step: the loss and gradients at ``params``, then optax's update."""
    (value, new_running), grads = jax.value_and_grad(loss, has_aux=True)(
        params, x, t, masks, running, l2, spec, loss_name, branches
    )
    updates, opt_state = build(opt_name, lr, hyper).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_running, value


@partial(jax.jit, static_argnames=("spec", "loss_name", "opt_name"))
def jit_step(params, opt_state, running, x, t, masks, lr, hyper, l2, spec, loss_name, opt_name):
    """One compiled step, reused for any number of steps of one batch size.

    Returns (params, opt state, running) after the step, the loss before it, and the optimizer's moments.
    """
    params, opt_state, running, value = step(
        params, opt_state, running, x, t, masks, lr, hyper, l2, spec, loss_name, opt_name
    )
    return params, opt_state, running, value, state_moments(opt_name, opt_state)


@partial(jax.jit, static_argnames=("spec", "loss_name", "opt_name"))
def jit_step_on_branches(params, opt_state, running, x, t, masks, branches, lr, hyper, l2, spec, loss_name, opt_name):
    """``jit_step`` with each ReLU layer's side of the kink fixed entry by entry (``layer_forward``'s ``branch``)."""
    params, opt_state, running, value = step(
        params, opt_state, running, x, t, masks, lr, hyper, l2, spec, loss_name, opt_name, branches
    )
    return params, opt_state, running, value, state_moments(opt_name, opt_state)


def init_opt_state(opt_name: str, lr, hyper, params):
    return build(opt_name, lr, hyper).init(params)


@partial(jax.jit, static_argnames=("spec",))
def predict(params, x, spec, running):
    """Inference: running averages for batch norm, no dropout."""
    y, _ = forward(params, x, spec, [None] * len(spec), running, training=False)
    return y


@partial(jax.jit, static_argnames=("spec", "loss_name"))
def value_and_grads(params, x, t, masks, running, l2, spec, loss_name):
    """Training-mode loss, ∂L/∂params and ∂L/∂x (the first layer's residual_x), all from jax.grad."""
    (value, _), (grads, grad_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        params, x, t, masks, running, l2, spec, loss_name
    )
    return value, grads, grad_x
