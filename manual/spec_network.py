"""A network built from a spec (``manual.spec``): forward, hand-derived backward, L2, inference.

Per layer (``x`` (in, N))::

    z = wᵀ·x + b                   (out, N)  (no b under batch norm)
    n = norm(z; γ, β)              (out, N)  batch norm, layer norm, or n = z
    a = f(n)                       (out, N)
    y = a ⊙ mask / keep            (out, N)  inverted dropout, or y = a

The backward runs the same steps in reverse, each through its own file's backward. L2 weight
decay adds ``(λ/2)·Σ‖w‖²`` (weights only) to the loss and ``λ·w`` to each ``grad_w``.
Parameters: ``[{"w", "b"?, "gamma"?, "beta"?}, ...]``; batch norm's running averages travel
separately as ``running = [{"mean", "var"} or {}, ...]``; dropout masks as ``masks = [mask or None, ...]``.
"""

from typing import NamedTuple

import numpy as np

from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_inference, running_update
from fcgrad.manual.dropout import dropout_backward, dropout_forward
from fcgrad.manual.layer import Cache, fc_backward, fc_forward
from fcgrad.manual.layernorm import layernorm_backward, layernorm_forward
from fcgrad.manual.losses import LOSSES
from fcgrad.manual.spec import Spec

Tree = list[dict[str, np.ndarray]]


class LayerCache(NamedTuple):
    fc: Cache  # x (in, N), z (out, N)
    norm: tuple | None  # BatchNormCache or LayerNormCache
    n: np.ndarray  # (out, N) the activation's input
    a: np.ndarray  # (out, N) the activation's output
    dropout: tuple | None  # DropoutCache


class SpecGradients(NamedTuple):
    loss: float  # the loss with its L2 term, at the given parameters
    y: np.ndarray  # (out, N) the network's output
    grads: Tree  # ∂L/∂ each parameter, same layout as params
    residuals: list[dict[str, np.ndarray]]  # per layer: residual_z (out, N), residual_x (in, N)
    running: Tree  # batch norm's running averages after this (training) forward


def layer_forward(layer, p, x, mask, running: dict, training: bool):
    """One layer: ``(y (out, N), cache, new running averages)``."""
    b = p["b"] if layer.has_bias else 0.0  # z = wᵀx exactly when there is no bias
    z, fc = fc_forward(x, p["w"], b, "identity")
    norm_cache, new_running = None, running
    if layer.norm == "batch" and training:
        n, norm_cache = batchnorm_forward(z, p["gamma"], p["beta"])
        mean, var = running_update(running["mean"], running["var"], norm_cache)
        new_running = {"mean": mean, "var": var}
    elif layer.norm == "batch":
        n = batchnorm_inference(z, p["gamma"], p["beta"], running["mean"], running["var"])
    elif layer.norm == "layer":
        n, norm_cache = layernorm_forward(z, p["gamma"], p["beta"])
    else:
        n = z
    a = ACTIVATIONS[layer.activation].forward(n)
    y, drop_cache = a, None
    if layer.dropout and training:
        y, drop_cache = dropout_forward(a, mask, layer.dropout)
    return y, LayerCache(fc, norm_cache, n, a, drop_cache), new_running


def layer_backward(layer, p, residual_y, cache: LayerCache) -> tuple[dict, dict]:
    """``(grads of this layer's parameters, {"residual_z", "residual_x"})``; ``p`` is pre-update."""
    residual_a = residual_y if cache.dropout is None else dropout_backward(residual_y, cache.dropout)  # (out, N)
    residual_n = ACTIVATIONS[layer.activation].backward(residual_a, cache.n, cache.a)  # (out, N)
    grads = {}
    if layer.norm:
        backward = batchnorm_backward if layer.norm == "batch" else layernorm_backward
        residual_z, grads["gamma"], grads["beta"] = backward(residual_n, cache.norm)  # (out, N), (out, 1), (out, 1)
    else:
        residual_z = residual_n  # (out, N)
    g = fc_backward(residual_z, p["w"], cache.fc, "identity")  # grad_w (in, out), grad_b (out, 1), residual_x (in, N)
    grads["w"] = g.grad_w  # (in, N)·(N, out) -> (in, out)
    if layer.has_bias:
        grads["b"] = g.grad_b  # sum over the N columns -> (out, 1)
    return grads, {"residual_z": residual_z, "residual_x": g.residual_x}


def forward(params: Tree, x, spec: Spec, masks, running: Tree, *, training: bool = True):
    """``(y (out, N), caches, new running averages)``; in inference, running averages and no dropout."""
    caches, new_running = [], []
    for layer, p, mask, r in zip(spec, params, masks, running):
        x, cache, r = layer_forward(layer, p, x, mask, r, training)
        caches.append(cache)
        new_running.append(r)
    return x, caches, new_running


def l2_penalty(params: Tree, l2: float) -> float:
    """(λ/2)·Σ‖w‖², over the weights only."""
    return 0.5 * l2 * sum(np.sum(p["w"] ** 2) for p in params) if l2 else 0.0


def loss_and_gradients(params: Tree, x, t, spec: Spec, loss: str, masks, running: Tree, l2: float = 0.0):
    """Training-mode forward and backward at ``params``; every gradient is taken before any update."""
    y, caches, new_running = forward(params, x, spec, masks, running)
    loss_fn = LOSSES[loss]
    residual_y = loss_fn.backward(y, t)  # (out, N)
    grads, residuals = [None] * len(spec), [None] * len(spec)
    for i in reversed(range(len(spec))):
        grads[i], residuals[i] = layer_backward(spec[i], params[i], residual_y, caches[i])
        if l2:
            grads[i]["w"] = grads[i]["w"] + l2 * params[i]["w"]  # (in, out): ∂(λ/2 ‖w‖²)/∂w = λ·w
        residual_y = residuals[i]["residual_x"]  # (in, N) of this layer is (out, N) of the one below
    value = float(loss_fn.forward(y, t)) + float(l2_penalty(params, l2))
    return SpecGradients(value, y, grads, residuals, new_running)


def predict(params: Tree, x, spec: Spec, running: Tree) -> np.ndarray:
    """Inference: the output (out, N) with running averages and no dropout."""
    y, _, _ = forward(params, x, spec, [None] * len(spec), running, training=False)
    return y
