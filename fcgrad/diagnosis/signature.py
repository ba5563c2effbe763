"""What every catalogue entry shares: the tolerances, the context it reads, and how a match is told.

A signature predicts what a wrong formula would have produced from the reference's correct numbers
and the context, and the manual array must equal that prediction to ``SIGNATURE_REL_TOL``. A
*pattern* (a wrong array in a formula: the output y where the input x belongs, ...) may come with a
constant factor besides (``fit``): the factor is then put in words by ``factor_words`` when it is a
1/N, a ½, a sign, a 1/N with the wrong N (the fan-in, the fan-out, a batch of another size), or
told as a plain number when it is none of them.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fcgrad.diagnosis.layout import BLOG, Layout

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
# "1/M where 1/N belongs" is read off a factor N/M only for a whole M up to this size: a constant that is
# N/M to rel 1e-9 for a whole M ≤ 1e4 happens by chance with probability ≤ 2e-5 (|M − round(M)| ≤ 1e-5).
LARGEST_OTHER_BATCH = 10_000


@dataclass(frozen=True)
class Context:
    """What the signatures may need about the failing quantity; any field may be None.

    ``quantity``: its name (``residual_y``, ``residual_z``, ``grad_w``, ``grad_b``, ``residual_x``...).
    ``n``: the batch size N. ``lr``: the learning rate of the step. For the layer it belongs to
    (correct numbers, from the reference or the forward): ``x`` the input, ``z`` and ``y``, ``w`` as the
    forward used it, ``upstream`` = ∂L/∂y, ``residual_z``, ``grad_w``, and ``activation`` (sigmoid, tanh,
    relu, identity); ``others``: other arrays the code had at hand, ``((words, array), ...)`` shaped like
    x (another layer's input or output), for a grad_w computed from the wrong one. For a normalisation or
    dropout layer: ``gamma`` (D, 1) batch norm's scale (with ``x`` its input (D, N) and ``upstream`` ∂L/∂y),
    ``keep`` = 1 − drop and ``mask`` (D, N) the forward's 0/1 dropout mask.

    ``layout``: the layout of every array here and of the two compared (default the blog's: x (in, N),
    w (in, out), b (out, 1)); the catalogue moves them to the blog's, where its formulas are written, and
    speaks in this one. ``read_from_update``: the gradients were read back from an update (w − w_new)/lr,
    so an exact 0 means the update never happened.
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
    others: tuple = ()
    layout: Layout | None = None
    read_from_update: bool = False
    shapes: tuple | None = None  # filled by diagnose: the user's shapes of (manual, reference)

    @property
    def view(self) -> Layout:
        return self.layout or BLOG

    @property
    def fan_in(self) -> int | None:
        """The layer's input width (blog layout: w is (in, out), x is (in, N))."""
        if self.w is not None and np.ndim(self.w) == 2:
            return int(np.shape(self.w)[0])
        return int(np.shape(self.x)[0]) if self.x is not None and np.ndim(self.x) == 2 else None

    @property
    def fan_out(self) -> int | None:
        if self.w is not None and np.ndim(self.w) == 2:
            return int(np.shape(self.w)[1])
        for a in (self.residual_z, self.upstream):
            if a is not None and np.ndim(a) == 2:
                return int(np.shape(a)[0])
        return None


class Diagnosis(NamedTuple):
    """One catalogue entry the manual array matches; ``str()`` is its one-line message."""

    name: str  # the entry, e.g. "missing_1_over_n"
    message: str  # "looks like a missing 1/N: manual is exactly 5 × JAX (to 3e-16)"
    residual: float  # ‖manual − prediction‖ / ‖prediction‖

    def __str__(self) -> str:
        return self.message


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), np.finfo(np.float64).tiny))


def f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def signature_tol(*arrays) -> float:
    """The match tolerance for these arrays: float32 anywhere loosens it."""
    return SIGNATURE_REL_TOL_F32 if any(np.asarray(a).dtype == np.float32 for a in arrays) else SIGNATURE_REL_TOL


# ---- a pattern, possibly times a constant ----


def fit(m: np.ndarray, pred: np.ndarray, r: np.ndarray, tol: float) -> tuple[float, float] | None:
    """(c, residual) when ``m`` = c × ``pred`` to ``tol`` (c = 1 first), or None.

    ``pred`` must tell itself apart from the reference: not within reach of it, nor of any multiple
    of it (a multiple of the reference is the scale family's to name), so that a correct ``m`` can
    never fit. A pattern needs two numbers or more: one number is a multiple of anything.
    """
    if pred.shape != m.shape or m.size < 2 or not np.all(np.isfinite(pred)) or not np.any(pred):
        return None
    if pred.shape == r.shape:
        c_r = float(np.vdot(pred, r) / np.vdot(r, r)) if np.any(r) else 0.0
        if rel(pred, r) <= DISTINCT_FACTOR * tol or rel(pred, c_r * r) <= DISTINCT_FACTOR * tol:
            return None
    res = rel(m, pred)
    if res <= tol:
        return 1.0, res
    c = float(np.vdot(m, pred) / np.vdot(pred, pred))
    if not np.isfinite(c) or c == 0.0:
        return None
    res = rel(m, c * pred)
    return (c, res) if res <= tol else None


# ---- a constant factor in words ----

_NAMED_PARTS = (
    # part -> {power: words}; "bessel" stands for N/(N − 1)
    ("n", {1: "a missing 1/N", -1: "a 1/N applied twice"}),
    ("two", {1: "the ½ of the square loss dropped (2(y − t) against a loss with ½)", -1: "the ½ applied twice"}),
    ("sign", {-1: "a flipped sign"}),
    ("bessel", {1: "N/(N − 1): 1/(N − 1) where the forward divides by N", -1: "(N − 1)/N: 1/N where it is 1/(N − 1)"}),
)


def named_factors(n: int | None):
    """(factor, words) for every combination of up to two named parts (never the identity)."""
    n_powers = (-1, 0, 1) if n and n > 1 else (0,)
    bessel = (-1, 0, 1) if n and n > 2 else (0,)
    for pn in n_powers:
        for p2 in (-1, 0, 1):
            for sign in (1, -1):
                for pb in bessel:
                    parts = {"n": pn, "two": p2, "sign": sign, "bessel": pb}
                    words = [t[parts[k]] for k, t in _NAMED_PARTS if parts[k] != (1 if k == "sign" else 0)]
                    if not words or len(words) > 2:
                        continue
                    factor = sign * float(n or 1) ** pn * 2.0**p2 * (n / (n - 1) if pb else 1.0) ** pb
                    yield factor, " and ".join(words)


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(abs(a), abs(b))


def wrong_n_words(c: float, ctx: Context, tol: float, widths_only: bool = False) -> str | None:
    """Words for c as a 1/N with the wrong N: 1/fan-in, 1/fan-out or 1/M for a batch of M, where 1/N belongs.

    ``c`` = s·N/M (1/M in place of 1/N) or s/M with M the fan-in or fan-out (1/M on top of the 1/N), s = ±1.
    """
    n = ctx.n
    sign = " and a flipped sign" if c < 0 else ""
    a = abs(c)
    widths = [(m, f"the fan-in {m}") for m in [ctx.fan_in] if m and m > 1]
    widths += [(m, f"the fan-out {m}") for m in [ctx.fan_out] if m and m > 1 and m != ctx.fan_in]
    if ctx.fan_in and ctx.fan_in == ctx.fan_out and ctx.fan_in > 1:
        widths = [(ctx.fan_in, f"the fan-in (= fan-out) {ctx.fan_in}")]
    for m, words in widths:
        if n and m != n and _close(a, n / m, tol):
            return f"1/M with M = {words} where 1/N = 1/{n} belongs{sign}"
        if m != 1 and _close(a, 1 / m, tol):
            return f"an extra 1/M with M = {words}, on top of the 1/N{sign}"
    if n and a < n and not widths_only:
        m = n / a  # a whole M: 1/M in place of 1/N
        limit = min(LARGEST_OTHER_BATCH, 1e-3 / tol)
        if 2 <= round(m) <= limit and abs(m - round(m)) <= tol * m and round(m) != n:
            return f"1/M with M = {round(m)}, a batch of another size, where 1/N = 1/{n} belongs{sign}"
    return None


def _name_of(factor: float, n: int | None) -> str:
    if n and n > 1 and _close(factor, n, 1e-12):
        return "missing_1_over_n"
    if _close(factor, -1.0, 1e-12):
        return "flipped_sign"
    if _close(factor, 2.0, 1e-12) or _close(factor, 0.5, 1e-12):
        return "square_loss_half"
    return "scaled"


def explain_factor(c: float, ctx: Context, tol: float) -> tuple[str, str, float | None]:
    """(name, words, exact factor or None) for a constant c, the simplest story first.

    One named cause (a missing 1/N, the ½, a sign, Bessel's N/(N − 1)); then a 1/N with the wrong N
    among the layer's widths (the fan-in, the fan-out); then two named causes together; then 1/M for
    a batch of another size; else ``constant_factor``.
    """
    match = 1e-9 if tol < 1e-6 else tol
    levels: dict[int, list[tuple[float, str]]] = {1: [], 2: []}
    for factor, words in named_factors(ctx.n):
        if ctx.keep is not None and _close(factor, ctx.keep, 1e-9):
            continue  # a dropout layer's keep: the dropout entry names it
        if _close(c, factor, match):
            levels[2 if " and " in words else 1].append((factor, words))
    widths = wrong_n_words(c, ctx, max(tol, 1e-12), widths_only=True)
    batch = wrong_n_words(c, ctx, max(tol, 1e-12))
    for found in (levels[1], widths, levels[2], batch):
        if isinstance(found, str):
            return "one_over_wrong_n", found, None
        if found:
            factor = found[0][0]
            return _name_of(factor, ctx.n), " or ".join(w for _, w in found), factor
    return "constant_factor", "a constant factor", None


def factor_words(c: float, ctx: Context, tol: float) -> str:
    """``c`` put in words as the catalogue knows constants; a plain number when it is none of them."""
    name, words, _ = explain_factor(c, ctx, tol)
    return f"a constant factor {c:.6g}" if name == "constant_factor" else words


def with_factor(words: str, c: float, ctx: Context, tol: float, res: float) -> str:
    """A pattern's message: its words, then the factor (when it is not 1) and the residual."""
    if c == 1.0:
        return f"looks like {words} (to {res:.0e})"
    return f"looks like {words}, times {c:.6g}: {factor_words(c, ctx, tol)} (to {res:.0e})"


__all__ = [
    "Context",
    "Diagnosis",
    "DISTINCT_FACTOR",
    "SIGNATURE_REL_TOL",
    "SIGNATURE_REL_TOL_F32",
    "explain_factor",
    "factor_words",
    "fit",
    "named_factors",
    "rel",
    "signature_tol",
    "with_factor",
    "wrong_n_words",
]
