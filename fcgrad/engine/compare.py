"""How two arrays of one quantity are compared: max |a − r| and ‖a − r‖ / max(‖r‖, tiny)."""

from dataclasses import asdict, dataclass

import numpy as np


def errors(a, r) -> tuple[float, float]:
    """(max_abs, rel) of a manual array ``a`` against a reference array ``r`` of the same shape.

    The relative error uses Frobenius norms: elementwise ratios blow up where a
    gradient is near zero. Both exactly zero gives 0; NaN or Inf anywhere gives NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"cannot compare shapes {a.shape} and {r.shape}")
    if a.size == 0:
        return 0.0, 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(r))):
        return float("nan"), float("nan")  # NaN or Inf on either side: no number, never within a tolerance
    diff = a - r
    max_abs = float(np.max(np.abs(diff)))
    rel = float(np.linalg.norm(diff) / max(np.linalg.norm(r), np.finfo(np.float64).tiny))
    return max_abs, rel


def worst_index(a, r) -> tuple[int, ...]:
    """Where |a − r| is largest."""
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(r, dtype=np.float64))
    return tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))


@dataclass(frozen=True)
class Row:
    """One compared quantity of one layer."""

    layer: int
    quantity: str
    max_abs_err: float
    rel_err: float
    tol: float
    ok: bool
    rule: str = "rel"  # how it was judged: rel (gradients), global, local or shadow (trajectories)
    first_bad_step: int | None = None  # trajectories: the first step beyond its tolerance
    ratio: float | None = None  # trajectories: the worst max|Δ| / tolerance over the steps

    zero: bool = False  # gradients: both sides exactly zero everywhere

    def __post_init__(self) -> None:  # no report states a negative zero: −0.0 + 0.0 is +0.0, nothing else changes
        for name in ("max_abs_err", "rel_err", "tol", "ratio"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value + 0.0)

    def as_dict(self) -> dict:
        return asdict(self)


def rel_row(layer: int, quantity: str, a, r, tol: float) -> Row:
    """Pass when the relative error is within ``tol`` (NaN never passes)."""
    max_abs, rel = errors(a, r)
    zero = not np.any(np.asarray(a)) and not np.any(np.asarray(r))
    return Row(layer, quantity, max_abs, rel, tol, bool(rel <= tol), zero=bool(zero))
