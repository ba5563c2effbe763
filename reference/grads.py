"""Gradients and per-layer residuals of the reference model, all from jax.grad of ``model``'s one forward."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.reference.model import ACTIVATIONS, forward, loss, spec_loss
from fcgrad.reference.precision import as_jax, x64_for


def zero_taps(params, x):
    """Zeros shaped like each layer's input x (in, N), linear part z (out, N) and the output y."""
    n = x.shape[1]
    taps_x = [jnp.zeros((p["w"].shape[0], n), x.dtype) for p in params]
    taps_z = [jnp.zeros((p["w"].shape[1], n), x.dtype) for p in params]
    return {"x": taps_x, "z": taps_z, "y": jnp.zeros_like(taps_z[-1])}


@partial(jax.jit, static_argnames=("activations", "loss_name"))
def value_and_grads(params, x, t, activations, loss_name):
    """Loss, output, ∂L/∂params and ∂L/∂taps (the residuals), in one jitted call."""
    taps = zero_taps(params, x)
    value, (grad_params, grad_taps) = jax.value_and_grad(loss, argnums=(0, 5))(
        params, x, t, activations, loss_name, taps
    )
    return value, forward(params, x, activations), grad_params, grad_taps


@partial(jax.jit, static_argnames=("spec", "loss_name"))
def spec_value_and_grads(params, x, t, masks, running, l2, spec, loss_name):
    """A spec network's training-mode loss, ∂L/∂params and ∂L/∂x (the first layer's residual_x)."""
    (value, _), (grads, grad_x) = jax.value_and_grad(spec_loss, argnums=(0, 1), has_aux=True)(
        params, x, t, masks, running, l2, spec, loss_name
    )
    return value, grads, grad_x


def activation_names(activations, n_layers: int) -> tuple[str, ...]:
    """One name per layer: a single name (a string) means every layer, as in ``manual.gradients``."""
    names = (activations,) * n_layers if isinstance(activations, str) else tuple(activations)
    if len(names) != n_layers:
        raise ValueError(f"activations: expected one name for all layers or {n_layers} (one per layer), got {names}")
    for i, name in enumerate(names):
        if name not in ACTIVATIONS:
            raise ValueError(f"activation of layer {i}: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    return names


def gradients(params, x, t, *, activations, loss="square", dtype="float64"):
    """The same quantities as ``manual.gradients``, as NumPy arrays.

    ``activations``: one name for every layer (``"sigmoid"``) or one per layer.

    Returns ``{"loss", "y", "residual_y", "layers": [{"residual_z", "grad_w", "grad_b", "residual_x"}, ...]}``.
    """
    activations = activation_names(activations, len(params))
    with x64_for(dtype):
        params, x, t = as_jax(params, x, t, dtype)
        value, y, gp, gt = value_and_grads(params, x, t, activations, loss)
        layers = [
            {
                "residual_z": np.asarray(gt["z"][i]),
                "grad_w": np.asarray(gp[i]["w"]),
                "grad_b": np.asarray(gp[i]["b"]),
                "residual_x": np.asarray(gt["x"][i]),
            }
            for i in range(len(params))
        ]
        return {"loss": float(value), "y": np.asarray(y), "residual_y": np.asarray(gt["y"]), "layers": layers}
