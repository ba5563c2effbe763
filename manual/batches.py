"""Seeded mini-batches and the dropout masks of each step, drawn once and handed to both sides as data.

``schedule(n, batch_size, epochs, seed)``: each epoch is a fresh permutation of the n samples
(one NumPy generator seeded with ``seed`` serves every epoch), cut into consecutive batches of
``batch_size`` columns; the last batch of an epoch is smaller when ``batch_size`` does not divide n.
"""

import numpy as np

from fcgrad.manual.dropout import draw_mask
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.spec import Spec


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise FcgradError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def schedule(n: int, batch_size: int | None, epochs: int, seed: int) -> list[np.ndarray]:
    """The column indices of every step's batch, epoch after epoch; ``batch_size=None``: full batches, unshuffled."""
    n = _positive_int("samples", n)
    epochs = _positive_int("epochs", epochs)
    if batch_size is None:
        return [np.arange(n) for _ in range(epochs)]
    batch_size = _positive_int("batch size", batch_size)
    if batch_size > n:
        raise FcgradError(f"batch size: expected at most the {n} samples, got {batch_size}")
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(epochs):
        order = rng.permutation(n)
        steps += [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return steps


def step_masks(spec: Spec, n: int, rng: np.random.Generator, dtype=np.float64) -> list[np.ndarray | None]:
    """One training step's dropout masks: (out, n) for each layer with dropout, None for the others."""
    return [draw_mask((layer.n_out, n), layer.dropout, rng, dtype) if layer.dropout else None for layer in spec]
