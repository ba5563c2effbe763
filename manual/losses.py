"""Losses over a column-stored batch, with hand-derived backward.

``forward(y, t) -> L`` (a 0-d array) and ``backward(y, t) -> residual_y = ∂L/∂y``,
both with ``y`` and ``t`` of shape ``(out, N)``; every loss sums over outputs, divides by N.
"""

from collections.abc import Callable
from dataclasses import dataclass

from fcgrad.manual.activations import namespace, sigmoid


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


# Kinked losses (hinge, mean absolute error): the backward takes the subgradient 0 at a kink, as
# relu' = [z > 0] does, and kink_distance(y, t) says how far each entry of y is from the nearest
# kink, so that finite differences can stay clear of them (docs/toolbox.md).


def hinge_margins(y, t):
    """Multiclass hinge margins ``y_j − y_class + 1`` (out, N); ``t`` one-hot columns."""
    return y - namespace(y).sum(t * y, axis=0, keepdims=True) + 1.0


def hinge_forward(y, t):
    """Multiclass hinge (the SVM loss): L = Σ_n Σ_{j ≠ class} max(0, y_j − y_class + 1) / N."""
    xp = namespace(y)
    return xp.sum(xp.maximum(hinge_margins(y, t), 0.0) * (1 - t)) / y.shape[1]


def hinge_backward(y, t):
    xp = namespace(y)
    n = y.shape[1]
    active = xp.where(hinge_margins(y, t) > 0, 1.0, 0.0) * (1 - t)  # (out, N): wrong classes inside the margin
    # a wrong class j gets +1 per active margin; the true class −(number of active margins) of its column
    return (active - t * xp.sum(active, axis=0, keepdims=True)) / n  # (out, N)


def hinge_kink_distance(y, t):
    """|margin| for each wrong class; for the true class, the smallest |margin| of its column."""
    xp = namespace(y)
    m = xp.abs(hinge_margins(y, t))  # (out, N)
    nearest = xp.min(xp.where(t > 0, xp.inf, m), axis=0, keepdims=True)  # (1, N)
    return xp.where(t > 0, nearest, m)


def softplus(y):
    """log(1 + eˣ) without overflow: max(y, 0) + log1p(e^−|y|)."""
    xp = namespace(y)
    return xp.maximum(y, 0.0) + xp.log1p(xp.exp(-xp.abs(y)))


def bce_logits_forward(y, t):
    """Binary cross-entropy of logits y and targets t in [0, 1]: L = Σ (softplus(y) − y·t) / N."""
    return namespace(y).sum(softplus(y) - y * t) / y.shape[1]


def bce_logits_backward(y, t):
    return (sigmoid(y) - t) / y.shape[1]  # (out, N): σ(y) − t, σ without overflow


def mae_forward(y, t):
    """Mean absolute error: L = Σ |y − t| / N."""
    xp = namespace(y)
    return xp.sum(xp.abs(y - t)) / y.shape[1]


def mae_backward(y, t):
    return namespace(y).sign(y - t) / y.shape[1]  # (out, N): sign(0) = 0 at the kink


def mae_kink_distance(y, t):
    return namespace(y).abs(y - t)


@dataclass(frozen=True)
class Loss:
    name: str
    forward: Callable  # (y, t) -> L, a 0-d array
    backward: Callable  # (y, t) -> residual_y (out, N)
    kink_distance: Callable | None = None  # (y, t) -> (out, N) distance of each y entry to a kink; None: smooth
    one_hot: bool = False  # targets must be one-hot columns


LOSSES: dict[str, Loss] = {
    "square": Loss("square", square_forward, square_backward),
    "cross-entropy": Loss("cross-entropy", cross_entropy_forward, cross_entropy_backward),
    "hinge": Loss("hinge", hinge_forward, hinge_backward, hinge_kink_distance, one_hot=True),
    "bce-logits": Loss("bce-logits", bce_logits_forward, bce_logits_backward),
    "mae": Loss("mae", mae_forward, mae_backward, mae_kink_distance),
}
