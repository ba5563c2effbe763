"""A stack of fully connected layers: forward, hand-derived backward, full-batch SGD.

Parameters are a plain list ``[{"w": (in, out), "b": (out, 1)}, ...]``, the same
layout ``reference`` uses, so both sides can be compared by position and key.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from manual import validate
from manual.errors import DivergenceError
from manual.layer import Cache, LayerGrads, fc_backward, fc_forward
from manual.losses import LOSSES

Params = list[dict[str, np.ndarray]]


class Gradients(NamedTuple):
    loss: float  # L at the given parameters (a 0-d array from loss_and_gradients)
    y: np.ndarray  # (out, N) the network's output
    residual_y: np.ndarray  # (out, N) ∂L/∂y from the loss's backward
    layers: list[LayerGrads]  # per layer: residual_z, grad_w, grad_b, residual_x


class Trajectory(NamedTuple):
    losses: np.ndarray  # (steps,) entry k: the loss at the parameters of step k
    params: Params | None  # per layer {"w": (steps+1, in, out), "b": (steps+1, out, 1)}; entry 0 = initial
    final: Params  # the parameters after the last step


def init_params(sizes: Sequence[int], *, seed: int = 0, dtype="float64", std: float | None = None) -> Params:
    """Normal weights and zero biases, as the blog initialises them.

    ``std=None`` draws ``N(0, 1/in)`` so deep or wide nets do not start saturated;
    ``std=1.0`` is the blog's ``np.random.randn(in, out)``.
    """
    sizes = validate.check_sizes(sizes)
    dt = validate.check_dtype(dtype)
    rng = np.random.default_rng(validate.check_seed(seed))
    return [
        {
            "w": (rng.standard_normal((n_in, n_out)) * (std if std is not None else 1 / np.sqrt(n_in))).astype(dt),
            "b": np.zeros((n_out, 1), dtype=dt),
        }
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]


def forward(params: Params, x: np.ndarray, activations: Sequence[str]) -> tuple[np.ndarray, list[Cache]]:
    """Unchecked forward: ``x`` (in, N) -> output ``(out, N)`` and each layer's cache."""
    caches = []
    for layer, act in zip(params, activations):
        x, cache = fc_forward(x, layer["w"], layer["b"], act)
        caches.append(cache)
    return x, caches


def backward(
    params: Params, caches: list[Cache], residual_y: np.ndarray, activations: Sequence[str]
) -> list[LayerGrads]:
    """Unchecked backward from the top layer down; every layer uses its pre-update ``w``."""
    grads: list[LayerGrads] = []
    for layer, cache, act in zip(reversed(params), reversed(caches), reversed(activations)):
        g = fc_backward(residual_y, layer["w"], cache, act)
        grads.append(g)
        residual_y = g.residual_x  # (in, N) of this layer is (out, N) of the one below
    return grads[::-1]


def loss_and_gradients(params: Params, x, t, activations: Sequence[str], loss: str) -> Gradients:
    """Unchecked, and pure over any array-API namespace (``jax.jit`` can compile it); ``loss`` is a 0-d array."""
    y, caches = forward(params, x, activations)
    loss_fn = LOSSES[loss]
    residual_y = loss_fn.backward(y, t)  # (out, N)
    return Gradients(loss_fn.forward(y, t), y, residual_y, backward(params, caches, residual_y, activations))


def _gradients(params: Params, x, t, activations, loss: str) -> Gradients:
    g = loss_and_gradients(params, x, t, activations, loss)
    return g._replace(loss=float(g.loss))


def gradients(params: Params, x, t, *, activations="sigmoid", loss: str = "square", dtype=None) -> Gradients:
    """The loss and every layer's residual_z, grad_w, grad_b, residual_x at ``params``; nothing is updated."""
    params, dt = validate.check_params(params, dtype)
    x, t = validate.check_data(x, t, params, dt)
    activations = validate.check_activations(activations, len(params))
    return _gradients(params, x, t, activations, validate.check_loss(loss))


def sgd_update(params: Params, layer_grads: Sequence[LayerGrads], lr: float, trainable) -> Params:
    """``w ← w − lr·grad_w``, ``b ← b − lr·grad_b`` for what is trainable; returns new arrays."""
    return [
        {
            "w": p["w"] - lr * g.grad_w if m["w"] else p["w"],
            "b": p["b"] - lr * g.grad_b if m["b"] else p["b"],
        }
        for p, g, m in zip(params, layer_grads, trainable)
    ]


def train(
    params: Params,
    x,
    t,
    *,
    activations="sigmoid",
    loss: str = "square",
    lr: float = 0.1,
    steps: int = 10_000,
    trainable=None,
    record_params: bool = True,
    dtype=None,
) -> Trajectory:
    """Full-batch SGD: each step takes every gradient at the current parameters, then updates.

    Raises ``DivergenceError`` naming the first step whose loss is not finite.
    """
    params, dt = validate.check_params(params, dtype)
    x, t = validate.check_data(x, t, params, dt)
    activations = validate.check_activations(activations, len(params))
    loss = validate.check_loss(loss)
    lr = validate.check_lr(lr)
    steps = validate.check_steps(steps)
    trainable = validate.check_trainable(trainable, len(params))

    def step(p: Params) -> tuple[float, Params]:
        g = _gradients(p, x, t, activations, loss)
        return g.loss, sgd_update(p, g.layers, lr, trainable)

    return run_steps(step, params, steps, record_params=record_params, dtype=dt, lr=lr)


def run_steps(
    step, params: Params, steps: int, *, record_params: bool, dtype, lr: float, what: str = "training"
) -> Trajectory:
    """Drive ``step(params) -> (loss at params, new params)`` ``steps`` times and keep the trajectory.

    Raises ``DivergenceError`` at the first step whose loss is not finite.
    """
    losses = np.empty(steps, dtype=dtype)
    history = [params] if record_params else None
    # A diverging run overflows before its loss turns inf; the check below reports it.
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps):
            value, params = step(params)
            if not np.isfinite(value):
                raise DivergenceError(
                    f"{what} diverged: the loss is {value} at step {k} (lr={lr}); try a smaller learning rate", k
                )
            losses[k] = value
            if record_params:
                history.append(params)
    stacked = None
    if record_params:
        stacked = [{key: np.stack([h[i][key] for h in history]) for key in ("w", "b")} for i in range(len(params))]
    return Trajectory(losses, stacked, params)
