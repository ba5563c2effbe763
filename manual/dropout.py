"""Inverted dropout with a mask drawn outside the layer, so both sides can share it.

Training: ``y = x ⊙ mask / keep`` with ``mask`` (D, N) of 0s and 1s, each 1 with probability
``keep = 1 − drop``; the 1/keep keeps E[y] = x, so inference is the identity. The backward
reuses the forward's mask: ``residual_x = residual_y ⊙ mask / keep``.
"""

from typing import NamedTuple

import numpy as np


class DropoutCache(NamedTuple):
    mask: np.ndarray  # (D, N) 0.0 or 1.0
    keep: float  # 1 − drop


def draw_mask(shape: tuple[int, int], drop: float, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """A (D, N) mask of 0.0 and 1.0, each entry kept (1.0) with probability 1 − drop."""
    return (rng.random(shape) >= drop).astype(dtype)


def dropout_forward(x, mask, drop: float) -> tuple[np.ndarray, DropoutCache]:
    keep = 1.0 - drop
    return x * mask / keep, DropoutCache(mask, keep)  # (D, N)⊙(D, N) / keep -> (D, N)


def dropout_backward(residual_y, cache: DropoutCache) -> np.ndarray:
    mask, keep = cache
    return residual_y * mask / keep  # (D, N)⊙(D, N) / keep -> (D, N), the forward's own mask
