"""Losses over a column-stored batch, with hand-derived backward.

``forward(y, t) -> L`` (a 0-d array) and ``backward(y, t) -> residual_y = ∂L/∂y``,
both with ``y`` and ``t`` of shape ``(out, N)``.
"""

from collections.abc import Callable
from dataclasses import dataclass

from manual.activations import namespace


def square_forward(y, t):
    """The blog's loss: L = Σ (y − t)² / N / 2."""
    n = y.shape[1]
    return namespace(y).sum((y - t) ** 2) / n / 2


def square_backward(y, t):
    n = y.shape[1]
    return (y - t) / n  # (out, N): the 1/N of the forward stays in the gradient


def log_softmax(y):
    """log softmax over the rows (classes) of each column, shifted by the max."""
    xp = namespace(y)
    shifted = y - xp.max(y, axis=0, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=0, keepdims=True))


def cross_entropy_forward(y, t):
    """Softmax cross-entropy over the output rows: L = −Σ t ⊙ log softmax(y) / N."""
    n = y.shape[1]
    return -namespace(y).sum(t * log_softmax(y)) / n


def cross_entropy_backward(y, t):
    xp = namespace(y)
    n = y.shape[1]
    p = xp.exp(log_softmax(y))  # (out, N), each column sums to 1
    # ∂L/∂y = (p · Σ_rows t − t) / N; with one-hot or probability targets Σ_rows t = 1
    return (p * xp.sum(t, axis=0, keepdims=True) - t) / n


@dataclass(frozen=True)
class Loss:
    name: str
    forward: Callable  # (y, t) -> L, a 0-d array
    backward: Callable  # (y, t) -> residual_y (out, N)


LOSSES: dict[str, Loss] = {
    "square": Loss("square", square_forward, square_backward),
    "cross-entropy": Loss("cross-entropy", cross_entropy_forward, cross_entropy_backward),
}
