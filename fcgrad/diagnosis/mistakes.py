"""The mistakes people make when they write a layer's backward by hand, each told by its numbers.

Arrays here are in the blog's layout (x (in, N), w (in, out), residual_z (out, N)); the words come
back in the user's (``ctx.view``). Each entry is a *pattern*: the right formula with one wrong array
in it, possibly times a constant (``signature.fit``), so that a mistake written together with a
wrong 1/N is still named, and the constant told.

- ``grad_w_from_output``: grad_w = a·residual_zᵀ with ``a`` the layer's output y, its z, or another
  array at hand (``ctx.others``: another layer's input or output) where the input x belongs;
- ``grad_w_times_w``: grad_w multiplied by w instead of x (any product of w or wᵀ with residual_z or
  its transpose that gives grad_w's shape, or w entry by entry times residual_z summed over the samples);
- ``activation_derivative_dropped``: residual_x = w·∂L/∂y, the activation's derivative left out of
  the residual sent down;
- ``hidden_residual_not_through_w``: residual_x = residual_z (or ∂L/∂y) reused as it is, broadcast
  when it has one row, instead of going through w;
- ``activation_derivative_missing`` (of a gradient): grad_w = x·(∂L/∂y)ᵀ or grad_b = Σ ∂L/∂y, the activation's
  derivative never applied to the upstream before the gradients were taken from it;
- ``gradient_never_applied``: grad_w or grad_b exactly 0 everywhere (read back from an update: the
  step left w and b unchanged).
"""

import numpy as np

from fcgrad.diagnosis.signature import Context, f64, fit, with_factor


def _broadcast(pred: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    if pred.shape == shape:
        return pred
    try:
        return np.broadcast_to(pred, shape)
    except ValueError:
        return None


def _best(m, r, ctx, tol, candidates):
    """The candidate (name, words, prediction) that ``m`` fits best, as an entry's hit; None if none fits."""
    best = None
    for name, words, pred in candidates:
        if pred is None:
            continue
        hit = fit(m, pred, r, tol)
        if hit is not None and (best is None or hit[1] < best[2]):
            c, res = hit
            best = (name, with_factor(words, c, ctx, tol, res), res)
    return best


def _products(a: np.ndarray, d: np.ndarray, shape: tuple[int, ...]):
    """Every product of ``a`` or aᵀ with ``d`` or dᵀ, in either order, shaped ``shape``."""
    for left in (a, a.T):
        for right in (d, d.T):
            for p, q in ((left, right), (right, left)):
                if p.shape[1] == q.shape[0] and (p.shape[0], q.shape[1]) == shape:
                    yield p @ q


def grad_w_wrong_array(m, r, ctx: Context, tol):
    if ctx.quantity != "grad_w" or ctx.residual_z is None or m.ndim != 2:
        return None
    d = f64(ctx.residual_z)  # (out, N) the right residual_z
    right = ctx.view.formula("grad_w")
    candidates = []
    arrays = [("the layer's output y", ctx.y), ("the layer's z", ctx.z), *ctx.others]
    for words, a in arrays:
        if a is None:
            continue
        a = f64(a)
        if a.ndim == 2 and a.shape[1] == d.shape[1] and (a.shape[0], d.shape[0]) == m.shape:
            pred = a @ d.T  # (?, N)·(N, out): the right product with another array in x's place
            say = f"grad_w computed from {words} where the layer's input x belongs (it is {right})"
            candidates.append(("grad_w_from_output", say, pred))
    if ctx.w is not None:
        w = f64(ctx.w)  # (in, out)
        say = f"grad_w multiplied by w where the input x belongs (it is {right})"
        candidates += [("grad_w_times_w", say, p) for p in _products(w, d, m.shape)]
        if w.shape == m.shape and w.shape[1] == d.shape[0]:
            summed = f"grad_w as w times residual_z summed over the samples, entry by entry (it is {right})"
            candidates.append(("grad_w_times_w", summed, w * d.sum(axis=1)))  # (in, out) ⊙ (out,): each column scaled
    return _best(m, r, ctx, tol, candidates)


def residual_x_wrong_path(m, r, ctx: Context, tol):
    if ctx.quantity != "residual_x" or ctx.upstream is None or ctx.w is None or m.ndim != 2:
        return None  # a fully connected layer's residual only: w is what it should have gone through
    view, up = ctx.view, f64(ctx.upstream)  # (out, N) ∂L/∂y of this layer
    right = view.formula("residual_x")
    candidates = []
    if f64(ctx.w).shape[1] == up.shape[0]:
        dropped = view.formula("residual_x", delta="∂L/∂y")
        say = f"the activation's derivative dropped from the residual sent down: {dropped} where it is {right}"
        candidates.append(("activation_derivative_dropped", say, _broadcast(f64(ctx.w) @ up, m.shape)))
    reused = [("residual_z", ctx.residual_z), ("∂L/∂y", up)]
    for words, a in reused:
        if a is not None:
            say = f"a hidden residual that reuses the error above ({words}) instead of going through w: it is {right}"
            candidates.append(("hidden_residual_not_through_w", say, _broadcast(f64(a), m.shape)))
    return _best(m, r, ctx, tol, candidates)


def gradient_without_activation_derivative(m, r, ctx: Context, tol):
    """grad_w = x·(∂L/∂y)ᵀ or grad_b = Σ ∂L/∂y: the gradient taken from the upstream, f' never applied to it."""
    if ctx.quantity not in ("grad_w", "grad_b") or ctx.upstream is None or ctx.activation in (None, "identity"):
        return None
    up = f64(ctx.upstream)  # (out, N) ∂L/∂y of this layer
    if ctx.quantity == "grad_b":
        pred = _broadcast(up.sum(axis=1, keepdims=True), m.shape)  # (out, 1)
        words = f"no {ctx.activation}' in the bias gradient: Σ ∂L/∂y where Σ residual_z belongs"
    else:
        if ctx.x is None or f64(ctx.x).shape[1] != up.shape[1]:
            return None
        pred = f64(ctx.x) @ up.T  # (in, N)·(N, out)
        words = (
            f"no {ctx.activation}' in the weight gradient: {ctx.view.formula('grad_w', delta='∂L/∂y')} where it is "
            f"{ctx.view.formula('grad_w')}"
        )
    return _best(m, r, ctx, tol, [("activation_derivative_missing", words, pred)])


def gradient_never_applied(m, r, ctx: Context, tol):
    if not (ctx.quantity in ("grad_w", "grad_b") or ctx.read_from_update) or m.shape != r.shape:
        return None
    if np.any(m) or not np.any(r):
        return None
    if ctx.read_from_update:
        words = (
            "a gradient never applied: the step left w and b unchanged (read back as 0 × JAX); "
            "w ← w − lr·grad_w belongs in the step (or the file's update(lr) must run after backward)"
        )
    else:
        words = "a gradient never computed or never applied: manual is exactly 0 everywhere"
    return "gradient_never_applied", f"looks like {words}", 0.0


__all__ = [
    "gradient_never_applied",
    "gradient_without_activation_derivative",
    "grad_w_wrong_array",
    "residual_x_wrong_path",
]
