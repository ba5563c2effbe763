"""The user's layout for ``audit --code``: how their file holds weights and samples, declared once.

Two independent choices, the blog's first (``fcgrad.diagnosis.layout``, whose words the catalogue speaks):
- weights ``in,out`` (the blog's ``w`` (in, out), ``z = wᵀ·x + b``) or ``out,in`` (PyTorch's, the courses'
  ``W`` (out, in), ``z = W·x + b``);
- samples ``columns`` (the blog's ``x`` (D, N), one sample per column, bias (out, 1)) or ``rows``
  (``x`` (N, D), one sample per row, bias (out,); a (1, out) bias of the user's is accepted and kept).

The audit computes in the blog's layout; ``give`` turns a blog array into the user's (what goes into
their code), ``read`` a user's array into the blog's, refusing a shape the layout does not read. The
kinds are the catalogue's: ``data`` (x, t, y, z and every residual), ``weight`` (w, grad_w), ``bias``.
"""

import numpy as np

from fcgrad.diagnosis.layout import SAMPLES, WEIGHTS, kind_of
from fcgrad.diagnosis.layout import Layout as _Layout
from fcgrad.manual.errors import FcgradError

__all__ = ["Layout", "check_samples", "check_weights", "kind_of"]


def check_weights(value, source: str) -> str:
    if not isinstance(value, str) or value.replace(" ", "") not in WEIGHTS:
        raise FcgradError(
            f"{source}: expected one of {', '.join(WEIGHTS)} (w as (in, out) or (out, in)), got {value!r}"
        )
    return value.replace(" ", "")


def check_samples(value, source: str) -> str:
    if not isinstance(value, str) or value.strip() not in SAMPLES:
        raise FcgradError(f"{source}: expected one of {', '.join(SAMPLES)} (x as (D, N) or (N, D)), got {value!r}")
    return value.strip()


class Layout(_Layout):
    """The catalogue's layout, with what the audit needs to hand arrays to a user's code and read them back."""

    def describe(self) -> str:
        w = "w (out, in)" if self.weights == "out,in" else "w (in, out)"
        if self.rows:
            return f"{w}, samples by row: x (N, in), b (out,)"
        return f"{w}, samples by column: x (in, N), b (out, 1)"

    def words(self, kind: str) -> str:
        """The user's shape of a kind, in words: ``(out, in)``, ``(N, out)``, ``(out,)``."""
        if kind == "weight":
            return "(out, in)" if self.weights == "out,in" else "(in, out)"
        if kind == "bias":
            return "(out,)" if self.rows else "(out, 1)"
        return "(N, out)" if self.rows else "(out, N)"

    def accepts(self, kind: str, blog_shape: tuple) -> tuple[tuple, ...]:
        """Every shape of the user's that the layout reads as ``blog_shape``."""
        shape = self.shape(kind, tuple(blog_shape))
        if kind == "bias" and self.rows:
            return (shape, (1, blog_shape[0]))
        return (shape,)

    def give(self, kind: str, a, like: tuple | None = None) -> np.ndarray:
        """The blog's array as the user's code holds it (a float64 copy); ``like``: a bias shape of theirs to keep."""
        a = np.array(a, dtype=np.float64)
        out = np.array(self.from_blog(kind, a), dtype=np.float64)
        if kind == "bias" and like is not None and tuple(like) in self.accepts("bias", a.shape):
            out = out.reshape(like)
        return out

    def read(self, kind: str, a, blog_shape: tuple) -> np.ndarray | None:
        """The user's array in the blog's layout, or None when its shape is none the layout reads as ``blog_shape``."""
        a = np.asarray(a, dtype=np.float64)
        if a.shape not in self.accepts(kind, tuple(blog_shape)):
            return None
        return np.asarray(self.to_blog(kind, a), dtype=np.float64).reshape(blog_shape)
