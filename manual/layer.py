"""One fully connected layer, forward and hand-derived backward, as pure functions (array API: NumPy or JAX).

Layout (the blog's): data by column, ``x`` is ``(in, N)``; ``w`` is ``(in, out)``; ``b`` is ``(out, 1)``;
``z = wᵀ·x + b`` and ``y = f(z)`` are ``(out, N)``. ``manual.train`` adds a ``LayerWork`` (end of file).
"""

from typing import NamedTuple

import numpy as np

from fcgrad.manual.activations import ACTIVATIONS, in_place, namespace


class Cache(NamedTuple):
    """What the forward keeps for the backward (the blog's bottomVal and topVal)."""

    x: np.ndarray  # (in, N)   the layer's input, bottomVal
    z: np.ndarray  # (out, N)  the linear part
    y: np.ndarray  # (out, N)  the activation's output, topVal
    work: "LayerWork | None" = None  # the training path's buffers; None: every result is a new array


class LayerGrads(NamedTuple):
    """Everything the backward of one layer computes, in the blog's names."""

    residual_z: np.ndarray  # (out, N)  ∂L/∂z
    grad_w: np.ndarray  # (in, out)  ∂L/∂w
    grad_b: np.ndarray  # (out, 1)   ∂L/∂b
    residual_x: np.ndarray | None  # (in, N)   ∂L/∂x, sent to the layer below (None: not needed)


QUANTITIES = LayerGrads._fields


def fc_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, activation: str, work=None) -> tuple[np.ndarray, Cache]:
    """``y = f(wᵀ·x + b)`` ``(out, N)`` and what the backward needs; given a ``LayerWork``, the same
    formulas in NumPy into its buffers (the training path, end of file)."""
    if work is None:  # every quantity as a new array (the comparison path)
        z = w.T @ x + b  # (out, in)·(in, N) + (out, 1) -> (out, N)
        y = ACTIVATIONS[activation].forward(z)  # (out, N)
        return y, Cache(x, z, y)
    z = np.matmul(w.T, x, out=work.z)  # (out, in)·(in, N) -> (out, N)
    z += b  # + (out, 1), broadcast over the N columns
    forms = in_place(activation)
    y = ACTIVATIONS[activation].forward(z) if forms is None else forms.forward_into(z, work.y)  # (out, N)
    return y, _new_tuple(Cache, (x, z, y, work))


def fc_backward(residual_y: np.ndarray, w: np.ndarray, cache: Cache, activation: str) -> LayerGrads:
    """Residual of the layer's output ``(out, N)`` -> its gradients and input residual; ``w`` must be the
    weight the forward used (pre-update), so the residual sent down is ∂L/∂x where the loss was taken.
    A forward given a ``LayerWork`` has its backward write into the same work's buffers."""
    x, z, y, work = cache
    if work is None:  # every quantity as a new array (the comparison path)
        residual_z = ACTIVATIONS[activation].backward(residual_y, z, y)  # (out, N) ⊙ f'(z) -> (out, N)
        grad_w = x @ residual_z.T  # (in, N)·(N, out) -> (in, out)
        grad_b = namespace(residual_z).sum(residual_z, axis=1, keepdims=True)  # sum over the N columns -> (out, 1)
        residual_x = w @ residual_z  # (in, out)·(out, N) -> (in, N), pre-update w
        return LayerGrads(residual_z, grad_w, grad_b, residual_x)
    forms = in_place(activation)
    if forms is None:
        residual_z = ACTIVATIONS[activation].backward(residual_y, z, y)  # (out, N) ⊙ f'(z) -> (out, N)
    else:
        residual_z = forms.backward_into(residual_y, z, y, work.residual_z)  # (out, N) ⊙ f'(z) -> (out, N)
    grad_w = np.matmul(x, residual_z.T, out=work.grad_w)  # (in, N)·(N, out) -> (in, out)
    grad_b = np.add.reduce(residual_z, axis=1, keepdims=True, out=work.grad_b)  # sum over the N columns -> (out, 1)
    residual_x = None
    if work.residual_x is not None:
        residual_x = np.matmul(w, residual_z, out=work.residual_x)  # (in, out)·(out, N) -> (in, N), pre-update w
    return _new_tuple(LayerGrads, (residual_z, grad_w, grad_b, residual_x))


# ---- the training path ----------------------------------------------------------------------
# manual.train gives each layer's forward a LayerWork: the formulas above then run in NumPy
# into its buffers, reused every step, and the backward computes residual_x only where the work
# has a buffer for it: not in the first layer, whose residual_x nothing consumes
# (manual.gradients, the comparison path, still reports it).


class LayerWork(NamedTuple):
    """The training path's buffers of one layer, written every step."""

    z: np.ndarray  # (out, N)
    y: np.ndarray  # (out, N)
    residual_z: np.ndarray  # (out, N)
    grad_w: np.ndarray  # (in, out)
    grad_b: np.ndarray  # (out, 1)
    residual_x: np.ndarray | None  # (in, N); None: not computed (the first layer)


def layer_work(n_in: int, n_out: int, batch: int, dtype, *, residual_x: bool) -> LayerWork:
    """Fresh buffers for one layer ``in -> out`` over a batch of ``batch`` columns."""
    out_n = lambda: np.empty((n_out, batch), dtype)  # noqa: E731
    rx = np.empty((n_in, batch), dtype) if residual_x else None
    return LayerWork(out_n(), out_n(), out_n(), np.empty((n_in, n_out), dtype), np.empty((n_out, 1), dtype), rx)


_new_tuple = tuple.__new__  # Cache(...), LayerGrads(...) without NamedTuple's __new__ in Python: the training path
