"""The classic mistakes of a hand-written backward, each recognised by its numeric signature.

``diagnose(manual, reference, context)`` takes one failing quantity (the user's array and
the reference's array of the same gradient) and returns every catalogue entry whose
signature the manual array matches: each entry *predicts* what the wrong formula would
have produced, from the reference's correct numbers and the context, and the manual array
must equal that prediction to ``SIGNATURE_REL_TOL``. A prediction that is itself within
``DISTINCT_REL`` of the reference cannot tell the mistake from correct code (a missing
1/N when N = 1, a bias summed over all axes in a one-output layer) and is never reported,
so a correct array gets no diagnosis even when a caller asks about a passing row. A quantity
of one number gets no name at all: every wrong number is a constant times the right one.

Context (``Context``) carries what a signature needs; an entry whose fields are missing is
skipped. The formulas are written in the blog's layout, z = wᵀx + b with x (in, N), w (in, out),
b (out, 1); ``Context.layout`` says the user's (weights (out, in), samples by row: see
``fcgrad.diagnosis.layout``): every array is moved to the blog's layout first, and every message
speaks in the user's. The mistakes people make when they write a backward (grad_w from the
output, a residual not sent through w, ...) are in ``fcgrad.diagnosis.mistakes``.
"""

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from fcgrad.diagnosis import mistakes
from fcgrad.diagnosis.layout import kind_of
from fcgrad.diagnosis.signature import (
    DISTINCT_FACTOR,
    SIGNATURE_REL_TOL,
    SIGNATURE_REL_TOL_F32,
    Context,
    Diagnosis,
    explain_factor,
    f64,
    fit,
    rel,
    signature_tol,
    with_factor,
)
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.batchnorm import BN_EPS

_rel, _f64 = rel, f64  # the names the catalogue's other modules import
# Recognising an activation from the forward's values (y = f(z) for every entry): both come from the same
# float64 NumPy forward, so they agree to a few ulps; 1e-12 allows that and no other function.
ACTIVATION_MATCH_TOL = 1e-12


def activation_of(z: np.ndarray, y: np.ndarray) -> str | None:
    """The activation f with y = f(z) entry by entry, if one of the library's is (identity excluded)."""
    z, y = f64(z), f64(y)
    if z.shape != y.shape:
        return None
    for name in ("sigmoid", "tanh", "relu"):
        f = ACTIVATIONS[name].forward(z)
        if np.max(np.abs(f - y), initial=0.0) <= ACTIVATION_MATCH_TOL * max(1.0, float(np.max(np.abs(y), initial=0))):
            return name
    return None


# ---- the scale family: manual = c × reference, c told as 1/N, ½, a sign, N/(N − 1), 1/N with the wrong N ----


def _scale(m, r, ctx, tol):
    if m.shape != r.shape or not np.any(r):
        return None  # every multiple of an all-zero reference is itself: no factor can be told from correct code
    c = float(np.vdot(m, r) / np.vdot(r, r))
    if not np.isfinite(c) or c == 0.0 or abs(c - 1.0) < DISTINCT_FACTOR * tol:
        return None  # 0: a gradient never computed or applied (its own entry); near 1: correct code
    if _rel(m, c * r) > tol:
        return None
    name, words, factor = explain_factor(c, ctx, tol)
    if factor is not None:
        res = _rel(m, factor * r)
        return name, f"looks like {words}: manual is exactly {factor:.6g} × JAX (to {res:.0e})", res
    if ctx.keep is not None and abs(c - ctx.keep) <= 1e-9 * ctx.keep:
        return None  # named by the dropout entry
    res = _rel(m, c * r)
    return name, f"looks like {words}: manual is {c:.6g} × JAX everywhere (to {res:.0e})", res


# ---- shapes and axes ----


def _user_shape(ctx, which: int, blog_shape) -> tuple[int, ...]:
    """The user's shape of the manual (``which`` 0) or the reference (1) array."""
    if ctx.shapes is not None:
        return tuple(ctx.shapes[which])
    return ctx.view.shape(kind_of(ctx.quantity), tuple(blog_shape))


def _transposed(m, r, ctx, tol):
    if r.ndim != 2 or m.shape != r.T.shape or (r.shape == r.T.shape and _rel(r.T, r) <= DISTINCT_FACTOR * tol):
        return None
    res = _rel(m, r.T)
    shape = _user_shape(ctx, 1, r.shape)
    return ("transposed", f"looks like a transposed result: manual is JAX's {shape}ᵀ (to {res:.0e})", res)


def _keepdims_lost(m, r, ctx, tol):
    if m.shape == r.shape or m.size != r.size or m.ndim >= r.ndim:
        return None
    res = _rel(m.reshape(r.shape), r)
    mine, theirs = _user_shape(ctx, 0, m.shape), _user_shape(ctx, 1, r.shape)
    return (
        "keepdims_lost",
        f"looks like keepdims lost: manual has shape {mine}, JAX {theirs}, the same values (to {res:.0e})",
        res,
    )


def _bias_over_all_axes(m, r, ctx, tol):
    if r.ndim != 2 or r.shape[1] != 1 or r.shape[0] < 2:
        return None
    total = float(np.sum(r))
    if m.size == 1:
        res = _rel(m.reshape(1), np.array([total]))
        shape = f"one scalar {_user_shape(ctx, 0, m.shape)}"
    elif m.shape == r.shape and _rel(np.full_like(r, total), r) > DISTINCT_FACTOR * tol:
        res = _rel(m, np.full_like(r, total))
        shape = "the same scalar in every entry"
    else:
        return None
    return (
        "bias_summed_over_all_axes",
        f"looks like a bias gradient summed over all axes: manual is {shape}, Σ of JAX's {r.shape[0]} entries "
        f"(to {res:.0e}); sum residual_z {ctx.view.sum_over_samples()}",
        res,
    )


def _bias_over_wrong_axis(m, r, ctx, tol):
    if ctx.residual_z is None or r.ndim != 2 or r.shape[1] != 1:
        return None
    wrong = _f64(ctx.residual_z).sum(axis=0)  # (N,): a sum over the units instead of the samples
    if m.size != wrong.size:
        return None
    res = _rel(m.reshape(-1), wrong)
    view = ctx.view
    return (
        "bias_summed_over_wrong_axis",
        f"looks like a bias gradient summed over the wrong axis: manual is residual_z summed over its {r.shape[0]} "
        f"units ({view.axis_words(0)}), shape {_user_shape(ctx, 0, m.shape)}, where the sum runs over the N samples "
        f"({view.axis_words(1)}) (to {res:.0e})",
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


def _derivative_at_z(act: str):
    """f' of ``act`` as a function of z: the formula above, or any other activation's own backward (one that joined
    the registry for an audit, a user's) fed ones."""
    if act in _DERIVATIVE_AT_Z:
        return _DERIVATIVE_AT_Z[act]
    if act not in ACTIVATIONS or act == "identity":
        return None
    a = ACTIVATIONS[act]

    def slope(z):
        with np.errstate(all="ignore"):
            return np.asarray(a.backward(np.ones_like(z), z, a.forward(z)), np.float64)

    return slope


def _activation_forms(ctx):
    """(name, words, prediction) of each wrong activation backward the context allows."""
    act, up, z, y = ctx.activation, ctx.upstream, ctx.z, ctx.y
    if act is None or up is None:
        return
    up = _f64(up)
    at_z = _derivative_at_z(act)
    if act in _DERIVATIVE_FROM_Y and z is not None:
        form = "y(1 − y)" if act == "sigmoid" else "1 − y²"
        yield (
            "derivative_form_at_z",
            f"{act}' = {form} taken at z where it needs y",
            up * _DERIVATIVE_FROM_Y[act](_f64(z)),
        )
    if at_z is not None and y is not None:
        yield "derivative_at_y", f"{act}'(z) evaluated at y instead of z", up * at_z(_f64(y))
    if act == "sigmoid" and y is not None:
        yield "sigmoid_prime_as_y", "σ' written as y (it is y(1 − y))", up * _f64(y)
    if act == "tanh" and y is not None:
        yield "tanh_prime_as_one_minus_y", "tanh' written as 1 − y (it is 1 − y²)", up * (1 - _f64(y))
    if at_z is not None and z is not None:
        yield "upstream_dropped", f"{act}' without the upstream ∂L/∂y (f'(z) alone)", at_z(_f64(z))
    if act != "identity":
        yield "activation_derivative_missing", f"no {act}' at all (residual_z = ∂L/∂y)", up
    at_up = "evaluated at the upstream residual ∂L/∂y instead of at z"
    if at_z is not None:
        yield "sigma_prime_of_upstream", f"{act}' {at_up} (∂L/∂y ⊙ {act}'(∂L/∂y))", up * at_z(up)
        yield (
            "sigma_prime_of_upstream",
            f"{act}' {at_up}, and no ∂L/∂y factor ({act}'(∂L/∂y) alone)",
            (at_z(up)),
        )
    if act in _DERIVATIVE_FROM_Y:
        form = "u(1 − u)" if act == "sigmoid" else "1 − u²"
        yield (
            "sigma_prime_of_upstream",
            f"{act}' written from y, {form}, {at_up} (u = ∂L/∂y)",
            (up * _DERIVATIVE_FROM_Y[act](up)),
        )
        yield (
            "sigma_prime_of_upstream",
            f"{act}' written from y, {form}, {at_up} (u = ∂L/∂y), with no u factor",
            (_DERIVATIVE_FROM_Y[act](up)),
        )


def _activation(m, r, ctx, tol):
    if ctx.quantity not in (None, "residual_z"):
        return None
    best = None
    for name, words, pred in _activation_forms(ctx):
        hit = fit(m, pred, r, tol)
        if hit is not None and (best is None or hit[1] < best[2]):
            best = (name, with_factor(words, hit[0], ctx, tol, hit[1]), hit[1])
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
        f"looks like a residual sent through the updated weights: manual is "
        f"{ctx.view.formula('residual_x', w='(w − lr·grad_w)')} with lr {ctx.lr:g} (to {res:.0e}); "
        f"compute residual_x = {ctx.view.formula('residual_x')} before the update",
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
        f"looks like residual_x sent through the transposed weights (it is {ctx.view.formula('residual_x')}, "
        f"w being {ctx.view.shape('weight', w.shape)}) (to {res:.0e})",
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
    "transposed": _transposed,
    "keepdims_lost": _keepdims_lost,
    "bias_summed_over_all_axes": _bias_over_all_axes,
    "bias_summed_over_wrong_axis": _bias_over_wrong_axis,
    "activation": _activation,
    "residual_through_updated_w": _residual_through_updated_w,
    "residual_through_w_transposed": _residual_through_w_transposed,
    "grad_w_wrong_array": mistakes.grad_w_wrong_array,
    "residual_x_wrong_path": mistakes.residual_x_wrong_path,
    "gradient_without_activation_derivative": mistakes.gradient_without_activation_derivative,
    "gradient_never_applied": mistakes.gradient_never_applied,
    "batchnorm_without_mean_variance_paths": _batchnorm_without_stat_paths,
    "dropout_without_keep_scale": _dropout_without_keep_scale,
    "dropout_mask_not_reused": _dropout_mask_not_reused,
}

_DATA_FIELDS = ("x", "z", "y", "upstream", "residual_z")


def in_blog_layout(ctx: Context, shapes=None) -> Context:
    """``ctx`` with its arrays moved from ``ctx.layout`` to the blog's (the layout kept, for the words)."""
    view = ctx.view
    if view.is_blog:
        return replace(ctx, shapes=shapes)
    moved = {k: view.to_blog("data", getattr(ctx, k)) for k in _DATA_FIELDS if getattr(ctx, k) is not None}
    moved.update({k: view.to_blog("weight", getattr(ctx, k)) for k in ("w", "grad_w") if getattr(ctx, k) is not None})
    others = tuple((words, view.to_blog("data", a)) for words, a in ctx.others)
    return replace(ctx, **moved, others=others, shapes=shapes)


def diagnose(manual, reference, context: Context | None = None) -> list[Diagnosis]:
    """Every catalogue entry the manual array matches, best match first; [] when none (or when it is correct).

    ``manual``, ``reference`` and the context's arrays are in ``context.layout`` (the blog's by default).
    """
    ctx = context or Context()
    m, r = np.asarray(manual), np.asarray(reference)
    tol = signature_tol(m, r)
    m, r = _f64(m), _f64(r)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(r))) or r.size < 2:
        return []  # nothing to compare, or one number: a constant times the right one, whatever the mistake
    kind = kind_of(ctx.quantity)
    shapes = (m.shape, r.shape)
    m, r = ctx.view.to_blog(kind, m), ctx.view.to_blog(kind, r)
    if m.shape == r.shape and _rel(m, r) <= DISTINCT_FACTOR * tol:
        return []  # correct, or too close to correct for any signature to mean something
    ctx = in_blog_layout(ctx, shapes)
    found = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for entry in CATALOGUE.values():
            hit = entry(m, r, ctx, tol)
            if hit is not None and hit[2] <= tol:
                found.append(Diagnosis(*hit))
    return sorted(found, key=lambda d: d.residual)


__all__ = [
    "CATALOGUE",
    "Context",
    "Diagnosis",
    "SIGNATURE_REL_TOL",
    "SIGNATURE_REL_TOL_F32",
    "activation_of",
    "diagnose",
    "in_blog_layout",
    "signature_tol",
]
