"""A row's comparison numbers, step by step, when JAX's side comes as one array per step.

JAX's large steps are one compiled call each (``one_step.LARGE_STEP_FLOPS``): their results are as many
arrays, each read where it lies (on the CPU, ``np.asarray`` of a JAX array is a view). Stacking them
first would copy every one of them into a chunk-sized array and then read that several times; here each
step goes through one scratch array, reused from step to step, that stays in the cache. The numbers are
those ``trajectory.RowAccumulator.add`` takes from stacked arrays, in float64: per step max|a − r| and
max(1, max|r|) (the scale of the tolerance), the local rule's max|r − prev|, and the sums of squares of
a − r and of r over every entry.
"""

from typing import NamedTuple

import numpy as np

from fcgrad.engine import blas_threads


class StepNumbers(NamedTuple):
    max_diff: np.ndarray  # (K,) max|a − r| of each step; NaN where either side has a NaN
    scale: np.ndarray  # (K,) max(1, max|r|) of each step
    update: np.ndarray | None  # (K,) max|r − prev| of each step, when ``prev`` was given
    sq_diff: float  # Σ (a − r)² over every step and entry
    sq_ref: float  # Σ r² over every step and entry


def _max_abs(a: np.ndarray) -> float:
    """max|a| as max(max a, −min a): NaN when ``a`` has one, without an |a| array."""
    return float(np.maximum(a.max(), -a.min()))


def sum_squares(a: np.ndarray) -> float:
    """Σ a² over every entry, in one pass without a temporary (inf and NaN go through as in np.sum(a**2)).

    Where NumPy's BLAS is held to one thread (``blas_threads.single_threaded``: the trajectory's comparisons,
    made while JAX computes), BLAS's dot: it sums a 1.6 MB row in 28 µs where einsum's loop takes 88 µs
    (measured here). Elsewhere einsum: threaded while the cores are busy, BLAS's dot was measured up to 8 times
    slower than einsum, and beside JAX without the one-thread limit the check's comparisons took 0.72 s with
    it against 0.46 s with einsum (200 steps, relu, 8 rounds each).
    """
    flat = a.reshape(-1)
    if blas_threads.single_threaded():
        return float(np.vdot(flat, flat))
    return float(np.einsum("i,i->", flat, flat))


def step_numbers(a, r, prev=None) -> StepNumbers:
    """``a``: manual's (K, ...) (any array indexed by step); ``r``: JAX's K arrays; ``prev``: (K, ...) or None.

    Every difference is taken in float64 (``np.subtract(..., dtype=float64)`` converts each operand first,
    exactly as ``trajectory._as64`` does before subtracting)."""
    k = len(r)
    scratch = np.empty(np.shape(r[0]), np.float64)
    ref64 = np.empty_like(scratch)
    max_diff, scale = np.empty(k), np.empty(k)
    update = None if prev is None else np.empty(k)
    sq_diff = sq_ref = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run: inf and NaN are results here
        for j in range(k):
            rj = np.asarray(r[j])
            if rj.dtype != np.float64:
                np.copyto(ref64, rj)
                rj = ref64
            np.subtract(a[j], rj, out=scratch, dtype=np.float64)
            max_diff[j] = _max_abs(scratch)
            sq_diff += sum_squares(scratch)
            scale[j] = np.maximum(1.0, _max_abs(rj))
            sq_ref += sum_squares(rj)
            if update is not None:
                np.subtract(rj, prev[j], out=scratch, dtype=np.float64)
                update[j] = _max_abs(scratch)
    return StepNumbers(max_diff, scale, update, sq_diff, sq_ref)
