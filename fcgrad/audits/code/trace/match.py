"""Every array the file's step assigned, matched by value to what it should be; each mistake's first line.

Each record (``fcgrad.testing.record``) is held against the quantities of step 0
(``fcgrad.audits.code.trace.quantities``), for the whole batch or for the sample its call worked on, in any
orientation (transposed, keepdims or not) and up to a constant factor k:

- **ok**: it is a quantity, with k = 1, or N where a sum over the samples (or one sample's gradient)
  belongs, or the factor of the file's own loss (no ½, a mean over the outputs);
- **origin**: its inputs are right and its value is not: it is a backward quantity times another k (named
  by the catalogue's factors), or none at all and the catalogue names what it is (σ' of the upstream, w for
  wᵀ, grad_w from the output, ...) against the quantity it should have been;
- **inherited**: it read a value that is an origin's, or inherited itself;
- otherwise a value of the file's own that is neither (a running sum, a temporary).

Values are followed by identity: a statement's inputs are the arrays it read, and the record that
produced an array is the latest one with exactly that value.
"""

import ast
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fcgrad.audits.code.judge import name
from fcgrad.audits.code.layout import Layout
from fcgrad.audits.code.trace.quantities import Quantity, one_sample
from fcgrad.diagnosis.catalogue import Diagnosis
from fcgrad.diagnosis.signature import Context, explain_factor, named_factors, wrong_n_words
from fcgrad.testing.record import SMALLEST_KEPT, Record

# A recorded array is the quantity when it equals it to this, relative to the quantity's largest entry. The
# file computes in float64 NumPy in its own order of operations, JAX in another: they agree to a few ulps
# (measured rel ≤ 3e-15 on the published-shape fixtures); a tanh layer driven into saturation written from y
# (1 − y²) loses more (rel 4.4e-11 measured by the layer helper). 1e-8 covers both, and every mistake of the
# catalogue misses by rel ≥ 1e-3 on random inputs.
MATCH_REL_TOL = 1e-8

OK, ORIGIN, INHERITED, OWN = "ok", "origin", "inherited", "own"
UPDATE_WORDS = "the update applies"  # an update statement judged against the gradient it read

WORDS = {
    "residual_y": "∂L/∂y, the loss's residual",
    "residual_z": "∂L/∂z",
    "grad_w": "∂L/∂w",
    "grad_b": "∂L/∂b",
    "residual_x": "∂L/∂x",
    "w": "w",
    "b": "b",
    "t": "the targets",
    "x": "the input",
    "z": "z",
    "y": "the output",
    "f'(z)": "f'(z)",
    "softmax(y)": "softmax of the output",
    "sigmoid(y)": "sigmoid of the output",
}


@dataclass
class Line:
    """One recorded assignment and what it is."""

    record: Record
    status: str  # OK, ORIGIN, INHERITED or OWN
    quantity: Quantity | None = None  # what it is (ok) or should have been (origin)
    factor: float = 1.0  # value = factor × quantity (ok, or a wrong factor)
    diagnoses: tuple[Diagnosis, ...] = ()
    origin: "Line | None" = None  # for an inherited value: the origin it carries
    expected: np.ndarray | None = None  # the file's layout: what correct inputs give
    handed_on: Quantity | None = None  # the right quantity an origin computed where another belonged
    shown: np.ndarray | None = None  # what to compare with ``expected`` when it is not the value assigned
    moved_from: tuple[str, int] | None = None  # (file, line) of the statement it was found at, before it was placed


@dataclass
class Trace:
    lines: list[Line]
    samples: dict[int, int] = field(default_factory=dict)  # frame -> the sample it worked on

    @property
    def origins(self) -> list[Line]:
        seen, out = set(), []
        for line in self.lines:
            key = (line.record.file, line.record.line, line.record.target)
            if line.status == ORIGIN and key not in seen:
                seen.add(key)
                out.append(line)
        return out


def _key(a: np.ndarray) -> tuple:
    return a.shape, a.tobytes()


def orientations(v: np.ndarray, shape: tuple) -> list[np.ndarray]:
    """``v`` read as an array of ``shape``: as it is, without or with keepdims, or transposed."""
    out = []
    if v.size != int(np.prod(shape)):
        return out
    squeezed = tuple(d for d in v.shape if d != 1)
    if v.shape == shape or squeezed == tuple(d for d in shape if d != 1):
        out.append(v.reshape(shape))
    if len(shape) == 2 and (v.shape == shape[::-1] or (v.ndim == 2 and v.T.shape == shape)):
        out.append(v.T.reshape(shape))
    return out


def factor_of(v: np.ndarray, q: np.ndarray) -> tuple[float, np.ndarray] | None:
    """(k, v read as q) with v = k·q to ``MATCH_REL_TOL``; None when no orientation and no k fits."""
    qq = float(np.vdot(q, q))
    if not np.all(np.isfinite(v)):
        return None
    scale = max(float(np.max(np.abs(q), initial=0.0)), np.finfo(np.float64).tiny)
    for a in orientations(v, q.shape):
        if qq == 0.0:
            if float(np.max(np.abs(a), initial=0.0)) == 0.0:
                return 1.0, a
            continue
        k = float(np.vdot(a, q)) / qq
        if np.max(np.abs(a - k * q)) <= MATCH_REL_TOL * max(scale, scale * abs(k)) and k != 0.0:
            return k, a
    return None


def _close(k: float, target: float) -> bool:
    return abs(k - target) <= MATCH_REL_TOL * max(1.0, abs(target))


class Matcher:
    def __init__(self, quantities: list[Quantity], p, layout: Layout, loss_scale: float, contexts):
        self.quantities, self.p, self.layout, self.c = quantities, p, layout, loss_scale
        self.contexts = contexts  # (layer, sample or None) -> the catalogue's context of that layer, blog layout
        self._per_sample: dict[int, list[Quantity]] = {}
        self._by_size: dict[object, dict[int, list[Quantity]]] = {}
        self._stacked: dict[tuple, list] = {}  # (sample, size) -> the candidates stacked by shape
        self._prefix: dict[tuple, np.ndarray] | None = None  # shape -> every running sum over the samples, flattened

    def sample_quantities(self, n: int) -> list[Quantity]:
        if n not in self._per_sample:
            self._per_sample[n] = one_sample(self.quantities, n, self.p.batch)
        return self._per_sample[n]

    def _sized(self, key, quantities: list[Quantity], size: int) -> list[Quantity]:
        """The quantities of ``quantities`` with ``size`` entries (no other can be a value of that size)."""
        if key not in self._by_size:
            table: dict[int, list[Quantity]] = {}
            for q in quantities:
                table.setdefault(q.value.size, []).append(q)
            self._by_size[key] = table
        return self._by_size[key].get(size, [])

    def candidates(self, v: np.ndarray, sample: int | None) -> list[Quantity]:
        """The quantities ``v`` may be a value of: the batch's, and one sample's where the frame works on one."""
        mine = self._sized("batch", self.quantities, v.size)
        if sample is not None:
            return self._sized(sample, self.sample_quantities(sample), v.size) + mine
        out = list(mine)
        columns = {q.value.shape[0] for q in self.quantities if q.name not in ("grad_w", "grad_b")}
        if self.p.batch > 1 and v.size in columns:  # one sample's column, in a call not told which
            for n in range(self.p.batch):
                mine = self._sized(n, self.sample_quantities(n), v.size)
                out += [q for q in mine if q.name not in ("grad_w", "grad_b")]
        return out

    def fitting(self, v: np.ndarray, sample: int | None) -> list[Quantity]:
        """The candidates ``v`` is a multiple of, all tested at once: what ``factor_of`` would accept, and a few
        more at the tolerance's edge (``factor_of`` decides those)."""
        if not np.all(np.isfinite(v)):
            return []
        key = (sample, v.size)
        if key not in self._stacked:
            groups: dict[tuple, list[Quantity]] = {}
            for q in self.candidates(v, sample):
                groups.setdefault(q.value.shape, []).append(q)
            stacked = []
            for shape, qs in groups.items():
                values = np.stack([q.value.reshape(-1) for q in qs])  # (m, size)
                scale = np.maximum(np.max(np.abs(values), axis=1), np.finfo(np.float64).tiny)
                stacked.append((shape, qs, values, np.einsum("ij,ij->i", values, values), scale))
            self._stacked[key] = stacked
        out = []
        for shape, qs, values, qq, scale in self._stacked[key]:
            keep = np.zeros(len(qs), dtype=bool)
            for a in orientations(v, shape):
                flat = a.reshape(-1)
                k = (values @ flat) / np.where(qq > 0, qq, 1.0)
                miss = np.max(np.abs(flat[None, :] - k[:, None] * values), axis=1)
                edge = 2 * MATCH_REL_TOL * np.maximum(scale, scale * np.abs(k))  # 2×: rounding of the stacked sums
                keep |= (qq > 0) & (miss <= edge) | (qq == 0) & (np.max(np.abs(flat), initial=0.0) == 0.0)
            out += [q for q, kept in zip(qs, keep) if kept]
        return out

    def running_sum(self, v: np.ndarray) -> bool:
        """Whether ``v`` is Σ over samples 0..k of one sample's backward quantity (1 ≤ k < N − 1), times 1 or the
        file's loss factor: the running sum a loop over the samples keeps, right as far as it has gone. (With one
        output and a piecewise-linear layer, two samples' ∂L/∂z can be parallel, and such a sum a multiple of one
        sample's: a constant factor no mistake made.)"""
        if self.p.batch < 3 or not np.all(np.isfinite(v)):
            return False
        if self._prefix is None:
            table: dict[tuple, list[np.ndarray]] = {}
            per = [[q for q in self.sample_quantities(n) if q.backward] for n in range(self.p.batch)]
            for column in zip(*per):  # one (layer, name) across the samples
                sums = np.cumsum(np.stack([q.value for q in column]), axis=0)[1:-1]  # (N − 2, *shape)
                table.setdefault(column[0].value.shape, []).append(sums.reshape(len(sums), -1))
            self._prefix = {shape: np.concatenate(v) for shape, v in table.items()}
        for shape, sums in self._prefix.items():
            for a in orientations(v, shape):
                flat = a.reshape(-1)
                scale = np.maximum(np.max(np.abs(sums), axis=1), np.finfo(np.float64).tiny)
                for c in {1.0, self.c}:
                    if np.any(np.max(np.abs(flat[None, :] - c * sums), axis=1) <= MATCH_REL_TOL * scale * abs(c)):
                        return True
        return False

    def slope_read(self, r: Record, sample: int | None, recent: list[np.ndarray] = ()) -> tuple | None:
        """(∂L/∂z it should be, the slope it read, f'(z), the array read) where ``r`` is ∂L/∂y ⊙ s, ∂L/∂y right
        and ``s`` an array the statement read that is not f'(z): the layer's derivative written wrong (by the
        file's own helper, say), though the argument it was given is right. ``recent``: arrays the file computed
        just before, for a slope a callee computed inside the expression (``f_prime(self.input) * error``)."""
        return self._on_any_sample(self._slope_read, r, sample, recent)

    def _slope_read(self, r: Record, sample: int | None, recent) -> tuple | None:
        by = {(q.layer, q.name): q.value for q in self.candidates(r.value, sample) if q.sample == sample}
        top = len(self.p.params) - 1
        for (layer, what), want in by.items():
            if what != "residual_z" or (layer, "f'(z)") not in by:
                continue
            up = by.get((layer, "residual_y") if layer == top else (layer + 1, "residual_x"))
            slope = by[(layer, "f'(z)")]
            if up is None or not np.any(up):
                continue
            scale = max(float(np.max(np.abs(want))), np.finfo(np.float64).tiny)
            for a in orientations(r.value, want.shape):
                if np.max(np.abs(a - want)) <= MATCH_REL_TOL * scale:
                    return None  # it is ∂L/∂z
                for v in [v for _, v in r.reads] + list(recent):
                    for s in orientations(np.asarray(v, np.float64), want.shape):
                        on = np.max(np.abs(a - up * s)) <= MATCH_REL_TOL * max(scale, float(np.max(np.abs(up * s))))
                        off = np.max(np.abs(s - slope)) > MATCH_REL_TOL * max(1.0, float(np.max(np.abs(slope))))
                        if on and off:
                            return Quantity(layer, what, want, sample), s, slope, v
        return None

    def upstream_read(self, r: Record, sample: int | None, recent: list[np.ndarray] = ()) -> tuple | None:
        """(∂L/∂y it should be, the ∂L/∂y read, the right one, the array read) where ``r`` is the top layer's
        u ⊙ f'(z) with f'(z) right and ``u``, an array the statement read (or the file computed just before), not
        the loss's ∂L/∂y: the loss's derivative written wrong."""
        return self._on_any_sample(self._upstream_read, r, sample, recent)

    def _on_any_sample(self, read, r: Record, sample: int | None, recent) -> tuple | None:
        """``read(r, n, recent)`` for the first sample ``n`` the value may be one of that gives an answer."""
        return next((found for n in self._samples_of(r.value, sample) if (found := read(r, n, recent))), None)

    def _samples_of(self, v: np.ndarray, sample: int | None) -> list[int | None]:
        """The samples a value may be one of: its frame's, or any where the frame says none and it is one column."""
        if sample is not None or self.p.batch == 1:
            return [sample]
        columns = {q.value.shape[0] for q in self.quantities if q.name not in ("grad_w", "grad_b")}
        return [None, *range(self.p.batch)] if v.size in columns else [None]

    def _upstream_read(self, r: Record, sample: int | None, recent) -> tuple | None:
        top = len(self.p.params) - 1
        by = {(q.layer, q.name): q.value for q in self.candidates(r.value, sample) if q.sample == sample}
        want, slope, up = by.get((top, "residual_z")), by.get((top, "f'(z)")), by.get((top, "residual_y"))
        if want is None or slope is None or up is None:
            return None
        scale = max(float(np.max(np.abs(want))), np.finfo(np.float64).tiny)
        up_scale = max(float(np.max(np.abs(up))), np.finfo(np.float64).tiny)
        for a in orientations(r.value, want.shape):
            if np.max(np.abs(a - want)) <= MATCH_REL_TOL * scale:
                return None
            for v in [v for _, v in r.reads] + list(recent):
                for u in orientations(np.asarray(v, np.float64), want.shape):
                    made_of = np.max(np.abs(a - u * slope)) <= MATCH_REL_TOL * max(scale, float(np.max(np.abs(a))))
                    if made_of and np.max(np.abs(u - up)) > MATCH_REL_TOL * up_scale and factor_of(u, up) is None:
                        return Quantity(top, "residual_y", up, sample), u, up, v
        return None

    def allowed(self, q: Quantity, k: float) -> bool:
        """Whether k is a factor correct code may carry on ``q``."""
        if not q.backward:
            return _close(k, 1.0)
        ends = (1.0, self.c) if q.sample is not None else (1.0, self.c, float(self.p.batch), self.c * self.p.batch)
        return any(_close(k, e) for e in ends)

    def named_factor(self, q: Quantity, k: float) -> bool:
        """Whether k is a constant a hand-written backward gets wrong: 1/N, ½, a sign, Bessel's, the fan-in or out."""
        n = 1 if q.sample is not None else self.p.batch
        fan_in, fan_out = self.p.params[q.layer]["w"].shape
        told = [f for f, _ in named_factors(n)] + [
            s * f for s in (1, -1) for m in (fan_in, fan_out) for f in (1 / m, n / m)
        ]
        if q.name == "residual_y":  # a loss averaged over its outputs whose derivative left that mean out
            told += [s * fan_out for s in (1, -1)]
        return any(_close(k / self.c, f) for f in told)

    def label(self, v: np.ndarray, sample: int | None) -> tuple[Quantity, float, bool] | None:
        """(quantity, k, allowed) of the best fit: an allowed k first, a backward quantity first.

        A backward quantity times a constant the catalogue cannot name is no fit: with one output unit,
        one sample's ∂L/∂x is a multiple of w, and that says nothing.
        """
        best = None
        for q in self.fitting(v, sample):
            hit = factor_of(v, q.value)
            if hit is None:
                continue
            k = hit[0]
            if not self.allowed(q, k) and (not q.backward or not self.named_factor(q, k)):
                continue
            rank = (not self.allowed(q, k), not q.backward, q.sample is None)
            if best is None or rank < best[0]:
                best = (rank, q, k)
        if best is None:
            return None
        return best[1], best[2], not best[0][0]

    def peeled(self, v: np.ndarray, sample: int | None) -> tuple[Quantity, tuple, np.ndarray] | None:
        """A residual_z = u' ⊙ f'(z) whose u' is a wrong ∂L/∂x of the layer above (w where wᵀ belongs), named so."""
        for q in self.candidates(v, sample):
            if q.name != "residual_z" or q.layer == len(self.p.params) - 1 or q.sample != sample:
                continue
            at = (q.layer, "f'(z)", q.sample)
            slope = next(c.value for c in self.candidates(v, sample) if (c.layer, c.name, c.sample) == at)
            if not np.all(slope):
                continue
            for a in orientations(v, q.value.shape):
                hit = self.name(self.layout.give("data", a / slope), sample, (q.layer + 1, "residual_x"))
                if hit is not None:
                    return q, hit[1], self.layout.give("data", q.value)
        return None

    def name(self, v: np.ndarray, sample: int | None, wanted=None) -> tuple[Quantity, tuple, np.ndarray] | None:
        """The backward quantity the catalogue says ``v`` was meant to be, with its diagnoses; None if none."""
        best = None
        for q in self.candidates(v, sample):
            if not q.backward or (wanted is not None and (q.layer, q.name) != wanted):
                continue
            fitting = orientations(v, q.value.shape)
            for a in fitting or ([v] if v.ndim == 2 else []):
                user = self.layout.give(q.kind, a) if a.shape == q.value.shape else a
                ctx = self.contexts(q.layer, q.sample)
                found = name(user, q.value, ctx, self.layout, q.name, 1.0)
                rank = (not fitting, found[0].residual) if found else None  # a quantity of v's own shape first
                if found and (best is None or rank < best[0]):
                    best = (rank, (q, found, self.layout.give(q.kind, q.value)))
        return None if best is None else best[1]


def _updates_a_parameter(r: Record, made: dict, params: set | None = None) -> bool:
    """``self.w -= lr * g`` and its kin: the target read as a parameter (w or b) by the statement that rebinds it
    (``params``: the keys of the parameters as the file holds them, for one too small to be matched by value)."""
    for text, v in r.reads:
        if text != r.target:
            continue
        src = made.get(_key(v))
        if src is not None and src.quantity is not None and src.quantity.name in ("w", "b"):
            return True
        if params and _key(np.asarray(v, dtype=np.float64)) in params:
            return True
    return False


UNNAMED = ("constant_factor", "scaled")  # the catalogue's words for a factor it cannot tell the cause of


def _mean_over_outputs(q: Quantity, k: float, matcher: "Matcher") -> tuple[Diagnosis, ...]:
    """∂L/∂y of a loss averaged over its M outputs, M times too large: the mean's 1/M left out of its derivative."""
    outputs = matcher.p.params[-1]["w"].shape[1]
    if q.name != "residual_y" or outputs < 2 or not _close(k / matcher.c, float(outputs)):
        return ()
    words = f"the 1/{outputs} of the loss's mean over its {outputs} outputs left out: ∂L/∂y is {outputs} × JAX's"
    return (Diagnosis("missing_1_over_n", f"looks like {words}", 0.0),)


def _same_factor(lines: list[Line], k: float) -> Line | None:
    """An earlier origin whose wrong factor is ``k`` (not 1): a value that carries it is inherited from there, though
    what made it was not recorded (``dinputs[inputs <= 0] = 0`` changes it in place)."""
    for line in lines:
        if line.status == ORIGIN and not _close(k, 1.0) and _close(line.factor, k):
            return line.origin or line
    return None


def _sent_back(earlier: Line, made: dict) -> bool:
    """A function's return left unjudged (a helper's, quiet) that it made from a backward quantity it read: a layer's
    backward returning the residual for the layer below. Judged where the caller binds it, placed at the return."""
    r = earlier.record
    if not (r.inner and r.target.startswith("return") and earlier.status == OWN and earlier.quantity is None):
        return False
    read = [made.get(_key(v)) for _, v in r.reads]
    return any(s is not None and s.status == OK and s.quantity is not None and s.quantity.backward for s in read)


def sample_keys(x_user: np.ndarray, rows: bool) -> dict[bytes, int]:
    """Each sample's input, flattened, -> its index (the first, where two samples are equal)."""
    keys = {}
    for n in range(x_user.shape[0 if rows else 1]):
        keys.setdefault((x_user[n] if rows else x_user[:, n]).tobytes(), n)
    return keys


def analyse(records: list[Record], matcher: Matcher, x_user: np.ndarray) -> Trace:
    keys, width = sample_keys(x_user, matcher.layout.rows), x_user.shape[1 if matcher.layout.rows else 0]
    current: dict[int, int] = {}  # frame -> the sample it is working on now (one handed to it, or looped over)
    made: dict[tuple, Line] = {}  # an array's value -> the latest line that made it
    lines = []
    lay = matcher.layout
    parameter_keys = {  # each parameter at step 0 as the file holds it, a bias in each shape the layout reads
        _key(np.asarray(v, dtype=np.float64).reshape(shape))
        for layer in matcher.p.params
        for q, v in (("weight", lay.give("weight", layer["w"])), ("bias", lay.give("bias", layer["b"])))
        for shape in (lay.accepts(q, layer["w" if q == "weight" else "b"].shape) if q == "bias" else [v.shape])
    }
    for r in records:
        if r.value.size == width and (n := keys.get(r.value.reshape(-1).tobytes())) is not None:
            current[r.frame] = n
        sample = current.get(r.frame)
        earlier = made.get(_key(r.value))
        returned = earlier is not None and _sent_back(earlier, made)
        if (earlier is not None and not returned) or not np.any(r.value):  # a value passed on, or zeros to fill
            status = OWN if earlier is None else (OK if earlier.status == OK else earlier.status)
            origin = None if earlier is None or status in (OK, OWN) else (earlier.origin or earlier)
            status = INHERITED if origin is not None else status
            line = Line(r, status, earlier.quantity if earlier else None, earlier.factor if earlier else 1.0)
            line.origin = origin
            lines.append(line)
            if earlier is None or earlier.record.target.startswith("return"):
                made[_key(r.value)] = line  # a function's value bound to a name: made, for the file, at that line
            continue
        if r.value.size < SMALLEST_KEPT:  # a scalar tells nothing by value; it carries what it was made from
            bad = [made[_key(v)] for _, v in r.reads if _key(v) in made and made[_key(v)].status in (ORIGIN, INHERITED)]
            lines.append(Line(r, INHERITED if bad else OWN, origin=(bad[0].origin or bad[0]) if bad else None))
            made[_key(r.value)] = lines[-1]
            continue
        if _updates_a_parameter(r, made, parameter_keys):
            lines.append(Line(r, OWN))  # w or b after the file's update: judged by judge_updates
            made[_key(r.value)] = lines[-1]
            continue
        wrong_in = [made[_key(v)] for _, v in r.reads if _key(v) in made and made[_key(v)].status != OK]
        wrong_in = [w for w in wrong_in if w.status in (ORIGIN, INHERITED)]
        hit = matcher.label(r.value, sample)
        if hit is not None and hit[2]:
            line = Line(r, OK, hit[0], hit[1])
        elif not wrong_in and matcher.running_sum(r.value):
            line = Line(r, OWN)  # a running sum over the samples, right so far
        elif wrong_in:
            src = wrong_in[0]
            line = Line(r, INHERITED, hit[0] if hit else None, hit[1] if hit else 1.0, origin=src.origin or src)
        elif hit is not None and hit[0].backward and (carried := _same_factor(lines, hit[1])) is not None:
            line = Line(r, INHERITED, hit[0], hit[1], origin=carried)  # made where nothing recorded it (in place)
        elif hit is not None and hit[0].backward:
            q, k = hit[0], hit[1]
            named = matcher.name(r.value, q.sample, (q.layer, q.name))
            diagnoses = named[1] if named else ()
            if not diagnoses or diagnoses[0].name in UNNAMED:  # a factor the catalogue has no story for
                diagnoses = _mean_over_outputs(q, k, matcher) or diagnoses
            line = Line(r, ORIGIN, q, k, diagnoses, expected=matcher.layout.give(q.kind, q.value))
        else:
            quiet = hit is not None or r.function == "<module>" or r.inner  # a helper's value: named where it is used
            named = None if quiet else matcher.name(r.value, sample)
            if named is None and not quiet:
                named = matcher.peeled(r.value, sample)
            recent = [m.record.value for m in lines[-RECENT:] if m.record.value.size == r.value.size]
            # a helper's return too: what it multiplied is told by value, not by the catalogue's reading of it
            reads = named is None and hit is None and r.function != "<module>"
            if reads and quiet:  # a helper's value the catalogue names is named where its caller binds it
                told = matcher.name(r.value, sample)
                reads = told is None or not told[1] or told[1][0].name in UNNAMED
            slope = matcher.slope_read(r, sample, recent) if reads else None
            at = None if slope is None else _slope_origin(slope, lines, made, matcher)
            if at is None and reads:
                slope = matcher.upstream_read(r, sample, recent)
                at = None if slope is None else _residual_origin(slope, lines, made, matcher)
            if at is not None:
                line = Line(r, INHERITED, slope[0], origin=at)
                lines.append(line)
                made[_key(r.value)] = line
                continue
            if named is not None:
                line = Line(r, ORIGIN, named[0], 1.0, named[1], expected=named[2])
            else:
                line = Line(r, OWN, hit[0] if hit else None, hit[1] if hit else 1.0)
        if line.status == ORIGIN:
            line = _where_the_alias_was_made(line, lines)
            line = _where_the_derivative_belonged(line, r, made, matcher, lines)
            line = _where_the_factor_was_made(line, made, matcher, _called(lines, r))
            at_return = returned and line.record is r  # made by the function that returned it: placed at its return,
            if at_return and line.diagnoses and line.diagnoses[0].name in WRONG_ARGUMENT:  # unless that function
                at_return = not _of_its_arguments(earlier, lines)  # only evaluated f' at what its caller handed it
            if at_return:
                line = Line(earlier.record, ORIGIN, line.quantity, line.factor, line.diagnoses, expected=line.expected)
            line = _where_the_divisor_was_made(line)
        lines.append(line)
        made[_key(r.value)] = line
    _with_its_divisor(lines, matcher)
    return Trace(lines, dict(current))


# A product ``a ⊙ b`` whose ``a`` is right and whose ``b`` is the file's own (not a quantity, made from right
# inputs) is wrong because ``b`` is: ``delta = upstream * sp`` with ``sp = sigmoid_prime(activation)``. The
# mistake is made where ``b`` was computed. A product of two values agrees with its recomputation to a few ulps.
PRODUCT_REL_TOL = 1e-12


# A helper that computes the right derivative of the wrong array (f'(y) or f'(∂L/∂y) where f'(z) belongs) is right in
# itself: the mistake is the argument its caller chose, so the origin stays at the caller's statement.
WRONG_ARGUMENT = ("derivative_at_y", "sigma_prime_of_upstream")


def _of_its_arguments(returned: Line, lines: list[Line]) -> bool:
    """Whether a function's return reads nothing but the arguments it was called with (``tanh_prime(z)``)."""
    r = returned.record
    given = [m.record.value for m in lines if m.record.frame == r.frame and _is_argument(m.record)]
    return bool(r.reads) and all(any(v.shape == a.shape and np.array_equal(v, a) for a in given) for _, v in r.reads)


def _called(lines: list[Line], r: Record) -> list[Line]:
    """What the functions that ``r``'s statement called returned to it (``f'(z)`` of ``upstream * f'(z)``)."""
    out = []
    for earlier in reversed(lines):
        if earlier.record.frame == r.frame:
            break
        if earlier.record.inner and earlier.record.target.startswith("return"):
            out.append(earlier)
    return out


def _where_the_factor_was_made(line: Line, made: dict, matcher: "Matcher", called: list[Line] = ()) -> Line:
    """An origin ``residual_z = upstream ⊙ b`` moved to the statement that made ``b``, when the upstream is right:
    ``b`` read by the statement, or returned to it by a helper it called (unless the helper's argument was the
    mistake)."""
    q = line.quantity
    if q is None or q.name != "residual_z":
        return line
    up = matcher.layout.give("data", matcher.contexts(q.layer, q.sample)["upstream"])
    v = line.record.value
    factors = [(made.get(_key(b)), b) for _, b in line.record.reads]
    if not line.diagnoses or line.diagnoses[0].name not in WRONG_ARGUMENT:
        factors += [(c, c.record.value) for c in called]
    for src, b in factors:
        if src is None or src.status != OWN or b.size != v.size:
            continue
        for u in orientations(up, v.shape):
            prod = u * b.reshape(v.shape)
            if np.max(np.abs(prod - v), initial=0.0) <= PRODUCT_REL_TOL * max(1.0, float(np.max(np.abs(v)))):
                moved = Line(src.record, ORIGIN, q, line.factor, line.diagnoses, expected=line.expected)
                moved.shown = v  # the residual_z it made wrong, against the right one
                return moved
    return line


def _divisor_assignment(file: str, line: int, name: str) -> tuple[int, str] | None:
    """(line, source) of the last ``name = <expr>`` (one target alone) before ``line`` in the function around it."""
    try:
        tree = ast.parse(Path(file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    around = [n for n in functions if n.lineno <= line <= n.end_lineno]
    if not around:
        return None
    best = None
    for n in ast.walk(around[-1]):
        one = isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
        if one and n.targets[0].id == name and n.lineno < line and (best is None or n.lineno > best.lineno):
            best = n
    if best is None:
        return None
    return best.lineno, " ".join(ast.get_source_segment(Path(file).read_text(encoding="utf-8"), best).split())


def _where_the_divisor_was_made(line: Line) -> Line:
    """A wrong N (1/M where 1/N belongs) divided by a plain number the function computed on a line of its own
    (``m = A_prev.shape[0]``) was made there: a Python number is not recorded, so that line is read from the file."""
    if not line.diagnoses or line.diagnoses[0].name != "one_over_wrong_n":
        return line
    r = line.record
    arrays = {text for text, _ in r.reads}
    try:
        rhs = ast.parse(r.statement.split("#")[0].strip()).body[0]
    except (SyntaxError, IndexError):
        return line
    value = rhs.value if isinstance(rhs, (ast.Assign, ast.AugAssign)) else None
    divisors = [
        n.right.id
        for n in ast.walk(rhs)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and isinstance(n.right, ast.Name)
    ]
    if isinstance(rhs, ast.AugAssign) and isinstance(rhs.op, ast.Div) and isinstance(value, ast.Name):
        divisors.append(value.id)
    for name_ in (d for d in divisors if d not in arrays):
        found = _divisor_assignment(r.file, r.line, name_)
        if found is not None:
            moved = Line(replace(r, line=found[0], statement=found[1], target=name_), ORIGIN, line.quantity,
                         line.factor, line.diagnoses, expected=line.expected)  # fmt: skip
            moved.shown = r.value if line.shown is None else line.shown
            moved.moved_from = (r.file, r.line)
            return moved
    return line


def _with_its_divisor(lines: list[Line], matcher: "Matcher") -> None:
    """The other origins of a statement whose wrong N was placed where that N was computed (the same statement run
    for another layer, where N/M happens to be a named constant such as 2) placed there too, as a wrong N."""
    placed = {ln.moved_from: ln for ln in lines if ln.moved_from is not None}
    for i, ln in enumerate(lines):
        key, q = (ln.record.file, ln.record.line), ln.quantity
        if ln.status != ORIGIN or ln.moved_from is not None or key not in placed or q is None or not q.backward:
            continue
        there = placed[key]
        p = matcher.p
        ctx = Context(quantity=q.name, n=1 if q.sample is not None else p.batch, w=p.params[q.layer]["w"])
        words = wrong_n_words(ln.factor / matcher.c, ctx, MATCH_REL_TOL, widths_only=True)
        diagnoses = there.diagnoses
        if words is not None:
            diagnoses = (Diagnosis("one_over_wrong_n", f"looks like {words}: {ln.factor:.6g} × JAX's", 0.0),)
        moved = Line(there.record, ORIGIN, q, ln.factor, diagnoses, expected=ln.expected)
        moved.shown, moved.moved_from = (ln.record.value if ln.shown is None else ln.shown), key
        lines[i] = moved


def _where_the_alias_was_made(line: Line, lines: list[Line]) -> Line:
    """A residual reused instead of sent through w (``hidden_error = output_delta``): placed at that alias."""
    if not line.diagnoses or line.diagnoses[0].name != "hidden_residual_not_through_w":
        return line
    r = line.record
    for text, v in r.reads:
        for earlier in reversed(lines):
            e = earlier.record
            if e.frame == r.frame and e.target == text:
                rhs = e.statement.split("=", 1)[-1].split("#")[0].strip()
                if np.array_equal(e.value, v) and rhs.isidentifier():
                    return Line(e, ORIGIN, line.quantity, line.factor, line.diagnoses, expected=line.expected)
                break
    return line


# A mistake that leaves the activation's derivative out is made where the derivative belonged: the statement
# that should have computed ∂L/∂z and handed on ∂L/∂y instead, a value right in itself but the wrong one.
DERIVATIVE_LEFT_OUT = ("activation_derivative_missing", "activation_derivative_dropped")


RECENT = 12  # the statements before one whose recorded arrays may be the slope it multiplied by (a callee's return)


def _first_making(lines: list[Line], value: np.ndarray) -> Line | None:
    """The first statement that computed ``value`` (in any orientation) and is no origin or inherited value."""
    for line in lines:
        v = line.record.value
        if line.status not in (ORIGIN, INHERITED) and v.size == value.size:
            if any(np.array_equal(a, value) for a in orientations(np.asarray(v, np.float64), value.shape)):
                return line
    return None


def _entries_off(wrong: np.ndarray, right: np.ndarray) -> str:
    off = np.abs(wrong - right) > MATCH_REL_TOL * max(1.0, float(np.max(np.abs(right))))
    return f"{int(off.sum())} of {off.size} entries"


def _slope_origin(found, lines: list[Line], made: dict, matcher: "Matcher") -> Line | None:
    """The statement that first computed the wrong slope a residual read, from inputs that are right: an origin
    there, ∂L/∂z the quantity it spoils, shown against f'(z)."""
    q, s, slope, read = found
    act = matcher.p.activations[q.layer]
    bound = made.get(_key(read))
    if bound is not None and bound.status == OK and bound.quantity is not None and not bound.quantity.backward:
        # a right value of the forward (the layer's output, its z) where the derivative belongs: the caller's choice
        words = f"looks like {act}' written as {WORDS[bound.quantity.name]} of layer {bound.quantity.layer}"
        return _slope_at(bound, q, s, slope, words, lines, made)
    line = _first_making(lines, s)
    if line is None:
        return None
    words = (
        f"looks like {act}' written wrong: the derivative the file computes is not that of its forward {act}(z) "
        f"at {_entries_off(s, slope)}"
    )
    return _slope_at(line, q, s, slope, words, lines, made)


def _residual_origin(found, lines: list[Line], made: dict, matcher: "Matcher") -> Line | None:
    """The statement that first computed the wrong ∂L/∂y the top layer's residual read, from inputs that are right."""
    q, u, up, _ = found
    line = _first_making(lines, u)
    if line is None:
        return None
    words = (
        f"looks like the derivative of the {matcher.p.loss} loss written wrong: ∂L/∂y differs from the gradient of "
        f"the loss the file computes at {_entries_off(u, up)} (y and t are right)"
    )
    return _slope_at(line, q, u, up, words, lines, made, "loss_derivative_wrong")


def _slope_at(line: Line, q: Quantity, s, slope, words: str, lines: list[Line], made: dict, kind="derivative_wrong"):
    """An origin at ``line``'s statement, its wrong slope shown against f'(z); carried where it was passed on."""
    res = float(np.linalg.norm(s - slope) / max(np.linalg.norm(slope), np.finfo(np.float64).tiny))
    at = Line(line.record, ORIGIN, q, 1.0, (Diagnosis(kind, words, res),), expected=slope)
    at.shown = s
    first = next(k for k, m in enumerate(lines) if m is line)
    lines[first] = at
    for k in range(first + 1, len(lines)):  # where it was passed on (bound to a name): carried from there
        if lines[k].status in (OK, OWN) and np.array_equal(lines[k].record.value, line.record.value):
            lines[k] = replace(lines[k], status=INHERITED, origin=at)
    for key, m in list(made.items()):
        if m is line or (m.status in (OK, OWN) and np.array_equal(m.record.value, line.record.value)):
            made[key] = at
    return at


def _where_the_derivative_belonged(line: Line, r: Record, made: dict, matcher: "Matcher", lines=()) -> Line:
    if not line.diagnoses or line.diagnoses[0].name not in DERIVATIVE_LEFT_OUT:
        return line
    layer = line.quantity.layer
    done = any(
        m.status == OK and m.quantity is not None and (m.quantity.layer, m.quantity.name) == (layer, "residual_z")
        for m in made.values()
    )
    if done:
        return line  # ∂L/∂z was computed: the mistake is using ∂L/∂y where it belonged, here
    for _, v in r.reads:
        src = made.get(_key(v))
        q = src.quantity if src is not None and src.status == OK else None
        upstream = q is not None and (
            (q.name == "residual_x" and q.layer == layer + 1) or (q.name == "residual_y" and q.layer == layer)
        )
        if upstream:
            want = [
                c
                for c in matcher.candidates(v, q.sample)
                if (c.layer, c.name, c.sample) == (layer, "residual_z", q.sample)
            ]
            expected = matcher.layout.give("data", want[0].value) if want else None
            at = _handed_back(src, lines) if _is_argument(src.record) else src.record
            moved = Line(at, ORIGIN, want[0] if want else line.quantity, 1.0, line.diagnoses, expected=expected)
            moved.handed_on = q
            return moved
    return line


def _handed_back(src: Line, lines) -> Record:
    """An argument handed back as it came (an activation's backward that ``return grad_out``): its return statement,
    where the derivative belonged; else the argument itself."""
    after = False
    for line in lines:
        after = after or line is src
        rec = line.record
        if after and rec.frame == src.record.frame and rec.target.startswith("return"):
            if rec.value.shape == src.record.value.shape and np.array_equal(rec.value, src.record.value):
                return rec
    return src.record


def _is_argument(r: Record) -> bool:
    return r.statement.lstrip().startswith(("def ", "async def "))


def place_arguments(trace: Trace) -> None:
    """An origin that first shows as a function's argument (at its ``def``) was made by the expression the caller
    passed (``update(w0, -grad_w0)``): placed at the caller's statement, the first recorded once the call returned."""
    lines = trace.lines
    for line in lines:
        r = line.record
        if line.status != ORIGIN or not _is_argument(r):
            continue
        inside = [i for i, ln in enumerate(lines) if ln.record.frame == r.frame]
        before = {ln.record.frame for ln in lines[: inside[0]]}  # the caller is a frame that ran before the call
        at = next((ln for ln in lines[inside[-1] + 1 :] if ln.record.frame in before), None)
        if at is None or _is_argument(at.record):
            continue
        if at.status != ORIGIN:
            at.status, at.quantity, at.factor, at.diagnoses = ORIGIN, line.quantity, line.factor, line.diagnoses
            at.expected, at.shown = line.expected, r.value
        line.status, line.origin = INHERITED, at


def judge_updates(trace: Trace, before: list[dict], after: list[dict], matcher: "Matcher") -> None:
    """Each statement that wrote a parameter, judged from the gradient it read: an update applies −lr × it,
    or −lr/N × a sum over the samples. Another factor (the sign, a 1/N twice or never) is an origin there,
    whatever that gradient carried from above; ``before``/``after``: each layer's w and b, the file's layout."""
    made = {_key(line.record.value): line for line in trace.lines}
    p = matcher.p
    entries: dict[str, Line | None] = {}  # the residual a 1/N was left out of, once found
    for i, (old, new) in enumerate(zip(before, after)):
        for q in ("w", "b"):
            writer = next((ln for ln in reversed(trace.lines) if _same(ln.record.value, new[q])), None)
            if writer is None:
                continue
            if writer.status == ORIGIN:  # a parameter's new value: no backward quantity, whatever it resembles
                writer.status, writer.diagnoses, writer.quantity = OWN, (), None
            applied = (old[q] - new[q]) / p.lr  # the gradient the update applied, the file's layout
            for _, g in writer.record.reads:
                if g.size != applied.size or _same(g, old[q]):
                    continue
                hit = factor_of(applied, g.reshape(applied.shape) if g.shape != applied.shape else g)
                if hit is None:
                    continue
                handed = _handed(g, i, q, made, matcher)
                if handed is None and _close(abs(hit[0]) * p.lr, 1.0):  # it adds a step −lr × g made elsewhere
                    handed = -p.lr * matcher.c
                k = hit[0] * (handed if handed is not None else 1.0) / matcher.c
                wrong = (handed is not None and not _close(k, 1.0)) or (handed is None and k < 0)
                if wrong:
                    truth = next(c for c in matcher.quantities if (c.layer, c.name) == (i, f"grad_{q}"))
                    quantity = truth
                    ctx = Context(quantity=quantity.name, n=p.batch, w=p.params[i]["w"])
                    cause, words, _ = explain_factor(k, ctx, MATCH_REL_TOL)
                    message = f"looks like {words}: {UPDATE_WORDS} {k:.6g} × the gradient it was handed"
                    entry = None
                    if _close(k, float(p.batch)):
                        entry = entries.get("N") or _factor_entry(trace, made, k * matcher.c)
                        entries["N"] = entry
                    if entry is not None and entry.status == ORIGIN:
                        continue  # the same residual without its 1/N, placed already: one finding
                    if entry is not None:  # a residual without its 1/N, never divided afterwards: made there
                        message = f"looks like {words}: ∂L/∂{entry.quantity.name[9:]} is {k:.6g} × JAX's from here on"
                        entry.status, entry.diagnoses = ORIGIN, (Diagnosis(cause, message, 0.0),)
                        truth = entry.quantity
                        entry.expected = matcher.layout.give(truth.kind, truth.value)
                        entry.shown = entry.record.value
                        continue
                    writer.status, writer.quantity, writer.factor = ORIGIN, quantity, k
                    writer.diagnoses = (Diagnosis(cause, message, 0.0),)
                    writer.expected = matcher.layout.give(truth.kind, truth.value, like=applied.shape)
                    writer.shown = applied
                break


def factor_entry(trace: Trace, factor: float) -> Line | None:
    """The first batch residual of ``trace`` that carries ``factor`` from inputs that do not, if one does."""
    return _factor_entry(trace, {_key(line.record.value): line for line in trace.lines}, factor)


def _factor_entry(trace: Trace, made: dict, factor: float) -> Line | None:
    """The first batch residual that carries ``factor`` (a sum over the samples) from inputs that do not."""
    for line in trace.lines:
        q = line.quantity
        if line.status != OK or q is None or q.sample is not None or not q.name.startswith("residual"):
            continue
        if not _close(line.factor, factor):
            continue
        inputs = [made.get(_key(v)) for _, v in line.record.reads]
        plain = [src is None or src.quantity is None or not src.quantity.backward for src in inputs]
        if all(p or _close(src.factor, 1.0) for p, src in zip(plain, inputs)):
            return line
    return None


# An inherited gradient still carries the scale of a mean or a sum over the samples: its best multiple of the
# right gradient is within this ratio of 1 or N when the error it inherits is small beside that (a derivative
# taken at the wrong point changes a gradient by a few percent; 1 and N ≥ 2 are a factor 2 or more apart).
CARRIED_SCALE_RATIO = 1.25


STEP_DEPTH = 3  # a step made from the gradient in a few statements (``update = -lr * g``; ``w += update``)


def _handed(g: np.ndarray, i: int, q: str, made: dict, matcher: "Matcher", depth: int = 0) -> float | None:
    """The factor ``g`` carries on layer ``i``'s gradient as the update reads it: a right gradient's own factor, a
    wrong one's (an origin's, or the mean or sum an inherited one carries), or a step made from either by a constant
    (``weight_updates = -lr * dweights``); None when its values do not say."""
    src = made.get(_key(g))
    if src is None:
        return None
    if src.status == OK and src.quantity is not None and src.quantity.backward:
        return src.factor
    if src.status == INHERITED and (carried := _carried_scale(g, i, q, matcher)) is not None:
        return carried
    if depth < STEP_DEPTH:
        for _, v in src.record.reads:
            if v.size != g.size or _same(v, g):
                continue
            hit = factor_of(g, v.reshape(g.shape) if v.shape != g.shape else v)
            inner = None if hit is None else _handed(v, i, q, made, matcher, depth + 1)
            if inner is not None:
                return hit[0] * inner
    if src.status == ORIGIN and src.quantity is not None and src.quantity.name == f"grad_{q}":
        return src.factor  # the wrong gradient the file computed, applied as it is
    return None


def _carried_scale(g: np.ndarray, i: int, q: str, matcher: "Matcher") -> float | None:
    """Whether an inherited gradient is a mean (1) or a sum over the samples (N), read from its size; or None."""
    truth = next(c.value for c in matcher.quantities if (c.layer, c.name) == (i, f"grad_{q}"))
    for a in orientations(g, truth.shape):
        k = float(np.vdot(a, truth) / max(np.vdot(truth, truth), np.finfo(np.float64).tiny))
        for scale in (matcher.c, matcher.c * matcher.p.batch):
            if k > 0 and abs(np.log(k / scale)) < np.log(CARRIED_SCALE_RATIO):
                return scale
    return None


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.size == b.size and np.array_equal(a.reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1))
