"""Every origin, not only the first: each quantity a file exposes, judged from the inputs it was computed from.

For each layer, top down, with ``u`` the upstream ∂L/∂y the layer received (JAX's when it was fed JAX's;
else the file's own ``residual_x`` of the layer above, or its ``residual_y``) and ``δ`` the file's own
``residual_z`` (or, when it exposes none, ``u ⊙ f'(z)``), correct code computes

    residual_z = u ⊙ f'(z)     grad_w = x·δᵀ     grad_b = Σ_columns δ     residual_x = w·δ

with x, z the forward's (the file's forward was checked to be the model's). A quantity that differs
from that is an **origin**: a mistake made there, named by the catalogue against that expectation, so
several independent mistakes are each found and named. A quantity that matches it but not JAX is
**inherited** from an origin above it. Where the file exposes no upstream (a step that returns only new
parameters), only the first wrong quantity in backward order can be called an origin; the ones after it
are not judged on their own. Rows compare every quantity with JAX, as the table shows.

Residuals per sample: code that leaves the 1/N out of every residual and puts it in the gradients (the
courses' ``dW = dZ·A_prevᵀ / m``) is correct; when the file's top residual is N × JAX's and its top
``grad_w`` is right, every residual of the file is read divided by N, and the report says so.
"""

from dataclasses import dataclass, field, fields, replace

import numpy as np

from fcgrad.audits.blog import backward_order
from fcgrad.audits.code.layout import Layout, kind_of
from fcgrad.audits.code.seen import FED_JAX, Seen
from fcgrad.diagnosis.catalogue import Context, Diagnosis, diagnose
from fcgrad.engine.compare import Row, errors, worst_index
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.network import forward
from fcgrad.testing import BACKWARD_REL_TOL

LOCAL = ("residual_z", "grad_w", "grad_b", "residual_x")
# Rows pass within the layer helper's BACKWARD_REL_TOL (1e-10): a user's formula may be written another way
# than the library's (from y rather than z), which costs digits: measured rel 4.4e-11 on residual_z of a
# correct tanh layer driven into saturation (|z| ≈ 30), where 1 − y² is a difference of nearly equal numbers.
# A gradient read back from an update, (w − (w − lr·g)) / lr, carries the rounding of w itself: up to
# about ε·max|w| / lr per entry. Measured on a correct class network in the blog's shape (examples/ with
# its mistakes fixed) and on the blog's code: max|Δ| ≤ 8.2e-16 with lr 0.1 and |w| ≤ 1.3, where
# ε·|w|/lr = 2.9e-15. 8× that bound covers the two roundings (the product and the difference) with room,
# and stays 1e8× below an O(1e-3) wrong gradient.
UPDATE_ROUNDING_FACTOR = 8.0
# A residual_z implied by residual_x = w·δ (least squares, w of full column rank) must reproduce the file's
# residual_x, grad_w and grad_b to this: the solve loses about cond(w)·ε; measured rel ≤ 1.0e-14 on the example
# network with σ' written as y, five seeds, cond(w) < 4. 1e-8 leaves room for cond(w) up to about 1e6 and stays
# 1e5× below a formula of another kind.
IMPLIED_REL_TOL = 1e-8
# How a quantity after an origin is judged when the file exposes no input of its own for it.
END_TO_END = "end to end: the file exposes no upstream"


@dataclass(frozen=True)
class CodeFinding:
    """A quantity where a mistake originates."""

    layer: int
    quantity: str
    max_abs_err: float  # against what correct inputs give (JAX's upstream, or the file's own)
    rel_err: float
    diagnoses: tuple[Diagnosis, ...]
    note: str = ""
    judged_from: str = ""  # the inputs it was judged from, in words
    index: tuple[int, ...] | None = None  # the largest difference, in the file's layout
    value: float | None = None  # the file's entry there
    expected: float | None = None  # what correct inputs give there
    file: str | None = None  # where the file computes it: the statement whose inputs are right and value is not
    line: int | None = None
    statement: str = ""  # the statement's source
    target: str = ""  # what it assigned there, in the file's own name (``delta``, ``self.dW``)


@dataclass
class Judged:
    rows: list[Row]
    findings: list[CodeFinding]
    unjudged: set = field(default_factory=set)  # (layer, quantity) after an origin, with no upstream of its own


def _floor(w, lr: float) -> float:
    return UPDATE_ROUNDING_FACTOR * float(np.finfo(np.float64).eps) * max(1.0, float(np.max(np.abs(w)))) / lr


def _residual_floor(upstream) -> float:
    """Rounding of an activation's derivative written from y (1 − y² loses digits where y saturates): ε per entry."""
    return UPDATE_ROUNDING_FACTOR * float(np.finfo(np.float64).eps) * float(np.max(np.abs(upstream), initial=0.0))


def row(layer: int, quantity: str, a, r, floor: float = 0.0) -> Row:
    if a is None or np.shape(a) != np.shape(r):
        return Row(layer, quantity, float("nan"), float("nan"), BACKWARD_REL_TOL, False)
    max_abs, rel = errors(a, r)
    return Row(layer, quantity, max_abs, rel, BACKWARD_REL_TOL, bool(rel <= BACKWARD_REL_TOL or max_abs <= floor))


def _close(a, r, floor: float = 0.0, tol: float = BACKWARD_REL_TOL) -> bool:
    if a is None or np.shape(a) != np.shape(r):
        return False
    max_abs, rel = errors(a, r)
    return bool(rel <= tol or max_abs <= floor)


def context(**given) -> Context:
    """A catalogue context with whatever of ``given`` the catalogue's Context knows."""
    known = {f.name for f in fields(Context)}
    return Context(**{k: v for k, v in given.items() if k in known})


_DATA = ("x", "z", "y", "upstream", "residual_z")


def name(value_user, expected_blog, ctx: dict, layout: Layout, quantity: str, scale: float) -> tuple[Diagnosis, ...]:
    """The catalogue's entries for a wrong quantity, in the user's layout and words.

    ``ctx``: the blog-layout context of the layer. A residual is named at the file's own scale (per sample
    when it writes them so): a wrong formula of the upstream (σ' of it) is only seen on the numbers it had.
    """
    s = scale if quantity.startswith("residual") else 1.0
    given = {k: v for k, v in ctx.items() if k not in (*_DATA, "w", "grad_w", "others")}
    for k in _DATA:
        if ctx.get(k) is not None:
            given[k] = layout.give("data", ctx[k] * (s if k in ("upstream", "residual_z") else 1.0))
    for k in ("w", "grad_w"):
        if ctx.get(k) is not None:
            given[k] = layout.give("weight", ctx[k])
    given["others"] = tuple((words, layout.give("data", a)) for words, a in ctx.get("others", ()))
    expected = layout.give(kind_of(quantity), expected_blog * s)
    found = diagnose(np.asarray(value_user) * s, expected, context(**given, quantity=quantity, layout=layout))
    return tuple(found)


def residual_scale(seen: Seen, ref: dict, layout: Layout, n: int) -> float:
    """N when the file's residuals are per sample (N × JAX's) and its gradients carry the 1/N; else 1."""
    top = len(seen.layers) - 1
    values = seen.layers[top].values
    candidates = [(seen.residual_y, ref["residual_y"])]
    candidates += [(values.get(q), ref["layers"][top][q]) for q in ("residual_z", "residual_x")]
    for value, truth in candidates:
        if value is None:
            continue
        mine = layout.read("data", value, truth.shape)
        if n > 1 and mine is not None and not _close(mine, truth) and _close(mine, n * truth):
            grad_w = layout.read("weight", values["grad_w"], ref["layers"][top]["grad_w"].shape)
            if _close(grad_w, ref["layers"][top]["grad_w"]):
                return float(n)
        return 1.0
    return 1.0


def _implied_residual_z(w, x, values: dict) -> tuple[np.ndarray | None, bool]:
    """(the one δ that the file's residual_x = w·δ, grad_w = x·δᵀ and grad_b = Σδ agree on, or None; whether
    that could be told: it needs residual_x and a w of full column rank, so that w·δ fixes δ)."""
    rx, gw, gb = values.get("residual_x"), values.get("grad_w"), values.get("grad_b")
    if rx is None or gw is None or gb is None or np.linalg.matrix_rank(w) < w.shape[1]:
        return None, False
    delta = np.linalg.lstsq(w, rx, rcond=None)[0]  # w (in, out)·δ (out, N) = residual_x (in, N), solved for δ
    agree = (
        _close(w @ delta, rx, tol=IMPLIED_REL_TOL)
        and _close(x @ delta.T, gw, tol=IMPLIED_REL_TOL)
        and _close(delta.sum(axis=1, keepdims=True), gb, tol=IMPLIED_REL_TOL)
    )
    return (delta if agree else None), True


@dataclass
class _Layer:
    """What one layer's judgement needs, in the blog's layout."""

    i: int
    x: np.ndarray
    z: np.ndarray
    y: np.ndarray
    w: np.ndarray
    upstream: np.ndarray
    known: bool  # the upstream is the one the layer really received (JAX's, or the file's own)
    user: dict  # the file's values as it gave them (residuals divided by the scale)
    blog: dict  # the same in the blog's layout (None where the shape fits no reading)
    others: tuple  # ((words, array), ...) the other arrays at hand in a backward, for a grad_w from the wrong one


class _Judge:
    def __init__(self, seen: Seen, p, ref: dict, layout: Layout, scale: float, never_applied: str | None):
        self.seen, self.p, self.ref, self.layout, self.scale = seen, p, ref, layout, scale
        self.never_applied = never_applied or "the step"
        self.from_update = never_applied is not None  # the gradients were read back from an update
        self.rows: list[Row] = []
        self.findings: list[CodeFinding] = []
        self.unjudged: set = set()
        self.origin_above: tuple[int, str] | None = None

    def _origin(self, i, q, user, expected, ctx: dict, how, note="") -> None:
        s = self.scale if q.startswith("residual") else 1.0  # shown at the file's own scale
        user, exp_user = np.asarray(user) * s, self.layout.give(kind_of(q), expected) * s
        index = value = exp = None
        max_abs = rel = float("nan")
        if np.shape(user) == np.shape(exp_user) and np.all(np.isfinite(user)):
            max_abs, rel = errors(user, exp_user)
            index = worst_index(user, exp_user)
            value, exp = float(np.asarray(user)[index]), float(exp_user[index])
        diagnoses = name(user / s, expected, ctx, self.layout, q, self.scale)
        self.findings.append(CodeFinding(i, q, max_abs, rel, diagnoses, note, how, index, value, exp))
        self.origin_above = (i, q)

    def residual_y(self) -> np.ndarray | None:
        value = self.seen.residual_y
        if value is None:
            return None
        truth, top = self.ref["residual_y"], len(self.p.params) - 1
        value = value / self.scale
        mine = self.layout.read("data", value, truth.shape)
        r = row(top, "residual_y", mine, truth)
        self.rows.append(r)
        if not r.ok:
            ctx = {"n": self.p.batch, "lr": self.p.lr, "read_from_update": self.from_update}
            self._origin(top, "residual_y", value, truth, ctx, "the problem's y and t")
        return mine

    def layer(self, L: _Layer) -> None:  # noqa: N803  (L: the layer, as in the formulas)
        p, i = self.p, L.i
        truth = self.ref["layers"][i]
        act = ACTIVATIONS[p.activations[i]]
        rz_exp = act.backward(L.upstream, L.z, L.y)  # (out, N)
        own_rz = L.blog.get("residual_z")
        delta = own_rz if own_rz is not None else rz_exp
        expected = {
            "residual_z": rz_exp,
            "grad_w": L.x @ delta.T,
            "grad_b": delta.sum(axis=1, keepdims=True),
            "residual_x": L.w @ delta,
        }
        floors = {
            "residual_z": _residual_floor(L.upstream),
            "grad_w": _floor(L.w, p.lr),
            "grad_b": _floor(p.params[i]["b"], p.lr),
            "residual_x": 0.0,
        }
        shown = [q for q in LOCAL if q in L.user and not (q == "residual_x" and i == 0)]
        how = self._how(True, L.known)
        grad_w = L.blog.get("grad_w")
        ctx = {
            "n": p.batch,
            "lr": p.lr,
            "x": L.x,
            "z": L.z,
            "y": L.y,
            "w": L.w,
            "upstream": L.upstream,
            "residual_z": delta,
            "grad_w": grad_w if grad_w is not None else expected["grad_w"],
            "activation": p.activations[i],
            "others": L.others,
            "read_from_update": self.from_update,
        }
        rows = {q: row(i, q, L.blog.get(q), truth[q], floors[q]) for q in shown}
        wrong_own = {q for q in shown if not rows[q].ok and not _close(L.blog.get(q), expected[q], floors[q])}
        implied, told = None, False
        if own_rz is None and L.known and len(wrong_own & {"grad_w", "grad_b", "residual_x"}) >= 2:
            implied, told = _implied_residual_z(L.w, L.x, L.blog)
        if implied is not None:
            self.rows.append(row(i, "residual_z", implied, truth["residual_z"], floors["residual_z"]))
            user = self.layout.give("data", implied)
            lay = self.layout
            note = (
                "implied: the backward names no residual_z, but its grad_w, grad_b and residual_x all follow from "
                f"this one δ ({lay.formula('grad_w', delta='δ')}, Σδ, {lay.formula('residual_x', delta='δ')})"
            )
            self._origin(i, "residual_z", user, rz_exp, ctx, how, note)
            wrong_own = set()
        never = self.seen.layers[i].unchanged and (np.any(truth["grad_w"]) or np.any(truth["grad_b"]))
        for q in shown:
            self.rows.append(rows[q])
            if rows[q].ok or (implied is not None and q != "residual_z"):
                continue
            if never and q in ("grad_w", "grad_b"):
                if q == "grad_w":  # one finding for the two: the update never happened
                    note = f"{self.never_applied}: grad_w and grad_b read back as exactly 0"
                    self._origin(i, q, L.user[q], truth[q], ctx, how, note)
                continue
            judged_alone = L.known or (q != "residual_z" and own_rz is not None)
            if (judged_alone and q in wrong_own) or (not judged_alone and self.origin_above is None):
                self._origin(i, q, L.user[q], expected[q], ctx, self._how(judged_alone, L.known))
            elif not judged_alone:
                self.unjudged.add((i, q))
        rest = wrong_own & {"grad_w", "grad_b", "residual_x"} & set(shown)
        if own_rz is None and not told and len(rest) >= 2 and rest == set(shown) - {"residual_z"}:
            self.findings[-1] = _with_note(
                self.findings[-1],
                f"{' and '.join(sorted(rest, key=LOCAL.index))} are each wrong from correct inputs: a mistake in "
                "each, or one in a residual_z the audit cannot see (name it residual_z in the backward and it is "
                "checked)",
            )

    def _how(self, judged_alone: bool, known: bool) -> str:
        if self.seen.fed == FED_JAX:
            return "fed JAX's upstream"
        if known:
            return "from the file's own upstream"
        return "from the file's own residual_z" if judged_alone else END_TO_END


def _with_note(f: CodeFinding, note: str) -> CodeFinding:
    if note in f.note:
        return f  # a hint once
    return replace(f, note=f"{f.note}; {note}" if f.note else note)


def judge(seen: Seen, p, ref: dict, layout: Layout, *, scale: float = 1.0, never_applied: str | None = None) -> Judged:
    """Rows against JAX and the origins of every difference, for what the file exposed at ``p.params``.

    ``never_applied``: what applies the update, in words, when the gradients were read back from one (None:
    the file returned them).
    """
    j = _Judge(seen, p, ref, layout, scale, never_applied)
    _, caches = forward(p.params, p.x, p.activations)
    top = len(p.params) - 1
    own_up = j.residual_y()
    for i in range(top, -1, -1):
        truth_up = ref["residual_y"] if i == top else ref["layers"][i + 1]["residual_x"]  # (out, N)
        if seen.fed == FED_JAX:
            upstream, known = truth_up, True
        else:
            upstream, known = (own_up, True) if own_up is not None else (truth_up, False)
        values = seen.layers[i].values
        user, blog = {}, {}
        for q, v in values.items():
            v = v / scale if q.startswith("residual") else v
            user[q] = v
            shape = (
                p.params[i][q[-1]].shape
                if q.startswith("grad")
                else (caches[i].x.shape if q == "residual_x" else caches[i].z.shape)
            )
            blog[q] = layout.read(kind_of(q), v, shape)
        c = caches[i]
        others = [("the network's input X", p.x)] if i > 0 else []
        others += [(f"layer {k}'s output", caches[k].y) for k in range(top + 1) if k not in (i, i - 1)]
        j.layer(_Layer(i, c.x, c.z, c.y, p.params[i]["w"], upstream, known, user, blog, tuple(others)))
        own_up = blog.get("residual_x")
    j.findings.sort(key=lambda f: backward_order((f.layer, f.quantity)))
    return Judged(j.rows, j.findings, j.unjudged)
