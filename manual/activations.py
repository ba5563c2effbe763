"""Activations and their hand-derived derivatives.

Written against the array-API standard (``x.__array_namespace__()``), so the same
formulas run on NumPy arrays here and on JAX arrays when a benchmark compiles them.

Each activation has a forward ``y = f(z)`` and a backward that turns the residual of its
output into the residual of its input, ``residual_z = residual_y ⊙ f'(z)``. Where the derivative
is cheapest from the output (sigmoid, tanh) it is written that way, as the blog does.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

_NUMPY_TYPES = (np.ndarray, np.generic)


def namespace(a):
    """The array-API namespace of ``a`` (numpy for NumPy arrays, jax.numpy for JAX arrays)."""
    if isinstance(a, _NUMPY_TYPES) or not hasattr(a, "__array_namespace__"):
        return np  # asked first: __array_namespace__() costs ~1 µs, 10% of a 2-4-1 step
    return a.__array_namespace__()


def sigmoid(z):
    """Logistic function without overflow: exp is only taken of -|z| <= 0."""
    xp = namespace(z)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0, e) / (1.0 + e)  # 1/(1+e^-z) for z >= 0, e^z/(1+e^z) below


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
        lambda z: namespace(z).tanh(z),
        lambda residual_y, z, y: residual_y * (1 - y * y),  # tanh' = 1 − y²
    ),
    "relu": Activation(
        "relu",
        lambda z: namespace(z).maximum(z, 0.0),
        lambda residual_y, z, y: namespace(z).where(z > 0, residual_y, 0.0),  # relu' = [z > 0], 0 at the kink
    ),
    "identity": Activation(
        "identity",
        lambda z: z,
        lambda residual_y, z, y: residual_y,  # identity' = 1
    ),
}


# ---- the training path's forms ------------------------------------------------------------
# manual.train runs the formulas above in NumPy, into buffers it reuses every step.


def sigmoid_into(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """σ(z) = (1 + tanh(z/2)) / 2 into ``out`` (NumPy): the training path's sigmoid.

    tanh is bounded, so nothing overflows at any z, and it costs four passes and no
    branch (``sigmoid`` above needs exp, abs, where and a division). Its values are
    ``sigmoid``'s to within an absolute rounding error of about one unit in the last
    place of 1 (tests/test_fast_path.py), but not relative: below about 1e-4 the
    sum 1 + tanh loses leading digits. The training path is judged by absolute
    errors; gradients reported for comparison use ``sigmoid``.
    """
    np.multiply(z, 0.5, out=out)  # z/2
    np.tanh(out, out=out)  # tanh(z/2) in [-1, 1]
    out += 1.0
    out *= 0.5
    return out


def _sigmoid_backward_into(residual_y, z, y, out):
    np.subtract(1.0, y, out=out)  # 1 − y
    out *= y  # σ' = y(1 − y)
    out *= residual_y  # residual_y ⊙ σ'
    return out


def _tanh_backward_into(residual_y, z, y, out):
    np.multiply(y, y, out=out)  # y²
    np.subtract(1.0, out, out=out)  # tanh' = 1 − y²
    out *= residual_y
    return out


class InPlace(NamedTuple):
    """An activation's forms on the training path; each may return its input instead of writing ``out``."""

    activation: Activation  # the registry entry these forms compute
    forward_into: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (z, out) -> y
    backward_into: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (residual_y, z, y, out)


IN_PLACE: dict[str, InPlace] = {
    "sigmoid": InPlace(ACTIVATIONS["sigmoid"], sigmoid_into, _sigmoid_backward_into),
    "tanh": InPlace(ACTIVATIONS["tanh"], lambda z, out: np.tanh(z, out=out), _tanh_backward_into),
    "relu": InPlace(
        ACTIVATIONS["relu"],
        lambda z, out: np.maximum(z, 0.0, out=out),
        lambda residual_y, z, y, out: np.multiply(residual_y, z > 0, out=out),  # residual_y ⊙ [z > 0]
    ),
    "identity": InPlace(ACTIVATIONS["identity"], lambda z, out: z, lambda residual_y, z, y, out: residual_y),
}


def in_place(name: str) -> InPlace | None:
    """The training path's forms of ``ACTIVATIONS[name]``; None when that entry is not the one they compute
    (an activation replaced or added by a user runs there through its own forward and backward)."""
    forms = IN_PLACE.get(name)
    return forms if forms is not None and ACTIVATIONS.get(name) is forms.activation else None
