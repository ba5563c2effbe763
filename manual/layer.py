"""One fully connected layer, forward and hand-derived backward, as pure functions.

Written against the array-API standard, so they also run (and compile) on JAX arrays.
Layout (the blog's): data by column, ``x`` is ``(in, N)``; ``w`` is ``(in, out)``;
``b`` is ``(out, 1)``; ``z = wᵀ·x + b`` and ``y = f(z)`` are ``(out, N)``.
"""

from typing import NamedTuple

import numpy as np

from manual.activations import ACTIVATIONS, namespace


class Cache(NamedTuple):
    """What the forward keeps for the backward (the blog's bottomVal and topVal)."""

    x: np.ndarray  # (in, N)   the layer's input, bottomVal
    z: np.ndarray  # (out, N)  the linear part
    y: np.ndarray  # (out, N)  the activation's output, topVal


class LayerGrads(NamedTuple):
    """Everything the backward of one layer computes, in the blog's names."""

    residual_z: np.ndarray  # (out, N)  ∂L/∂z
    grad_w: np.ndarray  # (in, out)  ∂L/∂w
    grad_b: np.ndarray  # (out, 1)   ∂L/∂b
    residual_x: np.ndarray  # (in, N)   ∂L/∂x, sent to the layer below


QUANTITIES = LayerGrads._fields


def fc_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, activation: str) -> tuple[np.ndarray, Cache]:
    z = w.T @ x + b  # (out, in)·(in, N) + (out, 1) -> (out, N)
    y = ACTIVATIONS[activation].forward(z)  # (out, N)
    return y, Cache(x, z, y)


def fc_backward(residual_y: np.ndarray, w: np.ndarray, cache: Cache, activation: str) -> LayerGrads:
    """Residual of the layer's output ``(out, N)`` -> its gradients and input residual.

    ``w`` must be the weight the forward used (pre-update): the residual sent
    down is ∂L/∂x at the point where the loss was evaluated.
    """
    x, z, y = cache
    residual_z = ACTIVATIONS[activation].backward(residual_y, z, y)  # (out, N) ⊙ f'(z) -> (out, N)
    grad_w = x @ residual_z.T  # (in, N)·(N, out) -> (in, out)
    grad_b = namespace(residual_z).sum(residual_z, axis=1, keepdims=True)  # sum over the N columns -> (out, 1)
    residual_x = w @ residual_z  # (in, out)·(out, N) -> (in, N), pre-update w
    return LayerGrads(residual_z, grad_w, grad_b, residual_x)
