"""The network: fully connected layers from a spec, forward, hand-derived backward, L2, inference, SGD.

Every network is a spec (``manual.spec``). Per layer (``x`` (in, N))::

    z = wᵀ·x + b                   (out, N)  (no b under batch norm)
    n = norm(z; γ, β)              (out, N)  batch norm, layer norm, or n = z
    a = f(n)                       (out, N)
    y = a ⊙ mask / keep            (out, N)  inverted dropout, or y = a

The blog's network is the spec of plain layers (``blog_spec``: a bias, no norm, no dropout), which
``forward``, ``gradients`` and ``train`` take as the blog does, one activation name per layer.
One ``layer_forward`` and one ``layer_backward`` run every layer of every path, and one loop each
(``spec_forward``, ``spec_backward``) runs them over the layers; the backward takes the steps in
reverse, each through its own file's backward. A layer without a norm has its activation fused
into ``fc_forward``/``fc_backward`` (``manual.layer``); given a ``LayerWork`` those write into its
buffers, and that is the training path of ``train``: the same functions, given buffers.

L2 weight decay adds ``(λ/2)·Σ‖w‖²`` (weights only) to the loss and ``λ·w`` to each ``grad_w``.
Parameters: ``[{"w", "b"?, "gamma"?, "beta"?}, ...]``, ``reference``'s layout (compared by position);
batch norm's running averages travel separately as ``running = [{"mean", "var"} or {}, ...]``,
dropout masks as ``masks = [mask or None, ...]``.
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fcgrad.manual import validate
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_inference, running_update
from fcgrad.manual.dropout import dropout_backward, dropout_forward
from fcgrad.manual.errors import DivergenceError
from fcgrad.manual.layer import Cache, LayerGrads, LayerWork, fc_backward, fc_forward, layer_work
from fcgrad.manual.layernorm import layernorm_backward, layernorm_forward
from fcgrad.manual.losses import LOSSES, square_backward, square_forward
from fcgrad.manual.spec import LayerSpec, Spec, plain_spec

Params = list[dict[str, np.ndarray]]


class LayerCache(NamedTuple):
    """What one layer's forward keeps for its backward."""

    fc: Cache  # x (in, N), z (out, N); without a norm also f(z) (out, N), the activation fused
    norm: tuple | None  # BatchNormCache or LayerNormCache
    n: np.ndarray  # (out, N) the activation's input (z without a norm)
    a: np.ndarray  # (out, N) the activation's output
    dropout: tuple | None  # DropoutCache
    y: np.ndarray  # (out, N) the layer's output (a without dropout), the blog's topVal

    @property
    def x(self) -> np.ndarray:
        return self.fc.x  # (in, N) the layer's input, the blog's bottomVal

    @property
    def z(self) -> np.ndarray:
        return self.fc.z  # (out, N) the linear part


_new_tuple = tuple.__new__  # LayerCache(...) without NamedTuple's __new__ in Python: one per layer and step


class Gradients(NamedTuple):
    loss: float  # L at the given parameters (a 0-d array from loss_and_gradients)
    y: np.ndarray  # (out, N) the network's output
    residual_y: np.ndarray  # (out, N) ∂L/∂y from the loss's backward
    layers: list[LayerGrads]  # per layer: residual_z, grad_w, grad_b, residual_x


class SpecGradients(NamedTuple):
    loss: float  # the loss with its L2 term, at the given parameters
    y: np.ndarray  # (out, N) the network's output
    grads: Params  # ∂L/∂ each parameter (L2 included), same layout as params
    layers: list[LayerGrads]  # per layer: residual_z (out, N), grad_w, grad_b, residual_x (in, N), before L2
    running: Params  # batch norm's running averages after this (training) forward


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


def blog_spec(params: Params, activations: Sequence[str]) -> Spec:
    """The blog's plain layers at the widths of ``params``, one activation name per layer."""
    return plain_spec([params[0]["w"].shape[0], *(p["w"].shape[1] for p in params)], activations)


# ---- one layer, every path ------------------------------------------------------------------


def layer_forward(layer: LayerSpec, p, x, mask=None, running=None, training: bool = True, work=None):
    """One layer: ``(y (out, N), cache, new running averages)``; ``work``: the training path's buffers."""
    new_running, norm_cache = running, None
    if not layer.norm:  # n = z: the activation fused into the linear part (into work's buffers if given)
        a, fc = fc_forward(x, p["w"], p["b"], layer.activation, work)  # (out, N)
        n = fc.z
    else:
        b = p["b"] if layer.has_bias else 0.0  # z = wᵀx exactly when there is no bias
        z, fc = fc_forward(x, p["w"], b, "identity")  # (out, N)
        if layer.norm == "batch" and training:
            n, norm_cache = batchnorm_forward(z, p["gamma"], p["beta"])  # (out, N)
            mean, var = running_update(running["mean"], running["var"], norm_cache)
            new_running = {"mean": mean, "var": var}
        elif layer.norm == "batch":
            n = batchnorm_inference(z, p["gamma"], p["beta"], running["mean"], running["var"])  # (out, N)
        else:
            n, norm_cache = layernorm_forward(z, p["gamma"], p["beta"])  # (out, N)
        a = ACTIVATIONS[layer.activation].forward(n)  # (out, N)
    if layer.dropout and training:
        y, drop_cache = dropout_forward(a, mask, layer.dropout)  # (out, N)
    else:
        y, drop_cache = a, None
    return y, _new_tuple(LayerCache, (fc, norm_cache, n, a, drop_cache, y)), new_running


def layer_backward(layer: LayerSpec, p, residual_y, cache: LayerCache) -> tuple[LayerGrads, tuple | None]:
    """``(residual_z, grad_w, grad_b, residual_x; (grad_gamma, grad_beta) under a norm, else None)``.

    ``p`` must be the parameters the forward used (pre-update), so residual_x is ∂L/∂x where the loss was taken.
    """
    residual_a = residual_y if cache.dropout is None else dropout_backward(residual_y, cache.dropout)  # (out, N)
    if not layer.norm:  # the activation fused: fc_backward forms residual_z = residual_a ⊙ f'(z) itself
        g = fc_backward(residual_a, p["w"], cache.fc, layer.activation)  # residual_z, grad_w, grad_b, residual_x
        return g, None  # (out, N), (in, out), (out, 1), (in, N)
    residual_n = ACTIVATIONS[layer.activation].backward(residual_a, cache.n, cache.a)  # (out, N) ⊙ f'(n) -> (out, N)
    backward = batchnorm_backward if layer.norm == "batch" else layernorm_backward
    residual_z, grad_gamma, grad_beta = backward(residual_n, cache.norm)  # (out, N), (out, 1), (out, 1)
    g = fc_backward(residual_z, p["w"], cache.fc, "identity")  # grad_w (in, out), grad_b (out, 1), residual_x (in, N)
    return g, (grad_gamma, grad_beta)


# ---- the two loops over the layers ----------------------------------------------------------


def spec_forward(params: Params, x, spec: Spec, masks=None, running=None, *, training: bool = True, works=None):
    """``(y (out, N), caches, new running averages)``; in inference (``training=False``) running averages
    and no dropout. ``masks``, ``running`` and ``works`` (the training path's buffers) hold one entry per layer."""
    caches, new_running = [], []
    for i, layer in enumerate(spec):
        mask, r, work = masks[i] if masks else None, running[i] if running else None, works[i] if works else None
        x, cache, r = layer_forward(layer, params[i], x, mask, r, training, work)
        caches.append(cache)
        new_running.append(r)
    return x, caches, new_running


def spec_backward(params: Params, caches, residual_y, spec: Spec) -> tuple[list[LayerGrads], list]:
    """From the top layer down, each with its pre-update parameters -> per layer its ``LayerGrads``
    and its norm's ``(grad_gamma, grad_beta)`` (None without a norm)."""
    layers, norms = [None] * len(spec), [None] * len(spec)
    for i in range(len(spec) - 1, -1, -1):
        g, norms[i] = layer_backward(spec[i], params[i], residual_y, caches[i])
        layers[i] = g
        residual_y = g.residual_x  # (in, N) of this layer is (out, N) of the one below
    return layers, norms


def _forward_and_backward(params: Params, x, t, spec: Spec, loss: str, masks, running, weight: float):
    """The pass every caller makes: forward, the loss, backward -> (Gradients, norms' gradients, running)."""
    y, caches, new_running = spec_forward(params, x, spec, masks, running)
    loss_fn = LOSSES[loss]
    value, residual_y = loss_fn.forward(y, t), loss_fn.backward(y, t)  # L, ∂L/∂y (out, N)
    if weight != 1.0:  # a shard's n_k/N: the mean over its columns becomes its share of the global mean
        value, residual_y = value * weight, residual_y * weight  # (out, N)
    layers, norms = spec_backward(params, caches, residual_y, spec)
    return Gradients(value, y, residual_y, layers), norms, new_running


# ---- the blog's network: plain layers named by their activations ----------------------------


def forward(params: Params, x: np.ndarray, activations: Sequence[str]) -> tuple[np.ndarray, list[LayerCache]]:
    """Unchecked forward: ``x`` (in, N) -> output ``(out, N)`` and each layer's cache."""
    y, caches, _ = spec_forward(params, x, blog_spec(params, activations))
    return y, caches


def loss_and_gradients(params: Params, x, t, activations: Sequence[str], loss: str) -> Gradients:
    """Unchecked, and pure over any array-API namespace (``jax.jit`` can compile it); ``loss`` is a 0-d array."""
    return _forward_and_backward(params, x, t, blog_spec(params, activations), loss, None, None, 1.0)[0]


def gradients(params: Params, x, t, *, activations="sigmoid", loss: str = "square", dtype=None) -> Gradients:
    """The loss and every layer's residual_z, grad_w, grad_b, residual_x at ``params``; nothing is updated."""
    params, dt = validate.check_params(params, dtype)
    x, t = validate.check_data(x, t, params, dt)
    activations = validate.check_activations(activations, len(params))
    g = loss_and_gradients(params, x, t, activations, validate.check_loss(loss))
    return g._replace(loss=float(g.loss))


# ---- spec networks: norms, dropout, L2, inference -------------------------------------------


def l2_penalty(params: Params, l2: float) -> float:
    """(λ/2)·Σ‖w‖², over the weights only."""
    return 0.5 * l2 * sum(np.sum(p["w"] ** 2) for p in params) if l2 else 0.0


def _parameter_grads(layer: LayerSpec, p, g: LayerGrads, norm, l2: float) -> dict[str, np.ndarray]:
    grads = {} if norm is None else {"gamma": norm[0], "beta": norm[1]}  # (out, 1) each
    grads["w"] = g.grad_w + l2 * p["w"] if l2 else g.grad_w  # (in, out): ∂(λ/2 ‖w‖²)/∂w = λ·w
    if layer.has_bias:
        grads["b"] = g.grad_b  # (out, 1)
    return grads


def spec_loss_and_gradients(
    params: Params, x, t, spec: Spec, loss: str, masks=None, running=None, l2: float = 0.0, weight: float = 1.0
) -> SpecGradients:
    """Training-mode forward and backward at ``params``; every gradient is taken before any update.

    ``weight`` scales the loss and its residual_y, not the L2 term: a shard's n_k/N (``manual.sharded``).
    """
    g, norms, new_running = _forward_and_backward(params, x, t, spec, loss, masks, running, weight)
    grads = [_parameter_grads(*a, l2) for a in zip(spec, params, g.layers, norms)]
    return SpecGradients(float(g.loss) + float(l2_penalty(params, l2)), g.y, grads, g.layers, new_running)


def predict(params: Params, x, spec: Spec, running: Params) -> np.ndarray:
    """Inference: the output (out, N) with running averages and no dropout."""
    y, _, _ = spec_forward(params, x, spec, running=running, training=False)
    return y


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
# layer's residual_x included. train() runs the same two loops over the same layer functions
# on its own copy of the parameters, updates them in place and gives each layer buffers it
# allocates once (manual.layer.LayerWork), into which fc_forward and fc_backward then write;
# it skips the first layer's residual_x, which no update needs.


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


def train_step(params: Params, x, t, spec: Spec, loss: str, lr: float, trainable, works, residual_y) -> float:
    """One full-batch SGD step in place (every gradient first, then every update) -> L at the old ``params``.

    ``spec``: plain layers (``blog_spec``), each forward and backward into its ``LayerWork`` of ``works``.
    """
    y, caches, _ = spec_forward(params, x, spec, works=works)
    value, residual_y = _loss_into(loss, y, t, residual_y)  # (out, N)
    layer_grads, _ = spec_backward(params, caches, residual_y, spec)
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
    history: Params | None = None,
) -> Trajectory:
    """Full-batch SGD: each step takes every gradient at the current parameters, then updates.

    The training path: ``params`` is copied, then updated in place. Raises
    ``DivergenceError`` naming the first step whose loss is not finite. ``history``: arrays to record the
    parameters into (``run_steps``), for a caller that trains in chunks and reuses them.
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
    spec = blog_spec(params, activations)

    def step(p: Params) -> tuple[float, Params]:
        return train_step(p, x, t, spec, loss, lr, trainable, works, residual_y), p

    return run_steps(step, params, steps, record_params=record_params, dtype=dt, lr=lr, history=history)


def run_steps(
    step, params: Params, steps: int, *, record_params: bool, dtype, lr: float, what: str = "training",
    history: Params | None = None,
) -> Trajectory:
    """Drive ``step(params) -> (loss at params, new params)`` ``steps`` times and keep the trajectory.

    ``step`` may update ``params`` in place and return them: the history holds copies, in ``history`` when
    given (per layer {"w": (≥ steps+1, in, out), "b": (≥ steps+1, out, 1)} of the parameters' dtype: the
    trajectory's ``params`` are then its first steps+1 entries, views). Raises ``DivergenceError`` at the first
    step whose loss is not finite.
    """
    losses = np.empty(steps, dtype=dtype)
    if history is not None:
        if not record_params:
            raise ValueError("history: arrays to record into were given with record_params=False")
        history = [{k: _history_view(h, k, i, v, steps) for k, v in layer.items()}
                   for i, (h, layer) in enumerate(zip(history, params))]  # fmt: skip
    elif record_params:
        history = [{k: np.empty((steps + 1, *v.shape), v.dtype) for k, v in layer.items()} for layer in params]
    if record_params:
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


def _history_view(history: dict, key: str, layer: int, value: np.ndarray, steps: int) -> np.ndarray:
    """The first steps+1 entries of layer ``layer``'s ``history[key]``, or a ValueError saying what it must be."""
    h = history.get(key)
    want = (steps + 1, *value.shape)
    if not isinstance(h, np.ndarray) or h.dtype != value.dtype or h.shape[1:] != value.shape or len(h) < steps + 1:
        got = f"{h.shape} {h.dtype}" if isinstance(h, np.ndarray) else type(h).__name__
        raise ValueError(f"history layer {layer} {key}: expected an array of at least {want} {value.dtype}, got {got}")
    return h[: steps + 1]


def _record(history, k: int, params: Params) -> None:
    for h, layer in zip(history, params):
        h["w"][k] = layer["w"]
        h["b"][k] = layer["b"]
