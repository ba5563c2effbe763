"""What the layer helper knows about a fully connected layer: its residual_z, its context, and the suspect.

- ``residual_z``: when the backward returns it, it is compared with JAX's ∂L/∂z, obtained by
  widening the bias: ``b`` is replaced by its copy broadcast to one bias per sample ((out, N) by
  column, (N, out) by row), and ∂L/∂(that wide b) is ∂L/∂z for a layer z = wᵀx + b (in any layout).
  For a layer that ends in its loss (y is one number), N is read off x.
- the context: for a layer with inputs ``x``, ``w`` and ``b``, the catalogue
  (``fcgrad.diagnosis.catalogue``) is told x, w, z, y, ∂L/∂y, JAX's residual_z and grad_w, the
  activation read off y = f(z), the batch size N and the user's layout, so that a failing row is
  named in the user's terms (σ' written as y, grad_w from the output, a residual not sent through w,
  a missing 1/N, ...). A layer that ends in its loss has no y and no ∂L/∂y per unit: only x, w, z.
- the suspect: when ``grad_w``, ``grad_b`` and ``residual_x`` all fail, none of them is named and
  residual_z was not returned, the three share one input, ``residual_z``; the failure says so.
"""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.diagnosis.catalogue import Context, Diagnosis, activation_of, diagnose
from fcgrad.diagnosis.layout import Layout

__tracebackhide__ = True  # pytest shows the user's test and the message, not these frames

LAYER_GRADIENTS = ("grad_w", "grad_b", "residual_x")
SUSPECT = (
    "grad_w, grad_b and residual_x are all wrong: they share residual_z = residual_y ⊙ f'(z), which is the "
    "suspect (return it as residual_z and the check compares it too)"
)
# the catalogue's quantity for each input a gradient differentiates
ROLES = {"x": "residual_x", "w": "grad_w", "b": "grad_b"}


def wide_bias_pullback(forward, names: list[str], bias: str = "b"):
    """jit-compiled (other inputs, wide bias, residual_y) -> (y, ∂L/∂wide bias): one compile per call."""

    def pull(others, wide, residual_y):
        y, vjp = jax.vjp(lambda bw: forward(**dict(zip(names, others)), **{bias: bw}), wide)
        return y, vjp(residual_y)[0]

    return jax.jit(pull)


def samples_of(inputs: dict, residual_y: np.ndarray, view: Layout) -> int | None:
    """The batch size N: the sample axis of ∂L/∂y, or of x when the layer's output is not a batch (its loss)."""
    if np.ndim(residual_y) == 2:
        return int(np.shape(residual_y)[view.sample_axis])
    x = inputs.get("x")
    return int(x.shape[view.sample_axis]) if x is not None and x.ndim == 2 else None


def widened(b: np.ndarray, residual_y: np.ndarray, view: Layout, n: int | None = None) -> np.ndarray | None:
    """The bias copied once per sample, shaped like z, or None when b is not a layer's bias.

    z is shaped like residual_y when the layer's output is a batch; for a layer whose output is its loss
    (one number), ``n`` (the batch size, from x) gives z's shape.
    """
    if residual_y.ndim == 2:
        out, n = (residual_y.shape[1] if view.rows else residual_y.shape[0]), residual_y.shape[view.sample_axis]
    elif residual_y.ndim == 0 and n is not None:
        out = b.size
    else:
        return None
    if b.size != out or (b.ndim == 2 and 1 not in b.shape) or b.ndim > 2:
        return None
    column = b.reshape(-1, 1)  # (out, 1)
    wide = np.repeat(column, n, axis=1)  # (out, N)
    return wide.T if view.rows else wide


def residual_z_reference(pullback, inputs: dict, residual_y: np.ndarray, view: Layout, bias: str = "b"):
    """(y, JAX's ∂L/∂z through a widened bias), or None when the forward does not take ``bias`` that way."""
    b = inputs.get(bias)
    wide = None if b is None else widened(b, residual_y, view, samples_of(inputs, residual_y, view))
    if wide is None:
        return None
    with jax.enable_x64(True):
        others = [jnp.asarray(v, jnp.float64) for k, v in inputs.items() if k != bias]
        try:
            y, grad = pullback(others, jnp.asarray(wide, jnp.float64), jnp.asarray(residual_y, jnp.float64))
        except Exception:  # a forward that cannot take a wide bias: residual_z is not compared
            return None
        if y.shape != residual_y.shape:
            return None
        return np.asarray(y), np.asarray(grad)


def layer_context(inputs: dict, residual_y: np.ndarray, view: Layout, jax_side: dict) -> Context:
    """The catalogue's context of a layer's failing row: whatever of x, w, b, y and JAX's gradients there is.

    ``jax_side``: ``y`` and ``residual_z`` (when the forward takes a wide bias), ``grad_w`` (JAX's).
    """
    n = samples_of(inputs, residual_y, view)
    x, w, b = (inputs.get(k) for k in ("x", "w", "b"))
    y, residual_z = jax_side.get("y"), jax_side.get("residual_z")
    if x is None or w is None or b is None or x.ndim != 2 or w.ndim != 2:
        return Context(n=n, upstream=residual_y, layout=view)
    xb, wb, bb = view.to_blog("data", x), view.to_blog("weight", w), view.to_blog("bias", b)
    if xb.shape[0] != wb.shape[0] or bb.ndim != 2 or bb.shape != (wb.shape[1], 1):
        return Context(n=n, upstream=residual_y, layout=view)  # x, w and b do not chain as a layer in this layout
    z = view.from_blog("data", wb.T @ xb + bb)  # (out, N) in the blog's layout, the user's here
    if np.shape(residual_y) != z.shape:  # a layer whose output is its loss: no y and no ∂L/∂y per unit
        y, residual_y = None, None
    activation = activation_of(z, y) if y is not None else None
    return Context(
        n=n, x=x, z=z, y=y, w=w, upstream=residual_y, residual_z=residual_z, grad_w=jax_side.get("grad_w"),
        activation=activation, layout=view,
    )  # fmt: skip


def diagnoses_of(gname: str, iname: str, manual, reference, context: Context) -> list[Diagnosis]:
    """The catalogue's diagnoses of one failing row (shapes included), best first; [] when none matches."""
    a = np.asarray(manual)
    if a.dtype.kind not in "biuf" or not np.all(np.isfinite(a)):
        return []
    quantity = "residual_z" if gname == "residual_z" else ROLES.get(iname)
    ctx = context if quantity == context.quantity else _with_quantity(context, quantity)
    return diagnose(a, reference, ctx)


def names_of(gname: str, iname: str, manual, reference, context: Context) -> list[str]:
    """The catalogue's messages for one failing row, best first; [] when none matches."""
    return [d.message for d in diagnoses_of(gname, iname, manual, reference, context)]


def _with_quantity(context: Context, quantity: str | None) -> Context:
    if quantity is None:  # an input of another kind: only the shape and scale entries can speak
        return Context(n=context.n, layout=context.layout)
    return replace(context, quantity=quantity)


def suspect_line(failing: dict[str, bool], named: dict[str, list[str]], returned_residual_z: bool) -> str | None:
    """The suspect line, when grad_w, grad_b and residual_x all fail, none is named and residual_z was not compared."""
    if returned_residual_z or not all(failing.get(g) for g in LAYER_GRADIENTS):
        return None
    if any(named.get(g) for g in LAYER_GRADIENTS):
        return None  # a named mistake in one of them: independent formulas, not one shared input
    return SUSPECT


__all__ = [
    "LAYER_GRADIENTS",
    "SUSPECT",
    "diagnoses_of",
    "layer_context",
    "names_of",
    "residual_z_reference",
    "samples_of",
    "suspect_line",
    "wide_bias_pullback",
    "widened",
]
