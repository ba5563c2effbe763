"""The classic mistakes of a hand-written backward, each recognised by its numeric signature.

``diagnose(manual, reference, context)`` takes one failing quantity (the user's array and
the reference's array of the same gradient) and returns every catalogue entry whose
signature the manual array matches: each entry *predicts* what the wrong formula would
have produced, from the reference's correct numbers and the context, and the manual array
must equal that prediction to ``SIGNATURE_REL_TOL``. A prediction that is itself within
``DISTINCT_REL`` of the reference cannot tell the mistake from correct code (a missing
1/N when N = 1, a bias summed over all axes in a one-output layer) and is never reported,
so a correct array gets no diagnosis even when a caller asks about a passing row.

Context (``Context``) carries what a signature needs; an entry whose fields are missing
is skipped. Layout as everywhere: z = wᵀx + b with x (in, N), w (in, out), b (out, 1).
"""

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from typing import NamedTuple

import numpy as np

from fcgrad.manual.batchnorm import BN_EPS

# A signature is an exact formula applied to the reference's float64 numbers: the planted mistakes of
# tests/test_diagnosis.py match their predictions to rel ≤ 1.4e-16 (measured); a planted mistake computed
# through a whole derivation (a different summation order) matched to ≤ 1e-14. 1e-9 leaves 1e5× room, and
# a formula of another kind misses a prediction by rel ≥ 1e-3 on random inputs.
SIGNATURE_REL_TOL = 1e-9
# float32 inputs carry rounding of ~6e-8 per operation; sums over ≤ 1024 terms stay under 1e-5 (measured
# 3e-7 on the float32 examples). 1e-4 leaves 10× and is still far from a formula of another kind.
SIGNATURE_REL_TOL_F32 = 1e-4
# A prediction that differs from the reference by less than this multiple of the tolerance is
# indistinguishable from correct code on these numbers: the entry stays silent.
DISTINCT_FACTOR = 1e3


@dataclass(frozen=True)
class Context:
    """What the signatures may need about the failing quantity; any field may be None.

    ``quantity``: its name (``residual_y``, ``residual_z``, ``grad_w``, ``grad_b``, ``residual_x``...).
    ``n``: the batch size N. ``lr``: the learning rate of the step. For the layer it belongs to
    (correct numbers, from the reference or the forward): ``x`` (in, N), ``z`` and ``y`` (out, N),
    ``w`` (in, out) as the forward used it, ``upstream`` = ∂L/∂y (out, N), ``residual_z`` (out, N),
    ``grad_w`` (in, out), and ``activation`` (sigmoid, tanh, relu, identity). For a normalisation or
    dropout layer: ``gamma`` (D, 1) batch norm's scale (with ``x`` its input (D, N) and ``upstream`` ∂L/∂y),
    ``keep`` = 1 − drop and ``mask`` (D, N) the forward's 0/1 dropout mask.
    """

    quantity: str | None = None
    n: int | None = None
    lr: float | None = None
    x: np.ndarray | None = None
    z: np.ndarray | None = None
    y: np.ndarray | None = None
    w: np.ndarray | None = None
    upstream: np.ndarray | None = None
    residual_z: np.ndarray | None = None
    grad_w: np.ndarray | None = None
    activation: str | None = None
    gamma: np.ndarray | None = None
    keep: float | None = None
    mask: np.ndarray | None = None


class Diagnosis(NamedTuple):
    """One catalogue entry the manual array matches; ``str()`` is its one-line message."""

    name: str  # the entry, e.g. "missing_1_over_n"
    message: str  # "looks like a missing 1/N: manual is exactly 5 × JAX (to 3e-16)"
    residual: float  # ‖manual − prediction‖ / ‖prediction‖

    def __str__(self) -> str:
        return self.message


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), np.finfo(np.float64).tiny))


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


# ---- the scale family: manual = c × reference, c built from N, 2, −1 and N/(N − 1) ----

_SCALE_PARTS = (
    # (power of N, power of 2, sign, Bessel power) -> words; Bessel means N/(N − 1)
    ("n", {1: "a missing 1/N", -1: "a 1/N applied twice"}),
    ("two", {1: "the ½ of the square loss dropped (2(y − t) against a loss with ½)", -1: "the ½ applied twice"}),
    ("sign", {-1: "a flipped sign"}),
    ("bessel", {1: "N/(N − 1): 1/(N − 1) where the forward divides by N", -1: "(N − 1)/N: 1/N where it is 1/(N − 1)"}),
)


def _scale_candidates(n: int | None):
    """(factor, words) for every combination of up to two named parts (never the identity)."""
    n_powers = (-1, 0, 1) if n and n > 1 else (0,)
    bessel = (-1, 0, 1) if n and n > 2 else (0,)
    for pn, p2, sign, pb in product(n_powers, (-1, 0, 1), (1, -1), bessel):
        parts = {"n": pn, "two": p2, "sign": 1 if sign > 0 else -1, "bessel": pb}
        words = [table[parts[key]] for key, table in _SCALE_PARTS if parts[key] != (1 if key == "sign" else 0)]
        if not words or len(words) > 2:
            continue
        factor = sign * float(n or 1) ** pn * 2.0**p2 * (n / (n - 1) if pb else 1.0) ** pb
        yield factor, " and ".join(words)


def _scale(m, r, ctx, tol):
    if m.shape != r.shape:
        return None
    found = {}
    for factor, words in _scale_candidates(ctx.n):
        if abs(factor - 1.0) < DISTINCT_FACTOR * tol:
            continue  # too close to 1 to tell apart from correct code
        if ctx.keep is not None and abs(factor - ctx.keep) <= 1e-9 * ctx.keep:
            continue  # named by the dropout entry
        res = _rel(m, factor * r)
        if res <= tol:
            found.setdefault(round(factor, 12), []).append((words, res))
    if not found:
        return None
    factor, alternatives = next(iter(found.items()))
    words = " or ".join(w for w, _ in alternatives)
    res = min(x for _, x in alternatives)
    name = "scaled"
    if ctx.n and ctx.n > 1 and np.isclose(factor, ctx.n, rtol=1e-12):
        name = "missing_1_over_n"
    elif np.isclose(factor, -1.0, rtol=1e-12):
        name = "flipped_sign"
    elif np.isclose(factor, 2.0, rtol=1e-12) or np.isclose(factor, 0.5, rtol=1e-12):
        name = "square_loss_half"
    return name, f"looks like {words}: manual is exactly {factor:.6g} × JAX (to {res:.0e})", res


def _other_scale(m, r, ctx, tol):
    """manual = c × reference for a constant c the named parts do not explain."""
    if m.shape != r.shape or not np.any(r):
        return None
    c = float(np.vdot(m, r) / np.vdot(r, r))
    res = _rel(m, c * r)
    if res > tol or abs(c - 1.0) < DISTINCT_FACTOR * tol:
        return None
    if any(abs(c - f) <= 1e-9 * abs(f) for f, _ in _scale_candidates(ctx.n)):
        return None  # named by the scale family
    if ctx.keep is not None and abs(c - ctx.keep) <= 1e-9 * ctx.keep:
        return None  # named by the dropout entry
    return "constant_factor", f"looks like a constant factor: manual is {c:.6g} × JAX everywhere (to {res:.0e})", res


# ---- shapes and axes ----


def _transposed(m, r, ctx, tol):
    if r.ndim != 2 or m.shape != r.T.shape or (r.shape == r.T.shape and _rel(r.T, r) <= DISTINCT_FACTOR * tol):
        return None
    res = _rel(m, r.T)
    return ("transposed", f"looks like a transposed result: manual is JAX's {r.shape}ᵀ (to {res:.0e})", res)


def _keepdims_lost(m, r, ctx, tol):
    if m.shape == r.shape or m.size != r.size or m.ndim >= r.ndim:
        return None
    res = _rel(m.reshape(r.shape), r)
    return (
        "keepdims_lost",
        f"looks like keepdims lost: manual has shape {m.shape}, JAX {r.shape}, the same values (to {res:.0e})",
        res,
    )


def _bias_over_all_axes(m, r, ctx, tol):
    if r.ndim != 2 or r.shape[1] != 1 or r.shape[0] < 2:
        return None
    total = float(np.sum(r))
    if m.size == 1:
        res = _rel(m.reshape(1), np.array([total]))
        shape = f"one scalar {m.shape}"
    elif m.shape == r.shape and _rel(np.full_like(r, total), r) > DISTINCT_FACTOR * tol:
        res = _rel(m, np.full_like(r, total))
        shape = "the same scalar on every row"
    else:
        return None
    return (
        "bias_summed_over_all_axes",
        f"looks like a bias gradient summed over all axes: manual is {shape}, Σ of JAX's {r.shape[0]} entries "
        f"(to {res:.0e}); sum residual_z over the N columns only (axis=1, keepdims=True)",
        res,
    )


def _bias_over_wrong_axis(m, r, ctx, tol):
    if ctx.residual_z is None or r.ndim != 2 or r.shape[1] != 1:
        return None
    wrong = _f64(ctx.residual_z).sum(axis=0)  # (N,): a sum over the units instead of the samples
    if m.size != wrong.size:
        return None
    res = _rel(m.reshape(-1), wrong)
    return (
        "bias_summed_over_wrong_axis",
        f"looks like a bias gradient summed over the wrong axis: manual is residual_z summed over its {r.shape[0]} "
        f"rows (axis=0), shape {m.shape}, where the sum runs over the N columns (axis=1) (to {res:.0e})",
        res,
    )


# ---- activation derivatives: residual_z = upstream ⊙ f'(z) ----

_DERIVATIVE_AT_Z = {  # f'(z) as a function of z
    "sigmoid": lambda z: (s := 1 / (1 + np.exp(-z))) * (1 - s),
    "tanh": lambda z: 1 - np.tanh(z) ** 2,
    "relu": lambda z: (z > 0).astype(np.float64),
}
_DERIVATIVE_FROM_Y = {  # the same f' written from the output y
    "sigmoid": lambda y: y * (1 - y),
    "tanh": lambda y: 1 - y * y,
}


def _activation_forms(ctx):
    """(name, words, prediction) of each wrong activation backward the context allows."""
    act, up, z, y = ctx.activation, ctx.upstream, ctx.z, ctx.y
    if act is None or up is None:
        return
    up = _f64(up)
    if act in _DERIVATIVE_FROM_Y and z is not None:
        form = "y(1 − y)" if act == "sigmoid" else "1 − y²"
        yield (
            "derivative_form_at_z",
            f"{act}' = {form} taken at z where it needs y",
            up * _DERIVATIVE_FROM_Y[act](_f64(z)),
        )
    if act in _DERIVATIVE_AT_Z and y is not None:
        yield "derivative_at_y", f"{act}'(z) evaluated at y instead of z", up * _DERIVATIVE_AT_Z[act](_f64(y))
    if act == "sigmoid" and y is not None:
        yield "sigmoid_prime_as_y", "σ' written as y (it is y(1 − y))", up * _f64(y)
    if act == "tanh" and y is not None:
        yield "tanh_prime_as_one_minus_y", "tanh' written as 1 − y (it is 1 − y²)", up * (1 - _f64(y))
    if act in _DERIVATIVE_AT_Z and z is not None:
        yield "upstream_dropped", f"{act}' without the upstream ∂L/∂y (f'(z) alone)", _DERIVATIVE_AT_Z[act](_f64(z))
    if act != "identity":
        yield "activation_derivative_missing", f"no {act}' at all (residual_z = ∂L/∂y)", up


def _activation(m, r, ctx, tol):
    if ctx.quantity not in (None, "residual_z"):
        return None
    best = None
    for name, words, pred in _activation_forms(ctx):
        if pred.shape != m.shape or _rel(pred, r) <= DISTINCT_FACTOR * tol:
            continue
        res = _rel(m, pred)
        if res <= tol and (best is None or res < best[2]):
            best = (name, f"looks like {words} (to {res:.0e})", res)
    return best


# ---- residuals sent down ----


def _residual_through_updated_w(m, r, ctx, tol):
    if ctx.quantity not in (None, "residual_x") or any(v is None for v in (ctx.w, ctx.lr, ctx.grad_w, ctx.residual_z)):
        return None
    updated = _f64(ctx.w) - ctx.lr * _f64(ctx.grad_w)  # (in, out)
    pred = updated @ _f64(ctx.residual_z)  # (in, out)·(out, N) -> (in, N)
    if pred.shape != m.shape or _rel(pred, r) <= DISTINCT_FACTOR * tol:
        return None
    res = _rel(m, pred)
    return (
        "residual_through_updated_w",
        f"looks like a residual sent through the updated weights: manual is (w − lr·grad_w)·residual_z with "
        f"lr {ctx.lr:g} (to {res:.0e}); compute residual_x = w·residual_z before the update",
        res,
    )


def _residual_through_w_transposed(m, r, ctx, tol):
    if ctx.quantity not in (None, "residual_x") or ctx.w is None or ctx.residual_z is None:
        return None
    w, rz = _f64(ctx.w), _f64(ctx.residual_z)
    if w.shape[0] != w.shape[1] or _rel(w.T, w) <= DISTINCT_FACTOR * tol:
        return None  # only a square, non-symmetric w lets wᵀ·residual_z run and differ
    pred = w.T @ rz  # (out, in)·(out, N): the shapes fit only because in = out
    if pred.shape != m.shape or _rel(pred, r) <= DISTINCT_FACTOR * tol:
        return None
    res = _rel(m, pred)
    return (
        "residual_through_w_transposed",
        f"looks like residual_x = wᵀ·residual_z (it is w·residual_z, w being (in, out)) (to {res:.0e})",
        res,
    )


# ---- batch normalisation and dropout ----


def _batchnorm_without_stat_paths(m, r, ctx, tol):
    """residual_x = γ ⊙ ∂L/∂y / √(σ² + eps): μ and σ² treated as constants, their two paths dropped."""
    if ctx.quantity not in (None, "residual_x") or any(v is None for v in (ctx.x, ctx.gamma, ctx.upstream)):
        return None
    x = _f64(ctx.x)  # (D, N) batch norm's input
    var = np.mean((x - x.mean(axis=1, keepdims=True)) ** 2, axis=1, keepdims=True)  # (D, 1) biased
    pred = _f64(ctx.gamma) * _f64(ctx.upstream) / np.sqrt(var + BN_EPS)  # (D, 1)⊙(D, N)/(D, 1) -> (D, N)
    if pred.shape != m.shape or _rel(pred, r) <= DISTINCT_FACTOR * tol:
        return None
    res = _rel(m, pred)
    return (
        "batchnorm_without_mean_variance_paths",
        f"looks like batch norm's backward without the paths through the batch mean and variance: manual is "
        f"γ·∂L/∂y/√(σ² + eps) (to {res:.0e}); subtract the row means of r and of r⊙x̂ (r = γ·∂L/∂y)",
        res,
    )


def _dropout_without_keep_scale(m, r, ctx, tol):
    if ctx.quantity not in (None, "residual_x") or ctx.keep is None or m.shape != r.shape:
        return None
    if abs(ctx.keep - 1.0) < DISTINCT_FACTOR * tol:
        return None
    res = _rel(m, ctx.keep * r)
    return (
        "dropout_without_keep_scale",
        f"looks like dropout without its 1/keep scale: manual is exactly keep = {ctx.keep:g} × JAX (to {res:.0e})",
        res,
    )


def _dropout_mask_not_reused(m, r, ctx, tol):
    """Every entry is 0 or ∂L/∂y/keep, on a pattern of kept entries that is not the forward's mask."""
    if ctx.quantity not in (None, "residual_x") or any(v is None for v in (ctx.keep, ctx.mask, ctx.upstream)):
        return None
    scaled = _f64(ctx.upstream) / ctx.keep  # (D, N) what a kept entry carries
    if scaled.shape != m.shape or _f64(ctx.mask).shape != m.shape:
        return None
    used = (np.abs(m) > 0.5 * np.abs(scaled)).astype(np.float64)  # (D, N) the mask the backward applied
    pred = scaled * used  # (D, N)
    if _rel(pred, r) <= DISTINCT_FACTOR * tol:
        return None  # the pattern is the forward's own (where ∂L/∂y is non-zero)
    res = _rel(m, pred)
    differ = int(np.sum((used != _f64(ctx.mask)) & (scaled != 0)))
    return (
        "dropout_mask_not_reused",
        f"looks like dropout's mask not reused in the backward: manual is ∂L/∂y/keep on another 0/1 pattern, "
        f"{differ} of {m.size} entries differ from the forward's mask (to {res:.0e})",
        res,
    )


Entry = Callable[[np.ndarray, np.ndarray, Context, float], tuple[str, str, float] | None]

CATALOGUE: dict[str, Entry] = {
    "scale": _scale,
    "constant_factor": _other_scale,
    "transposed": _transposed,
    "keepdims_lost": _keepdims_lost,
    "bias_summed_over_all_axes": _bias_over_all_axes,
    "bias_summed_over_wrong_axis": _bias_over_wrong_axis,
    "activation": _activation,
    "residual_through_updated_w": _residual_through_updated_w,
    "residual_through_w_transposed": _residual_through_w_transposed,
    "batchnorm_without_mean_variance_paths": _batchnorm_without_stat_paths,
    "dropout_without_keep_scale": _dropout_without_keep_scale,
    "dropout_mask_not_reused": _dropout_mask_not_reused,
}


def signature_tol(*arrays) -> float:
    """The match tolerance for these arrays: float32 anywhere loosens it."""
    return SIGNATURE_REL_TOL_F32 if any(np.asarray(a).dtype == np.float32 for a in arrays) else SIGNATURE_REL_TOL


def diagnose(manual, reference, context: Context | None = None) -> list[Diagnosis]:
    """Every catalogue entry the manual array matches, best match first; [] when none (or when it is correct)."""
    ctx = context or Context()
    m, r = np.asarray(manual), np.asarray(reference)
    tol = signature_tol(m, r)
    m, r = _f64(m), _f64(r)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(r))) or r.size == 0:
        return []
    if m.shape == r.shape and _rel(m, r) <= DISTINCT_FACTOR * tol:
        return []  # correct, or too close to correct for any signature to mean something
    found = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for entry in CATALOGUE.values():
            hit = entry(m, r, ctx, tol)
            if hit is not None and hit[2] <= tol:
                found.append(Diagnosis(*hit))
    return sorted(found, key=lambda d: d.residual)


__all__ = ["CATALOGUE", "Context", "Diagnosis", "SIGNATURE_REL_TOL", "diagnose"]
