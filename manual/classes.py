"""The blog's class API (FC, SquareLoss, Net) on top of the network's own layer functions (``manual.network``).

Shaped like the blog's classes, with its names (``topVal``, ``bottomVal``,
``residual_z``, ``grad_w``...), but correct: the loss gradient keeps the 1/N,
``grad_b`` is summed over columns only, and a step first runs every backward
and only then updates (``Net.train_step``), so ``residual_x`` uses pre-update ``w``.
"""

from collections.abc import Sequence

import numpy as np

from fcgrad.manual import validate
from fcgrad.manual.layer import LayerGrads
from fcgrad.manual.losses import LOSSES
from fcgrad.manual.network import init_params, layer_backward, layer_forward
from fcgrad.manual.spec import LayerSpec


class FC:
    """A fully connected layer: ``w`` (in_num, out_num), ``b`` (out_num, 1); the network's plain layer."""

    def __init__(
        self, in_num: int, out_num: int, lr: float = 0.1, activation: str = "sigmoid", *, w=None, b=None, seed=0
    ):
        validate.check_sizes([in_num, out_num])
        self.lr = validate.check_lr(lr)
        self.activation = validate.check_activations(activation, 1)[0]
        self.spec = LayerSpec(in_num, out_num, self.activation)
        init = init_params([in_num, out_num], seed=seed)[0]
        self.w = init["w"] if w is None else np.array(w, dtype=np.float64)
        self.b = init["b"] if b is None else np.array(b, dtype=np.float64)
        validate.check_params([{"w": self.w, "b": self.b}])
        self.grads: LayerGrads | None = None

    def forward(self, in_data: np.ndarray) -> np.ndarray:
        y, self._cache, _ = layer_forward(self.spec, {"w": self.w, "b": self.b}, in_data)
        return y

    @property
    def topVal(self) -> np.ndarray:  # noqa: N802  (the blog's name)
        return self._cache.y

    @property
    def bottomVal(self) -> np.ndarray:  # noqa: N802  (the blog's name)
        return self._cache.x

    def backward(self, residual_y: np.ndarray) -> np.ndarray:
        """Store residual_z, grad_w, grad_b; return residual_x with the current (pre-update) w."""
        self.grads, _ = layer_backward(self.spec, {"w": self.w, "b": self.b}, residual_y, self._cache)
        return self.grads.residual_x

    def update(self) -> None:
        self.w = self.w - self.lr * self.grads.grad_w
        self.b = self.b - self.lr * self.grads.grad_b


class _Loss:
    name = ""

    def forward(self, y: np.ndarray, t: np.ndarray) -> float:
        self._y, self._t = y, t
        return float(LOSSES[self.name].forward(y, t))

    def backward(self) -> np.ndarray:
        return LOSSES[self.name].backward(self._y, self._t)  # (out, N), includes the 1/N


class SquareLoss(_Loss):
    name = "square"


class CrossEntropyLoss(_Loss):
    name = "cross-entropy"


class Net:
    """Layers of any widths; ``Net((2, 4, 1))`` is the blog's network."""

    def __init__(self, sizes: Sequence[int] = (2, 4, 1), lr: float = 0.1, activations="sigmoid", loss=None, *, seed=0):
        sizes = validate.check_sizes(sizes)
        acts = validate.check_activations(activations, len(sizes) - 1)
        self.layers = [
            FC(p["w"].shape[0], p["w"].shape[1], lr, a, w=p["w"], b=p["b"])
            for p, a in zip(init_params(sizes, seed=seed), acts)
        ]
        self.loss = loss if loss is not None else SquareLoss()

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def train_step(self, x: np.ndarray, t: np.ndarray) -> float:
        loss = self.loss.forward(self.forward(x), t)
        residual = self.loss.backward()
        for layer in reversed(self.layers):
            residual = layer.backward(residual)
        for layer in self.layers:  # every gradient exists before the first update
            layer.update()
        return loss

    def train(self, x, t, steps: int = 10_000) -> np.ndarray:
        params, dt = validate.check_params(self.params)
        x, t = validate.check_data(x, t, params, dt)
        steps = validate.check_steps(steps)
        return np.array([self.train_step(x, t) for _ in range(steps)])

    @property
    def params(self) -> list[dict[str, np.ndarray]]:
        return [{"w": layer.w, "b": layer.b} for layer in self.layers]
