"""Two layout choices a user's code makes, and the way between their layout and the blog's.

- weights ``"in,out"`` (the blog's: ``w`` is (in, out), ``z = wᵀ·x + b``) or ``"out,in"`` (PyTorch's,
  the Coursera course's: ``w`` is (out, in), ``z = w·x + b``);
- samples ``"columns"`` (the blog's: x is (D, N), a bias (out, 1)) or ``"rows"`` (x is (N, D), a bias
  (out,); a (1, out) bias is accepted too).

Every quantity has a kind: ``data`` (x, z, y, t and every residual: one sample per column or row),
``weight`` (w, grad_w) or ``bias`` (b, grad_b). ``to_blog`` and ``from_blog`` move an array of a kind
between the user's layout and the blog's, where the catalogue's formulas are written; the words and
shapes a user reads come back through ``shape``, ``formula`` and ``sum_over_samples``.
"""

from dataclasses import dataclass

import numpy as np

from fcgrad.manual.errors import FcgradError

__tracebackhide__ = True  # under pytest, a layout refused shows the user's call, not this frame

WEIGHTS = ("in,out", "out,in")
SAMPLES = ("columns", "rows")

KINDS = {
    "x": "data", "z": "data", "y": "data", "t": "data", "upstream": "data",
    "residual_x": "data", "residual_z": "data", "residual_y": "data",
    "w": "weight", "grad_w": "weight",
    "b": "bias", "grad_b": "bias",
}  # fmt: skip


def kind_of(quantity: str | None) -> str | None:
    """``data``, ``weight``, ``bias`` or None (a quantity the layout does not move)."""
    return KINDS.get(quantity) if quantity is not None else None


@dataclass(frozen=True)
class Layout:
    """The user's layout; ``Layout()`` is the blog's."""

    weights: str = "in,out"
    samples: str = "columns"

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise FcgradError(f"weights: expected one of {', '.join(map(repr, WEIGHTS))}, got {self.weights!r}")
        if self.samples not in SAMPLES:
            raise FcgradError(f"samples: expected one of {', '.join(map(repr, SAMPLES))}, got {self.samples!r}")

    @property
    def is_blog(self) -> bool:
        return self.weights == "in,out" and self.samples == "columns"

    @property
    def rows(self) -> bool:
        return self.samples == "rows"

    @property
    def sample_axis(self) -> int:
        """The axis of a data array that runs over the N samples."""
        return 0 if self.rows else 1

    def __str__(self) -> str:
        return f"weights {self.weights}, samples by {self.samples[:-1]}"

    # ---- arrays ----

    def to_blog(self, kind: str | None, a):
        """The blog's layout of a user's array of ``kind`` (any shape: a wrong one is moved as far as it goes)."""
        a = np.asarray(a)
        if kind == "data" and self.rows and a.ndim == 2:
            return a.T
        if kind == "weight" and self.weights == "out,in" and a.ndim == 2:
            return a.T
        if kind == "bias" and self.rows:
            if a.ndim == 1:
                return a.reshape(-1, 1)
            if a.ndim == 2 and a.shape[0] == 1:
                return a.T
        return a

    def from_blog(self, kind: str | None, a):
        """The user's layout of a blog-layout array of ``kind``."""
        a = np.asarray(a)
        if kind == "bias" and self.rows and a.ndim == 2 and a.shape[1] == 1:
            return a.reshape(-1)
        if kind in ("data", "weight"):
            return self.to_blog(kind, a)  # a transpose is its own inverse
        return a

    def shape(self, kind: str | None, blog_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The user's shape of an array the blog's layout shapes ``blog_shape``."""
        return tuple(self.from_blog(kind, np.empty(blog_shape)).shape)

    # ---- words ----

    def formula(self, quantity: str, w: str = "w", delta: str = "residual_z", x: str = "x") -> str:
        """The correct formula of ``quantity`` written in this layout (· a matrix product, ᵀ a transpose)."""
        forms = {
            ("in,out", "columns"): {"z": f"{w}ᵀ·{x} + b", "grad_w": f"{x}·{delta}ᵀ", "residual_x": f"{w}·{delta}"},
            ("out,in", "columns"): {"z": f"{w}·{x} + b", "grad_w": f"{delta}·{x}ᵀ", "residual_x": f"{w}ᵀ·{delta}"},
            ("in,out", "rows"): {"z": f"{x}·{w} + b", "grad_w": f"{x}ᵀ·{delta}", "residual_x": f"{delta}·{w}ᵀ"},
            ("out,in", "rows"): {"z": f"{x}·{w}ᵀ + b", "grad_w": f"{delta}ᵀ·{x}", "residual_x": f"{delta}·{w}"},
        }
        return forms[(self.weights, self.samples)][quantity]

    def sum_over_samples(self) -> str:
        """How grad_b sums residual_z in this layout."""
        if self.rows:
            return "over the N rows only (axis=0)"
        return "over the N columns only (axis=1, keepdims=True)"

    def axis_words(self, blog_axis: int) -> str:
        """``axis=k`` of a data array in the user's layout, for the blog's axis ``blog_axis`` of a 2-D array."""
        axis = 1 - blog_axis if self.rows else blog_axis
        return f"axis={axis}"

    def bias_shape_ok(self, got: tuple[int, ...], expected: tuple[int, ...]) -> bool:
        """A returned bias gradient shaped ``got`` is accepted for a bias shaped ``expected``: (1, out) for (out,)."""
        return got == expected or (self.rows and len(expected) == 1 and got == (1, expected[0]))


BLOG = Layout()


def layout(weights: str = "in,out", samples: str = "columns") -> Layout:
    """The ``Layout`` of two keyword arguments, each checked: one line naming what was expected."""
    if isinstance(weights, Layout):
        return weights
    return Layout(str(weights).replace(" ", "") if isinstance(weights, str) else weights, samples)


__all__ = ["BLOG", "KINDS", "Layout", "SAMPLES", "WEIGHTS", "kind_of", "layout"]
