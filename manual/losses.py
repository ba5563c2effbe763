"""Losses over a column-stored batch, with hand-derived backward.

``forward(y, t) -> L`` (a float) and ``backward(y, t) -> residual_y = ∂L/∂y``,
both with ``y`` and ``t`` of shape ``(out, N)``.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def square_forward(y: np.ndarray, t: np.ndarray) -> float:
    """The seed's loss: L = Σ (y − t)² / N / 2."""
    n = y.shape[1]
    return float(np.sum((y - t) ** 2) / n / 2)


def square_backward(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    n = y.shape[1]
    return (y - t) / n  # (out, N): the 1/N of the forward stays in the gradient


def log_softmax(y: np.ndarray) -> np.ndarray:
    """log softmax over the rows (classes) of each column, shifted by the max."""
    shifted = y - np.max(y, axis=0, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=0, keepdims=True))


def cross_entropy_forward(y: np.ndarray, t: np.ndarray) -> float:
    """Softmax cross-entropy over the output rows: L = −Σ t ⊙ log softmax(y) / N."""
    n = y.shape[1]
    return float(-np.sum(t * log_softmax(y)) / n)


def cross_entropy_backward(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    n = y.shape[1]
    p = np.exp(log_softmax(y))  # (out, N), each column sums to 1
    # ∂L/∂y = (p · Σ_rows t − t) / N; with one-hot or probability targets Σ_rows t = 1
    return (p * np.sum(t, axis=0, keepdims=True) - t) / n


@dataclass(frozen=True)
class Loss:
    name: str
    forward: Callable[[np.ndarray, np.ndarray], float]
    backward: Callable[[np.ndarray, np.ndarray], np.ndarray]


LOSSES: dict[str, Loss] = {
    "square": Loss("square", square_forward, square_backward),
    "cross-entropy": Loss("cross-entropy", cross_entropy_forward, cross_entropy_backward),
}
