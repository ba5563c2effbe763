"""Activations and their hand-derived derivatives.

Each activation has a forward ``y = f(z)`` and a backward that turns the
residual of its output into the residual of its input,
``residual_z = residual_y ⊙ f'(z)``. Where the derivative is cheapest from
the output (sigmoid, tanh) it is written that way, as the seed does.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: exp is only taken of -|z| <= 0."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    # backward(residual_y, z, y) -> residual_z, all (out, N)
    backward: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(
        "sigmoid",
        sigmoid,
        lambda residual_y, z, y: residual_y * y * (1 - y),  # σ' = y(1 − y)
    ),
    "tanh": Activation(
        "tanh",
        np.tanh,
        lambda residual_y, z, y: residual_y * (1 - y * y),  # tanh' = 1 − y²
    ),
    "relu": Activation(
        "relu",
        lambda z: np.maximum(z, 0),
        lambda residual_y, z, y: residual_y * (z > 0),  # relu' = [z > 0], 0 at the kink
    ),
    "identity": Activation(
        "identity",
        lambda z: z,
        lambda residual_y, z, y: residual_y,  # identity' = 1
    ),
}
