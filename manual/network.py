"""A stack of fully connected layers: forward, hand-derived backward, full-batch SGD.

Parameters: a plain list ``[{"w": (in, out), "b": (out, 1)}, ...]``, ``reference``'s layout (compared by position).
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fcgrad.manual import validate
from fcgrad.manual.errors import DivergenceError
from fcgrad.manual.layer import Cache, LayerGrads, LayerWork, fc_backward, fc_forward, layer_work
from fcgrad.manual.losses import LOSSES, square_backward, square_forward

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


# ---- the training path ----------------------------------------------------------------------
# gradients() above (the comparison path) returns every quantity as new arrays, the first
# layer's residual_x included. train() runs the same formulas on its own copy of the
# parameters, updates them in place and writes each step's activations and gradients into
# buffers it allocates once (manual.layer.LayerWork); it skips the first layer's residual_x,
# which no update needs.


def sgd_update_into(params: Params, layer_grads: Sequence[LayerGrads], lr: float, trainable) -> None:
    """``sgd_update`` in place: ``w ← w − lr·grad_w``, ``b ← b − lr·grad_b`` into the arrays of ``params``."""
    for p, g, m in zip(params, layer_grads, trainable):
        if m["w"]:
            p["w"] -= lr * g.grad_w  # (in, out)
        if m["b"]:
            p["b"] -= lr * g.grad_b  # (out, 1)


def _loss_into(loss: str, y, t, out) -> tuple[float, np.ndarray]:
    """(L, residual_y) at the output ``y``; the square loss writes residual_y into ``out`` (out, N)."""
    fn = LOSSES[loss]
    if fn.forward is not square_forward or fn.backward is not square_backward:
        return float(fn.forward(y, t)), fn.backward(y, t)
    n = y.shape[1]
    np.subtract(y, t, out=out)  # y − t (out, N)
    value = float(np.vdot(out, out)) / n / 2  # L = Σ (y − t)² / N / 2
    np.divide(out, n, out=out)  # residual_y = (y − t) / N
    return value, out


def train_works(params: Params, batch: int) -> tuple[list[LayerWork], np.ndarray]:
    """The training path's buffers: one ``LayerWork`` per layer (no residual_x in the first) and residual_y."""
    dt = params[0]["w"].dtype
    works = [layer_work(*p["w"].shape, batch, dt, residual_x=i > 0) for i, p in enumerate(params)]
    return works, np.empty((params[-1]["w"].shape[1], batch), dt)


def _forward_into(params: Params, x, activations, works) -> tuple[np.ndarray, list[Cache]]:
    """``forward``, each layer into its ``LayerWork``."""
    caches = []
    for layer, act, work in zip(params, activations, works):
        x, cache = fc_forward(x, layer["w"], layer["b"], act, work)
        caches.append(cache)
    return x, caches


def train_step(params: Params, x, t, activations, loss: str, lr: float, trainable, works, residual_y) -> float:
    """One full-batch SGD step in place (every gradient first, then every update) -> L at the old ``params``."""
    y, caches = _forward_into(params, x, activations, works)
    value, residual_y = _loss_into(loss, y, t, residual_y)  # (out, N)
    layer_grads = backward(params, caches, residual_y, activations)
    sgd_update_into(params, layer_grads, lr, trainable)
    return value


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

    The training path: ``params`` is copied, then updated in place. Raises
    ``DivergenceError`` naming the first step whose loss is not finite.
    """
    params, dt = validate.check_params(params, dtype)
    x, t = validate.check_data(x, t, params, dt)
    activations = validate.check_activations(activations, len(params))
    loss = validate.check_loss(loss)
    lr = validate.check_lr(lr)
    steps = validate.check_steps(steps)
    trainable = validate.check_trainable(trainable, len(params))
    params = [{k: np.array(v, order="C") for k, v in layer.items()} for layer in params]  # ours to update
    works, residual_y = train_works(params, x.shape[1])

    def step(p: Params) -> tuple[float, Params]:
        return train_step(p, x, t, activations, loss, lr, trainable, works, residual_y), p

    return run_steps(step, params, steps, record_params=record_params, dtype=dt, lr=lr)


def run_steps(
    step, params: Params, steps: int, *, record_params: bool, dtype, lr: float, what: str = "training"
) -> Trajectory:
    """Drive ``step(params) -> (loss at params, new params)`` ``steps`` times and keep the trajectory.

    ``step`` may update ``params`` in place and return them: the history holds copies.
    Raises ``DivergenceError`` at the first step whose loss is not finite.
    """
    losses = np.empty(steps, dtype=dtype)
    history = None
    if record_params:
        history = [{k: np.empty((steps + 1, *v.shape), v.dtype) for k, v in layer.items()} for layer in params]
        _record(history, 0, params)
    # A diverging run overflows before its loss turns inf; the check below reports it.
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps):
            value, params = step(params)
            if not math.isfinite(value):
                raise DivergenceError(
                    f"{what} diverged: the loss is {value} at step {k} (lr={lr}); try a smaller learning rate", k
                )
            losses[k] = value
            if record_params:
                _record(history, k + 1, params)
    return Trajectory(losses, history, params)


def _record(history, k: int, params: Params) -> None:
    for h, layer in zip(history, params):
        h["w"][k] = layer["w"]
        h["b"][k] = layer["b"]
