"""Training runs, manual vs JAX, judged step by step under one of three rules.

- ``global`` (float64): both sides train freely from the same start; at every step k the
  loss and every parameter after step k must agree within a tight absolute bound.
- ``local`` (float32): manual trains freely; JAX takes ONE step from manual's own parameters
  at every step k (``one_step.StepsFrom``), and manual's loss at step k and its
  parameters after step k must match JAX's within one step's float32 rounding. Rounding
  cannot accumulate (each step restarts from manual's numbers) while a wrong term shows at
  every step.
- ``shadow`` (float32, measured and kept for comparison): a float64 JAX run beside both float32
  runs; manual's distance from it must stay within a factor of JAX32's own distance.

Every rule gives, per row (the loss, and ``w``/``b`` of each layer) and per step, max|Δ| and
the tolerance of that step; a row fails at its first step beyond the tolerance (NaN never
passes). Runs are compared in chunks of steps, so memory stays bounded and a caller can be
told of progress. The two sides overlap: while JAX computes a chunk (its dispatch does not wait), the
host runs manual's next chunk and judges the last one; each chunk is still judged against its own.
"""

import threading
import time
from contextlib import nullcontext
from typing import NamedTuple

import jax
import numpy as np

from fcgrad import manual, reference
from fcgrad.engine import blas_threads
from fcgrad.engine import tolerances as tol
from fcgrad.engine.budget import DEFAULT_CHUNK_BYTES
from fcgrad.engine.compare import Row
from fcgrad.engine.one_step import LARGE_STEP_FLOPS, SCREENED, Staging, StepsFrom, bound_mode, step_flops
from fcgrad.engine.problems import Problem
from fcgrad.engine.step_stats import step_numbers, sum_squares
from fcgrad.engine.timing import Timings
from fcgrad.manual.errors import DivergenceError
from fcgrad.reference.precision import as_jax, x64_for
from fcgrad.reference.train import static_trainable

RULES = ("global", "local", "shadow")
# Parameter history held per side at once (``budget.DEFAULT_CHUNK_BYTES``). Measured on check_cost's problem
# (784-256-256-10, N 256, 200 steps), in-process A/B rounds alternating: a cap of 32 MiB (10-step chunks under the
# local rule, 15 under the global) took the trajectory from 2.67 to 2.37 s (relu, local) and 2.76 to 2.30 s (tanh,
# global) against 64 MiB, 6 rounds each (12 more, paired: relu no different, tanh 0.15 s faster); 16 MiB ran as
# 32, 8 MiB slower (more chunk switches), 128 and 256 MiB slower still. A chunk's arrays then stay under glibc's
# 32 MiB mmap threshold, so JAX's outputs reuse freed memory instead of being mapped anew each chunk (system time
# 0.16-0.54 -> 0.04-0.07 s), and a chunk manual wrote is read again while more of it is still in cache.
CHUNK_BYTES = DEFAULT_CHUNK_BYTES
CHUNK_SECONDS = 1.0  # aim for a chunk (and a progress call) about every second
PROBE_STEPS = 8  # manual steps timed (and discarded) before the run, to size its chunks
MAX_CHUNK_STEPS = 2**16  # no chunk longer than this, whatever the timing says
# JAX's side of a chunk of up to this many steps is compiled at the next power of two (the extra steps are run
# and dropped): runs of 17 to 32 steps of one network share one compiled program, and the extra steps of a
# small network cost less than a compile (a few ms beside 0.1–0.5 s)
ROUNDED_LENGTH_STEPS = 1024


class Divergence(NamedTuple):
    """Where a run stopped having a finite loss: ``side`` is "manual", "JAX" or "both"."""

    side: str
    step: int

    def describe(self) -> str:
        if self.side == "both":
            return (
                f"both sides diverged at step {self.step} (the loss is not finite there on either side): "
                f"they agree up to it; try a smaller learning rate"
            )
        other = "JAX" if self.side == "manual" else "manual"
        return f"{self.side} diverged at step {self.step} (its loss is not finite) while {other} did not"


class TrajectoryComparison(NamedTuple):
    rows: list[Row]  # the loss (layer -1) and w, b of each layer
    final: list  # manual's parameters after the last compared step
    histories: dict  # the --save arrays, when kept; maxdiff_<row> always
    divergence: Divergence | None
    steps_compared: int  # steps whose parameters were compared
    last_losses: tuple | None = None  # (manual, JAX) loss of the last step compared; None when none was


def row_names(n_layers: int) -> list[tuple[int, str]]:
    return [(-1, "loss")] + [(i, k) for i in range(n_layers) for k in ("w", "b")]


def _key(layer: int, quantity: str) -> str:
    return "loss" if layer < 0 else f"{quantity}{layer}"


def _as64(a) -> np.ndarray:
    """``a`` as float64 (no copy when it already is): differences are taken in float64 whatever the dtype."""
    return np.asarray(a, np.float64)


def _per_step(a) -> np.ndarray:
    """``a`` seen as (steps, entries of one step); a 1-d array is one entry per step."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:])))  # 1-d: one entry per step


def _max_abs(a: np.ndarray) -> np.ndarray:
    """max |a| of each step, as max(max a, −min a): the same number (NaN and inf too), without an |a| array."""
    a = _per_step(a)
    return np.maximum(a.max(axis=1), -a.min(axis=1))


def _step_max(a, r) -> np.ndarray:
    """max |a − r| of each step (axis 0); NaN when either side has a NaN, inf for inf."""
    return _max_abs(np.subtract(_as64(a), _as64(r)))


def step_scale(a) -> np.ndarray:
    """max(1, max |a|) of each step: the scale absolute tolerances are multiplied by."""
    return np.maximum(1.0, _max_abs(_as64(a)))


class RowAccumulator:
    """Per-step max|Δ| and tolerance of one row, and Σ Δ², Σ r² over every step, chunk by chunk."""

    def __init__(self):
        self.diffs, self.tols = [], []
        self.sq_diff = self.sq_ref = 0.0

    def add(self, a, r, step_tol) -> None:
        a, r = _as64(a), _as64(r)
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run: inf and NaN are results here
            d = np.subtract(a, r)  # the one temporary
            self.sq_diff += sum_squares(d)
            self.diffs.append(_max_abs(d))
            self.tols.append(np.asarray(step_tol, np.float64))
            self.sq_ref += sum_squares(r)

    def add_numbers(self, max_diff, step_tol, sq_diff: float, sq_ref: float) -> None:
        """The numbers ``add`` takes from stacked arrays, computed step by step (``step_stats.step_numbers``)."""
        self.diffs.append(np.asarray(max_diff, np.float64))
        self.tols.append(np.asarray(step_tol, np.float64))
        self.sq_diff += sq_diff
        self.sq_ref += sq_ref

    def row(self, layer: int, quantity: str, rule: str) -> tuple[Row, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # inf/NaN are results here
            return self._row(layer, quantity, rule)

    def _row(self, layer: int, quantity: str, rule: str) -> tuple[Row, np.ndarray]:
        d = np.concatenate(self.diffs) if self.diffs else np.zeros(0)
        limit = np.concatenate(self.tols) if self.tols else np.zeros(0)
        bad = ~(d <= limit)  # NaN compares false: never within tolerance
        first = int(np.argmax(bad)) if bad.any() else None
        if d.size == 0:
            return Row(layer, quantity, 0.0, 0.0, 0.0, True, rule, None, 0.0), d
        ratios = d / limit
        worst = first if first is not None and np.isnan(ratios[first]) else int(np.argmax(ratios))
        rel = np.sqrt(self.sq_diff) / max(np.sqrt(self.sq_ref), np.finfo(np.float64).tiny)
        max_abs = float(d[first]) if first is not None and np.isnan(d[first]) else float(np.max(d))
        row = Row(layer, quantity, max_abs, float(rel), float(limit[worst]), first is None, rule, first,
                  float(ratios[worst]))
        return row, d


PENDING_BYTES = 16 * 2**20  # one side's single-step arrays held before they are judged as one block


class StepRows:
    """One ``RowAccumulator`` per row, fed a step at a time and judged a block of steps at a time.

    Judging a step's small arrays one by one costs more than the step itself on a small network
    (about 0.3 ms per row and step); stacked into blocks of up to PENDING_BYTES, the same numbers go
    through ``RowAccumulator.add`` in a few calls. Each step is still judged on its own tolerance.
    Rows keep the order of their first ``add``.
    """

    def __init__(self, limit: float):
        self.limit = limit
        self.acc: dict[tuple[int, str], RowAccumulator] = {}
        self._pending: dict[tuple[int, str], tuple[list, list]] = {}
        self._bytes = 0

    def add(self, key: tuple[int, str], a, r) -> None:
        """One step's arrays of row ``key``; ``a`` is copied (a caller may update it in place)."""
        a, r = np.array(a, copy=True), np.asarray(r)
        self.acc.setdefault(key, RowAccumulator())
        mine, theirs = self._pending.setdefault(key, ([], []))
        mine.append(a)
        theirs.append(r)
        self._bytes += a.nbytes
        if self._bytes >= PENDING_BYTES:
            self.flush()

    def add_steps(self, key: tuple[int, str], a, r) -> None:
        """Every step's arrays of row ``key`` at once, steps along axis 0."""
        self.flush()
        r = np.asarray(r)
        self.acc.setdefault(key, RowAccumulator()).add(np.asarray(a), r, self.limit * step_scale(r))

    def flush(self) -> None:
        for key, (mine, theirs) in self._pending.items():
            r = np.stack(theirs)
            self.acc[key].add(np.stack(mine), r, self.limit * step_scale(r))
        self._pending.clear()
        self._bytes = 0

    def rows(self, order, rule: str) -> list[Row]:
        self.flush()
        return [self.acc[key].row(*key, rule)[0] for key in order]


def _chunk_bytes_steps(p: Problem, rule: str | None = None) -> int:
    """Steps whose arrays fit in CHUNK_BYTES: per step the parameters, and what the JAX side holds besides.

    The local rule's small steps are vmapped (about four activations-sized arrays per layer and step), its
    large ones return each layer's z (one); a free run (global, shadow) holds the parameters alone. Without a
    rule, the most of these.
    """
    activations = sum(p.sizes[1:]) * p.batch
    if rule in ("global", "shadow"):
        extra = 0
    elif rule == "local" and step_flops(p) >= LARGE_STEP_FLOPS:
        extra = activations if bound_mode(p) == SCREENED else 0
    else:
        extra = 4 * activations
    values = sum(v.size for layer in p.params for v in layer.values()) + extra
    return max(1, CHUNK_BYTES // (values * np.dtype(p.dtype).itemsize))


def chunk_steps(p: Problem, rule: str | None = None) -> int:
    """Steps per chunk: a power of two near CHUNK_SECONDS of work, within the memory cap.

    The time of a step is that of manual's gradients at the initial parameters (PROBE_STEPS times),
    doubled for the JAX side. Fewer, longer chunks also mean fewer switches between NumPy and XLA, each
    of which slows the next tens of milliseconds (their worker threads keep spinning after their work).
    """
    cap = min(_chunk_bytes_steps(p, rule), MAX_CHUNK_STEPS)
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        for _ in range(PROBE_STEPS):
            manual.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    per_step = 2 * (time.perf_counter() - start) / PROBE_STEPS
    want = CHUNK_SECONDS / max(per_step, 1e-9)
    chunk = max(1, min(cap, 2 ** int(np.floor(np.log2(max(want, 1.0))))))
    # a run of at most two chunks (about 2 s) goes in one
    return p.steps if p.steps <= 2 * chunk and p.steps <= cap else chunk


def compiled_length(p: Problem, rule: str, steps: int) -> int:
    """The length JAX's side is compiled at for chunks of ``steps`` steps: the next power of two up to
    ROUNDED_LENGTH_STEPS, when that fits the memory cap; else ``steps``."""
    rounded = 1 << max(0, steps - 1).bit_length()
    return rounded if steps <= ROUNDED_LENGTH_STEPS and rounded <= _chunk_bytes_steps(p, rule) else steps


def _train_manual(p: Problem, params, steps: int, history=None):
    """manual.train for ``steps`` steps (its parameters recorded into ``history`` when given); on divergence at
    step s, the first s steps and s."""
    common = dict(activations=p.activations, loss=p.loss, lr=p.lr, trainable=p.trainable, dtype=p.dtype,
                  history=history)  # fmt: skip
    try:
        return manual.train(params, p.x, p.t, steps=steps, **common), None
    except DivergenceError as e:
        return manual.train(params, p.x, p.t, steps=e.step, **common), e.step


def _first_nonfinite(losses) -> int | None:
    bad = ~np.isfinite(np.asarray(losses))
    return int(np.argmax(bad)) if bad.any() else None


def _merge_divergence(manual_at: int | None, jax_at: int | None) -> tuple[int | None, str | None]:
    """(local step where comparing stops, side) from where each side's loss stopped being finite."""
    if manual_at is None and jax_at is None:
        return None, None
    if manual_at is not None and manual_at == jax_at:
        return manual_at, "both"
    if jax_at is None or (manual_at is not None and manual_at < jax_at):
        return manual_at, "manual"
    return jax_at, "JAX"


class _FreeRun:
    """JAX training freely from the problem's start, chunk after chunk (the global and shadow rules' JAX side).

    The data go to JAX once, and each chunk continues from the last one's parameters, still JAX arrays. A
    large step (``one_step.LARGE_STEP_FLOPS``) runs as one compiled step per call (``reference.jit_step``):
    that compiles in half the time of a compiled loop, and a call's overhead is nothing beside the step. A
    small one runs ``capacity`` steps in one compiled loop (``reference.scan_train``), at that one length for
    every chunk (a shorter chunk's extra steps are run and dropped), so that it compiles once.
    """

    def __init__(self, p: Problem, capacity: int):
        self.p, self.capacity = p, max(1, int(capacity))
        with x64_for(p.dtype):
            self.params, self.x, self.t = as_jax(p.params, p.x, p.t, p.dtype)
        self.static = dict(activations=tuple(p.activations), loss_name=p.loss,
                           trainable=static_trainable(p.trainable, len(p.params)))  # fmt: skip
        self.per_step = step_flops(p) >= LARGE_STEP_FLOPS

    def compile_ahead(self) -> None:
        """Compile what the calls will run (see ``one_step.StepsFrom.compile_ahead``)."""
        with x64_for(self.p.dtype):
            if self.per_step:
                reference.jit_step.lower(self.params, self.x, self.t, self.p.lr, **self.static).compile()
            else:
                reference.scan_train.lower(self.params, self.x, self.t, self.p.lr, steps=self.capacity,
                                           record_params=True, **self.static).compile()  # fmt: skip

    def __call__(self, steps: int, meanwhile=lambda: None) -> tuple[np.ndarray, list[dict]]:
        """The next ``steps`` steps: (losses (steps,), per layer the parameters after each step, stacked (steps,
        ...) from a compiled loop, a list of one array per step from one call per step).

        ``meanwhile()`` runs while JAX computes: its work is dispatched and not yet awaited."""
        with x64_for(self.p.dtype):
            if self.per_step:
                losses, after = [], []
                for _ in range(steps):
                    value, self.params = reference.jit_step(self.params, self.x, self.t, self.p.lr, **self.static)
                    losses.append(value)
                    after.append(self.params)
                meanwhile()
                # each step's arrays as they lie (a view of JAX's buffer on the CPU): judged step by step, not stacked
                new = [{key: [np.asarray(q[i][key]) for q in after] for key in layer}
                       for i, layer in enumerate(self.params)]  # fmt: skip
                return np.array([np.asarray(v) for v in losses]), new
            losses, history, final = reference.scan_train(
                self.params, self.x, self.t, self.p.lr, steps=self.capacity, record_params=True, **self.static
            )
            meanwhile()
            history = [{key: np.asarray(v) for key, v in layer.items()} for layer in history]  # entry 0: before
            # the parameters after ``steps`` steps (indexed in NumPy: indexing a JAX array compiles a program)
            self.params = final if steps == self.capacity else jax.device_put(jax.tree.map(lambda h: h[steps], history))
            return np.asarray(losses)[:steps], [{key: v[1:steps + 1] for key, v in layer.items()} for layer in history]


class _Judge:
    """Compares one chunk under one rule, keeping every row's per-step numbers."""

    def __init__(self, p: Problem, rule: str, atol: float | None, keep_history: bool, timings: Timings, chunk: int):
        self.p, self.rule, self.keep, self.timings = p, rule, keep_history, timings
        self.acc = {name: RowAccumulator() for name in row_names(len(p.params))}
        self.kept: dict[str, list] = {"loss_manual": [], "loss_reference": []}
        for i, layer in enumerate(p.params):
            for k in ("w", "b"):
                self.kept[f"{k}{i}_manual"] = [layer[k][None]]
                self.kept[f"{k}{i}_reference"] = [layer[k][None]]
        self.limits = tol.trajectory_limits(rule, p.dtype, atol)
        self.free = {"f64": _params64(p.params)}  # the shadow rule's float64 JAX run
        self.chunk_steps, self.jax = chunk, None  # the JAX side, made by ``start``
        self.last_losses = None  # (manual, JAX) at the last step compared

    def start(self) -> threading.Thread:
        """Make JAX's side and start compiling its step in another thread, to be joined before its first chunk.

        A compile that fails there is left to the first call, which compiles (or fails) as it would have."""
        p = self.p
        c = compiled_length(p, self.rule, self.chunk_steps)
        # local: one step from each of manual's parameters; global, shadow: a free run
        self.jax = StepsFrom(p, c) if self.rule == "local" else _FreeRun(p, c)

        def compile_ahead():
            try:
                self.jax.compile_ahead()
            except Exception:  # noqa: BLE001 - the first call meets the same error where it can be reported
                pass

        thread = threading.Thread(target=compile_ahead, name="compile JAX's step", daemon=True)
        thread.start()
        return thread

    def run_jax(self, m, steps: int, meanwhile=lambda: None, whole=None):
        """JAX's side of a chunk of ``steps`` steps: (losses, parameters after each step, a call that gives the
        kink bounds or None): the local rule's bounds are worked out when the chunk is judged.

        The local rule steps once from each of manual's parameters in its chunk ``m`` (up to the step after a
        diverged one); the others run on from JAX's last chunk and do not read ``m``. ``whole``: the buffers
        ``m``'s history is a view of (``_ManualChunks``), which JAX reads in place; else ``m.params``.
        ``meanwhile()`` runs while JAX computes.
        """
        if self.rule == "local":
            one = self.jax(m.params if whole is None else whole, min(steps, len(m.losses) + 1), meanwhile)
            return one.losses, one.new, lambda: one.kink
        r_losses, r_new = self.jax(steps, meanwhile)
        return r_losses, r_new, None

    def judge(self, m, steps: int, manual_at: int | None, jax_side):
        """Manual's chunk ``m`` of ``steps`` steps (cut at ``manual_at`` when manual diverged) and JAX's, from
        ``run_jax``: (the step of this chunk where comparing stops, which side diverged) or (None, None), and
        the chunk's comparisons as a call, to be made while JAX computes the next chunk."""
        r_losses, r_new, kink = jax_side
        stop, side = _merge_divergence(manual_at, _first_nonfinite(r_losses))
        k = steps if stop is None else stop  # steps judged in this chunk
        return stop, side, lambda: self._compare(m, r_losses, r_new, kink, k)

    def _compare(self, m, r_losses, r_new, kink, k: int) -> None:
        """Every row of the chunk's first ``k`` steps, into the accumulators (and the kept histories).

        JAX's parameters come stacked (steps, ...) or as one array per step (``step_stats``)."""
        p, n = self.p, len(self.p.params)
        m_losses = m.losses[:k]
        m_new = [{key: v[1:k + 1] for key, v in layer.items()} for layer in m.params]
        r_losses = r_losses[:k]
        r_new = [{key: v[:k] for key, v in layer.items()} for layer in r_new]
        if k:
            self.last_losses = (float(m_losses[-1]), float(r_losses[-1]))
        if self.rule == "shadow":
            self._shadow(m_losses, m_new, r_losses, [{key: _stacked(v) for key, v in layer.items()} for layer in r_new],
                         k)  # fmt: skip
        else:
            lim = self.limits
            loss_tol = lim.loss * step_scale(r_losses)
            self.acc[(-1, "loss")].add(m_losses, r_losses, loss_tol)
            for i in range(n):
                for key in ("w", "b"):
                    a, r = m_new[i][key], r_new[i][key]
                    prev = m.params[i][key][:k] if self.rule == "local" else None
                    if isinstance(r, list):
                        got = step_numbers(a, r, prev)
                        scale, update = got.scale, got.update
                    else:
                        r = _as64(r)  # JAX's side once in float64: used up to 3 times
                        scale = step_scale(r)
                        update = _step_max(r, prev) if prev is not None else None
                    t = lim.param * scale
                    if self.rule == "local":  # plus a share of the step's own size, lr·max|grad|
                        # and what ReLU entries at the kink may change: lr · (bound on Δgrad) · KINK_SLACK
                        t = t + lim.update * update + tol.KINK_SLACK * p.lr * kink()[i][key][:k]
                    if isinstance(r, list):
                        self.acc[(i, key)].add_numbers(got.max_diff, t, got.sq_diff, got.sq_ref)
                    else:
                        self.acc[(i, key)].add(a, r, t)
        if self.keep:
            self.kept["loss_manual"].append(m_losses)
            self.kept["loss_reference"].append(r_losses)
            for i in range(n):
                for key in ("w", "b"):
                    # a copy: manual's history is a view of buffers written again (_ManualChunks)
                    self.kept[f"{key}{i}_manual"].append(np.array(m_new[i][key]))
                    # a copy: JAX's result may be a view of a buffer that is written again (one_step.Staging)
                    r = r_new[i][key]
                    self.kept[f"{key}{i}_reference"].append(np.stack(r) if isinstance(r, list) else np.array(r))

    def _shadow(self, m_losses, m_new, r_losses, r_new, k: int) -> None:
        p, lim = self.p, self.limits
        common = dict(activations=p.activations, loss=p.loss, lr=p.lr, trainable=p.trainable)
        s = reference.train(self.free["f64"], p.x.astype(np.float64), p.t.astype(np.float64), steps=k,
                            dtype="float64", **common)
        s_new = [{key: v[1:] for key, v in layer.items()} for layer in s["params"]]
        self.free["f64"] = s["final"]

        def judge(name, a, b, ref):
            d_jax = _step_max(b, ref)
            floor = lim.param * step_scale(ref)
            # manual's distance from float64 must stay within FACTOR × JAX32's (+ a floor), measured as
            # max|manual − JAX32| ≤ (FACTOR + 1)·d_jax + floor (triangle inequality, one row of numbers)
            self.acc[name].add(a, b, (lim.update + 1.0) * d_jax + floor)

        judge((-1, "loss"), m_losses, r_losses, s["losses"])
        for i in range(len(p.params)):
            for key in ("w", "b"):
                judge((i, key), m_new[i][key], r_new[i][key], s_new[i][key])

    def result(self):
        rows, maxdiff = [], {}
        for (layer, q), acc in self.acc.items():
            row, d = acc.row(layer, q, self.rule)
            rows.append(row)
            maxdiff[f"maxdiff_{_key(layer, q)}"] = d
        histories = dict(maxdiff)
        if self.keep:
            histories.update({key: np.concatenate(parts) for key, parts in self.kept.items()})
        return rows, histories


def _stacked(v) -> np.ndarray:
    """One array (steps, ...) from JAX's parameters, stacked already or one array per step."""
    return np.stack(v) if isinstance(v, list) else np.asarray(v)


def _params64(params):
    return [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in params]


# Manual's chunk c is recorded into the history buffers of chunk c − 3: while it runs, JAX computes from chunk
# c − 1 and chunk c − 2 is judged; chunk c − 3 was judged before (see compare_trajectories)
HISTORY_BUFFERS = 3


class _ManualChunks:
    """Manual's chunks, each run once, in order, up to the chunk where its loss stopped being finite.

    Each chunk records its parameters into one of HISTORY_BUFFERS sets of buffers used in turn
    (``one_step.Staging``): a fresh history per chunk cost a page fault per 4 KiB page as manual first wrote
    it, measured at a fifth of manual's own time on the check's benchmark problem. A chunk's history is a view
    of its buffers (``wholes``), valid until HISTORY_BUFFERS chunks later; the local rule's JAX side reads the
    buffers in place (``one_step.StepsFrom``). ``entries``: the buffers' length, at least the longest chunk's
    steps + 1 (the local rule's: JAX's compiled length + 1).
    """

    def __init__(self, p: Problem, lengths: list[int], timings: Timings, entries: int = 0):
        self.p, self.lengths, self.timings = p, lengths, timings
        self.runs: list = []  # (manual.train's trajectory, the local step where it diverged or None) per chunk
        self.wholes: list = []  # per chunk, the buffers its history is a view of
        self.entries = max(entries, max(lengths, default=0) + 1)
        self._buffers = Staging(HISTORY_BUFFERS)

    def _history(self):
        self._buffers.turn()
        return [{key: self._buffers.array((i, key), (self.entries, *np.shape(v)), np.dtype(self.p.dtype))
                 for key, v in layer.items()} for i, layer in enumerate(self.p.params)]  # fmt: skip

    def run_to(self, count: int, beside_jax: bool = False) -> None:
        """Run chunks until ``count`` have run (or manual diverged, or every chunk has run); ``beside_jax``: on
        the host's share of the cores (``blas_threads``), JAX computing or compiling meanwhile."""
        while len(self.runs) < min(count, len(self.lengths)) and (not self.runs or self.runs[-1][1] is None):
            start = self.p.params if not self.runs else self.runs[-1][0].final
            with self.timings.phase("manual_run"), blas_threads.beside_jax() if beside_jax else nullcontext():
                whole = self._history()
                self.runs.append(_train_manual(self.p, start, self.lengths[len(self.runs)], whole))
                self.wholes.append(whole)


def _meanwhile(manual: _ManualChunks, count: int, compare, timings: Timings):
    """What the host does while JAX computes a chunk: manual's chunks up to ``count`` (where its BLAS can be
    held to the host's share of the cores), then the comparisons of the chunk before (when there is one),
    each timed as such."""

    def run():
        if blas_threads.can_limit():
            manual.run_to(count, beside_jax=True)
        if compare is not None:
            _comparisons(compare, timings)

    return run


def _comparisons(compare, timings: Timings) -> None:
    """A chunk's comparisons, timed as such, with BLAS on one thread (``blas_threads.one_thread``)."""
    with timings.phase("comparisons"), blas_threads.one_thread():
        compare()


def compare_trajectories(
    p: Problem,
    *,
    keep_history: bool = False,
    atol: float | None = None,
    rule: str | None = None,
    progress=None,
    timings: Timings | None = None,
) -> TrajectoryComparison:
    """Train manual ``p.steps`` steps and judge every step against JAX under ``rule``.

    ``rule``: None picks ``global`` for float64 and ``local`` for float32. ``atol`` overrides the
    rule's absolute tolerance (scaled by max(1, max|param|) per step). ``progress(done, total)``
    is called after each compared chunk. A run that diverges keeps the rows of the steps before.
    ``timings`` (a ``fcgrad.engine.timing.Timings``), when given, gets the manual run, the JAX run and the
    comparisons apart.
    """
    rule = tol.default_rule(p.dtype, p.activations, p.loss) if rule is None else rule
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")
    timings = Timings() if timings is None else timings
    pm, done, divergence = p.params, 0, None
    chunk = chunk_steps(p, rule) if p.steps else 1
    chunk = -(-p.steps // -(-p.steps // chunk)) if p.steps else 1  # equal chunks, the last short by < their count
    judge = _Judge(p, rule, atol, keep_history, timings, chunk)
    lengths = [min(chunk, p.steps - s) for s in range(0, p.steps, chunk)]
    manual = _ManualChunks(p, lengths, timings, compiled_length(p, rule, chunk) + 1 if p.steps else 0)
    # The host runs manual's chunks while JAX computes. Manual's first chunk runs while JAX's step compiles;
    # then JAX's chunk c is dispatched (the local rule's steps from manual's chunk c), manual runs chunk c + 1
    # and the comparisons of chunk c − 1 are made, and only then are JAX's numbers awaited and chunk c judged.
    # Manual's BLAS is held to the host's share of the cores meanwhile; where it cannot be, manual runs apart.
    with timings.phase("jax_run"):  # JAX's side made, its data sent; its compiling started aside
        compiling = judge.start() if p.steps else None
    manual.run_to(1, beside_jax=blas_threads.can_limit())
    if compiling is not None:
        with timings.phase("jax_run"):  # what is left of the compile once manual's chunk is done
            compiling.join()
    compare = None  # the last chunk's comparisons, not yet made
    for c, steps in enumerate(manual.lengths):
        m, manual_at = manual.runs[c]
        with timings.phase("jax_run"):  # less what the host does meanwhile, in its own phases
            jax_side = judge.run_jax(m, steps, _meanwhile(manual, c + 2, compare, timings), manual.wholes[c])
        manual.run_to(c + 2)  # where manual cannot run beside JAX (see blas_threads), after it
        stop, side, compare = judge.judge(m, steps, manual_at, jax_side)
        if stop is not None:
            divergence = Divergence(side, done + stop)
            done += stop
            pm = [{k: v[stop].copy() for k, v in layer.items()} for layer in m.params]  # out of the reused buffers
            break
        pm, done = m.final, done + steps
        if progress is not None:
            progress(done, p.steps)
    if compare is not None:
        _comparisons(compare, timings)
    rows, histories = judge.result()
    return TrajectoryComparison(rows, pm, histories, divergence, done, judge.last_losses)
