"""The trajectory's two sides overlap without changing a verdict.

- the host runs manual's next chunk and the last chunk's comparisons inside JAX's chunk (while JAX computes),
  in the order that keeps each chunk judged against its own manual chunk;
- a row's numbers taken step by step from one array per step (JAX's large steps) are those taken from the
  stacked arrays, NaN and inf included;
- a phase run inside another is counted once, so the trajectory's phases still add up to its wall time;
- the buffers the local rule's chunks reach JAX through are aligned and not reused by the next chunk;
- manual records each chunk into one of three sets of buffers used in turn, which JAX reads in place: every
  step is still judged against its own numbers, and what a run keeps is a copy.
"""

import re
import time

import jax
import numpy as np
import pytest

import fcgrad.engine.blas_threads as blas_threads
import fcgrad.engine.one_step as one_step
import fcgrad.engine.step_stats as step_stats
import fcgrad.engine.trajectory as trajectory
from fcgrad import manual
from fcgrad.engine.one_step import ALIGN_BYTES, Staging
from fcgrad.engine.problems import random_problem
from fcgrad.engine.step_stats import step_numbers
from fcgrad.engine.timing import Timings
from fcgrad.engine.trajectory import RowAccumulator, compare_trajectories, step_scale

# Σ (a − r)² and Σ r² summed step by step against all at once: the same terms in another order, so their
# relative difference is a few ulps (float64 eps 2.2e-16 times the terms' count at most); 1e-12 leaves room.
SUM_ORDER_REL = 1e-12


def _every_step_large(monkeypatch) -> None:
    """Every step counts as large (``one_step.LARGE_STEP_FLOPS``): JAX's side is one compiled call per step."""
    monkeypatch.setattr(one_step, "LARGE_STEP_FLOPS", 0)
    monkeypatch.setattr(trajectory, "LARGE_STEP_FLOPS", 0)


def _events(monkeypatch, activation: str) -> list[tuple[str, object]]:
    """(what, chunk or steps) in the order the trajectory did them, with 10 steps in chunks of 4, 4 and 2."""
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 4)
    events, inside = [], []
    train, run_jax, judge = trajectory._train_manual, trajectory._Judge.run_jax, trajectory._Judge.judge

    def logged_train(p, params, steps, history=None):
        events.append(("manual" + (" in JAX" if inside else ""), steps))
        return train(p, params, steps, history)

    def logged_run_jax(self, m, steps, meanwhile=lambda: None, whole=None):
        events.append(("JAX", steps))
        inside.append(True)
        try:
            return run_jax(self, m, steps, meanwhile, whole)
        finally:
            inside.pop()

    def logged_judge(self, m, steps, manual_at, jax_side):
        stop, side, compare = judge(self, m, steps, manual_at, jax_side)

        def logged_compare():
            events.append(("compare" + (" in JAX" if inside else ""), steps))
            compare()

        return stop, side, logged_compare

    monkeypatch.setattr(trajectory, "_train_manual", logged_train)
    monkeypatch.setattr(trajectory._Judge, "run_jax", logged_run_jax)
    monkeypatch.setattr(trajectory._Judge, "judge", logged_judge)
    p = random_problem((3, 5, 2), activations=activation, batch=4, seed=1).with_options(steps=10)
    assert all(r.ok for r in compare_trajectories(p).rows)
    return events


# Manual runs one chunk ahead: its first chunk while JAX's step compiles, then chunk c + 1 while JAX computes
# chunk c (the local rule's steps from manual's chunk c, a free run's own), with the comparisons of chunk c − 1
AHEAD = [
    ("manual", 4),
    ("JAX", 4), ("manual in JAX", 4),
    ("JAX", 4), ("manual in JAX", 2), ("compare in JAX", 4),
    ("JAX", 2), ("compare in JAX", 4),
    ("compare", 2),
]  # fmt: skip


@pytest.mark.parametrize("activation", ["relu", "tanh"], ids=["local", "global"])
def test_manual_runs_its_next_chunk_and_the_last_comparisons_are_made_while_jax_computes(activation, monkeypatch):
    assert _events(monkeypatch, activation) == AHEAD


def test_the_kink_screen_of_a_chunk_runs_with_its_comparisons_while_jax_computes_the_next(monkeypatch):
    _every_step_large(monkeypatch)  # one call per step, its z screened on the host
    screened = []
    screen = one_step.StepsFrom._screen

    def logged_screen(self, chunk, zs, k):
        screened.append(k)
        return screen(self, chunk, zs, k)

    monkeypatch.setattr(one_step.StepsFrom, "_screen", logged_screen)
    run_jax = trajectory._Judge.run_jax
    seen = []

    def watched(self, m, steps, meanwhile=lambda: None, whole=None):
        got = run_jax(self, m, steps, meanwhile, whole)
        seen.append(list(screened))  # the screens made by the time JAX's chunk is back
        return got

    monkeypatch.setattr(trajectory._Judge, "run_jax", watched)
    events = _events(monkeypatch, "relu")
    assert events == AHEAD
    # no chunk is screened before JAX's next chunk is under way: JAX never waits on the host's screen
    assert seen == [[], [4], [4, 4]] and screened == [4, 4, 2]


@pytest.mark.parametrize("activation", ["relu", "tanh"], ids=["local", "global"])
@pytest.mark.parametrize("large", [False, True], ids=["small-steps", "large-steps"])
def test_jax_compiles_its_step_while_manuals_first_chunk_runs(activation, large, monkeypatch):
    if large:
        _every_step_large(monkeypatch)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 4)
    p = random_problem((3, 6, 2), activations=activation, batch=7, seed=2).with_options(steps=10)
    jax.clear_caches()
    timings = Timings()
    with timings.compiling():
        assert all(r.ok for r in compare_trajectories(p, timings=timings).rows)
    assert timings.compile_aside_s > 0
    assert timings.compile_in("jax_run") < 0.1 * timings.compile_aside_s  # the calls found it compiled


# without threadpoolctl manual's BLAS cannot be held to the host's share: it runs apart from JAX, after it
APART = [
    ("manual", 4),
    ("JAX", 4), ("manual", 4),
    ("JAX", 4), ("compare in JAX", 4), ("manual", 2),
    ("JAX", 2), ("compare in JAX", 4),
    ("compare", 2),
]  # fmt: skip


@pytest.mark.parametrize("activation", ["relu", "tanh"], ids=["local", "global"])
def test_without_a_blas_limit_manual_runs_apart_from_jax(activation, monkeypatch):
    monkeypatch.setattr(blas_threads, "ThreadpoolController", None)
    assert _events(monkeypatch, activation) == APART


def test_manual_beside_jax_runs_on_the_hosts_share_of_blas_threads(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads_now():
        return threadpoolctl.ThreadpoolController().select(user_api="blas").info()[0]["num_threads"]

    before = blas_threads_now()
    seen = []
    train = trajectory._train_manual

    def counted(p, params, steps, history=None):
        seen.append(blas_threads_now())
        return train(p, params, steps, history)

    monkeypatch.setattr(trajectory, "_train_manual", counted)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 4)
    p = random_problem((3, 5, 2), activations="tanh", batch=4, seed=1).with_options(steps=10)
    assert all(r.ok for r in compare_trajectories(p).rows)
    assert seen == [blas_threads.host_share()] * 3  # every chunk: the first beside the compile, the others JAX
    assert blas_threads_now() == before  # as it was after


@pytest.mark.parametrize("large", [False, True], ids=["stacked", "step by step"])
def test_the_comparisons_run_on_one_blas_thread(large, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads_now():
        return threadpoolctl.ThreadpoolController().select(user_api="blas").info()[0]["num_threads"]

    before = blas_threads_now()
    seen = []
    for module in (trajectory, step_stats):  # the stacked rows' sums, and the step-by-step ones'
        sums = module.sum_squares

        def counted(a, sums=sums):
            seen.append(blas_threads_now())
            return sums(a)

        monkeypatch.setattr(module, "sum_squares", counted)
    if large:
        _every_step_large(monkeypatch)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 4)
    p = random_problem((3, 5, 2), activations="relu", batch=4, seed=1).with_options(steps=10)
    assert all(r.ok for r in compare_trajectories(p).rows)
    assert len(seen) >= 2 * 5 * 3  # two sums per row (5: the loss, w and b of 2 layers), 3 chunks
    assert set(seen) == {1}  # every chunk's, the last one's too (JAX done by then)
    assert blas_threads_now() == before  # as it was after


def test_sums_of_squares_use_blas_only_where_it_is_held_to_one_thread(monkeypatch):
    pytest.importorskip("threadpoolctl")
    a = np.random.default_rng(0).standard_normal((300, 70))  # above the size BLAS's dot runs threaded at
    want = float(np.sum(a * a))
    assert not blas_threads.single_threaded()
    with blas_threads.one_thread():
        assert blas_threads.single_threaded()
        with blas_threads.beside_jax():  # nested: still one thread at most, and one after
            assert blas_threads.single_threaded()
        assert blas_threads.single_threaded()
        by_dot = step_stats.sum_squares(a)
    assert not blas_threads.single_threaded()
    assert abs(by_dot - want) <= SUM_ORDER_REL * want
    assert abs(step_stats.sum_squares(a) - want) <= SUM_ORDER_REL * want

    def no_blas(*args):
        raise AssertionError("BLAS's dot outside a one-thread limit")

    monkeypatch.setattr(step_stats.np, "vdot", no_blas)
    step_stats.sum_squares(a)  # outside: einsum
    with pytest.raises(AssertionError, match="BLAS"), blas_threads.one_thread():
        step_stats.sum_squares(a)  # inside: BLAS's dot
    monkeypatch.setattr(blas_threads, "ThreadpoolController", None)  # no limit can be held: never BLAS's dot
    with blas_threads.one_thread():
        assert not blas_threads.single_threaded()
        step_stats.sum_squares(a)


def test_a_blas_already_below_the_hosts_share_is_left_there(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(blas_threads, "host_share", lambda cores=None: 64)
    controller = threadpoolctl.ThreadpoolController()
    before = [lib["num_threads"] for lib in controller.select(user_api="blas").info()]
    with blas_threads.beside_jax():
        inside = [lib["num_threads"] for lib in controller.select(user_api="blas").info()]
    assert inside == before  # a limit of 64 raises no library's thread count


def test_the_hosts_share_is_half_the_cores_and_at_least_one():
    assert [blas_threads.host_share(c) for c in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]


def _stacked_row(a, r, prev):
    acc = RowAccumulator()
    t = step_scale(r) + (np.zeros(len(r)) if prev is None else trajectory._step_max(r, prev))
    acc.add(a, r, t)
    return acc


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("local", [False, True], ids=["global", "local"])
def test_step_by_step_numbers_are_the_stacked_ones(dtype, local):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7, 3)).astype(dtype)
    r = (a + 1e-3 * rng.standard_normal(a.shape)).astype(dtype)
    prev = (a - 0.1).astype(dtype) if local else None
    r[2, 1, 1] = np.nan  # a NaN on JAX's side
    a[3, 0, 2] = np.inf  # an inf on manual's
    want = _stacked_row(a, r, prev)
    got = step_numbers(a, list(r), prev)
    tol = got.scale + (0.0 if prev is None else got.update)
    np.testing.assert_array_equal(got.max_diff, want.diffs[0])  # exact: the same differences and maxima
    np.testing.assert_array_equal(tol, want.tols[0])
    assert np.isnan(got.max_diff[2]) and np.isposinf(got.max_diff[3])
    assert np.isnan(got.sq_diff) and np.isnan(want.sq_diff)  # the NaN reaches the sums either way
    finite = [0, 1, 4]
    part = step_numbers(a[finite], list(r[finite]))
    whole = _stacked_row(a[finite], r[finite], None)
    assert abs(part.sq_diff - whole.sq_diff) <= SUM_ORDER_REL * whole.sq_diff
    assert abs(part.sq_ref - whole.sq_ref) <= SUM_ORDER_REL * whole.sq_ref


@pytest.mark.parametrize("large", [False, True], ids=["stacked", "step by step"])
@pytest.mark.parametrize("activation", ["relu", "tanh"], ids=["local", "global"])
def test_a_rows_relative_error_is_the_norm_of_its_differences_over_the_norm_of_jaxs_values(
    activation, large, monkeypatch
):
    if large:
        _every_step_large(monkeypatch)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 4)
    p = random_problem((3, 5, 2), activations=activation, batch=4, seed=1).with_options(steps=10)
    got = compare_trajectories(p, keep_history=True)
    wants = []
    for row in got.rows:
        name = "loss" if row.layer < 0 else f"{row.quantity}{row.layer}"
        mine, theirs = got.histories[f"{name}_manual"], got.histories[f"{name}_reference"]
        if row.layer >= 0:  # a parameter's history starts at the initial values, which are not judged
            mine, theirs = mine[1:], theirs[1:]
        wants.append(np.linalg.norm(mine - theirs) / np.linalg.norm(theirs))
        assert abs(row.rel_err - wants[-1]) <= SUM_ORDER_REL * wants[-1], name  # a row with no difference: 0
    assert sum(w > 0 for w in wants) >= 2  # the two sides round apart somewhere: ratios to hold, not only zeros


def test_float32_differences_are_taken_in_float64():
    a = np.array([[1e8]], np.float32)[None]  # float32's ulp at 1e8 is 8: 1e8 − 1 rounds back to 1e8 there
    r = [np.array([[1.0]], np.float32)]
    # 99,999,999 is exact in float64; a float32 subtraction gives 1e8, a whole 1 away
    assert abs(step_numbers(a, r).max_diff[0] - 99_999_999) < 0.5


def test_a_phase_inside_another_is_counted_once():
    t = Timings()
    start = time.perf_counter()
    with t.phase("jax_run"):
        with t.phase("manual_run"):
            time.sleep(0.05)
        with t.phase("comparisons"):
            time.sleep(0.02)
    wall = time.perf_counter() - start
    assert t.seconds["manual_run"] >= 0.05 and t.seconds["comparisons"] >= 0.02
    assert t.seconds["jax_run"] < 0.02  # the sleeps are the inner phases', not JAX's
    assert abs(sum(t.seconds.values()) - wall) <= 1e-3  # each second once: perf_counter's own few µs


def test_staging_buffers_are_aligned_and_the_next_chunk_has_its_own():
    s = Staging()
    s.turn()
    first = s.array((0, "w"), (4, 3, 5), np.float64)
    s.turn()
    second = s.array((0, "w"), (4, 3, 5), np.float64)
    s.turn()
    third = s.array((0, "w"), (4, 3, 5), np.float64)
    assert all(b.ctypes.data % ALIGN_BYTES == 0 for b in (first, second, third))
    assert not np.shares_memory(first, second)  # the chunk judged while the next one runs keeps its numbers
    assert np.shares_memory(first, third)  # reused two chunks later: no new memory per chunk


def _manuals_buffers(monkeypatch) -> list:
    """A list that holds, once the run is over, the buffers each of manual's chunks was recorded into."""
    wholes = []
    run_to = trajectory._ManualChunks.run_to

    def watched(self, count, beside_jax=False):
        run_to(self, count, beside_jax)
        wholes[:] = self.wholes

    monkeypatch.setattr(trajectory._ManualChunks, "run_to", watched)
    return wholes


def _plain_history(p):
    """manual.train's own history of the whole run, in one piece: what a chunked run must have judged."""
    common = dict(activations=p.activations, loss=p.loss, lr=p.lr, trainable=p.trainable, dtype=p.dtype)
    return manual.train(p.params, p.x, p.t, steps=p.steps, **common).params


@pytest.mark.parametrize("activation", ["relu", "tanh"], ids=["local", "global"])
@pytest.mark.parametrize("large", [False, True], ids=["small-steps", "large-steps"])
def test_manuals_reused_buffers_keep_every_chunk_judged_against_its_own(activation, large, monkeypatch):
    if large:
        _every_step_large(monkeypatch)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 3)  # 8 chunks: each set of buffers used two or three times
    wholes = _manuals_buffers(monkeypatch)
    p = random_problem((3, 6, 2), activations=activation, batch=7, seed=2).with_options(steps=23)
    got = compare_trajectories(p, keep_history=True)
    assert all(r.ok for r in got.rows) and got.steps_compared == 23
    assert len({id(w[0]["w"]) for w in wholes}) == trajectory.HISTORY_BUFFERS  # no new memory after the third
    want = _plain_history(p)
    for i, layer in enumerate(want):
        for key, v in layer.items():
            np.testing.assert_array_equal(got.histories[f"{key}{i}_manual"], v)  # kept: copies, not the buffers
            # JAX's one step from each of manual's parameters (local), or its own run (global), stays within
            # the rule's bound of manual's, step after step: nothing read a buffer written by a later chunk
            assert got.histories[f"{key}{i}_reference"].shape == v.shape


def test_the_local_rules_small_steps_read_manuals_buffers_in_place(monkeypatch):
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 4)
    copied = []
    fit = one_step.StepsFrom._fit
    monkeypatch.setattr(one_step.StepsFrom, "_fit", lambda self, v, k, key: copied.append(k) or fit(self, v, k, key))
    p = random_problem((3, 8, 2), activations="relu", batch=8, seed=0).with_options(steps=12)
    assert all(r.ok for r in compare_trajectories(p).rows)
    assert copied == []  # three vmapped chunks of 4, four arrays each: none copied into a staging buffer


def test_the_local_rules_large_steps_read_manuals_buffers_in_place(monkeypatch):
    _every_step_large(monkeypatch)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 4)
    fed, wholes = [], _manuals_buffers(monkeypatch)
    step_one = one_step._step_one

    def watched_step(params, *args, **kwargs):
        fed.append(np.asarray(params[0]["w"]))  # on the CPU, a view of what JAX holds
        return step_one(params, *args, **kwargs)

    monkeypatch.setattr(one_step, "_step_one", watched_step)
    p = random_problem((4, 8, 2), activations="relu", batch=8, seed=0).with_options(steps=12)
    assert all(r.ok for r in compare_trajectories(p).rows)
    # layer 0's w, 4 × 8 float64: 256 bytes an entry, so every entry of the aligned buffer is aligned too
    assert len(fed) == 12 and all(any(np.shares_memory(w, whole[0]["w"]) for whole in wholes) for w in fed)


def test_manual_records_into_the_history_it_is_given():
    p = random_problem((3, 4, 2), activations="tanh", batch=5, seed=0)
    common = dict(activations=p.activations, loss=p.loss, lr=p.lr)
    given = [{k: np.full((9, *v.shape), np.nan) for k, v in layer.items()} for layer in p.params]
    got = manual.train(p.params, p.x, p.t, steps=6, history=given, **common)
    want = manual.train(p.params, p.x, p.t, steps=6, **common)
    for g, w, h in zip(got.params, want.params, given):
        for key in ("w", "b"):
            assert np.shares_memory(g[key], h[key]) and g[key].shape == w[key].shape  # the first 7 entries
            np.testing.assert_array_equal(g[key], w[key])
            assert np.isnan(h[key][7:]).all()  # the rest untouched


@pytest.mark.parametrize(
    "history, message",
    [
        (lambda v: np.zeros((4, *v.shape)), "got (4, 3, 4) float64"),
        (lambda v: np.zeros((9, *v.shape), np.float32), "got (9, 3, 4) float32"),
        (lambda v: np.zeros((9, *v.shape[::-1])), "got (9, 4, 3) float64"),
    ],
    ids=["short", "dtype", "shape"],
)
def test_a_history_that_does_not_fit_is_refused_in_one_line(history, message):
    p = random_problem((3, 4, 2), activations="tanh", batch=5, seed=0)
    given = [{k: history(v) for k, v in layer.items()} for layer in p.params]
    want = "history layer 0 w: expected an array of at least (7, 3, 4) float64, " + message
    with pytest.raises(ValueError, match=re.escape(want)):
        manual.train(p.params, p.x, p.t, steps=6, history=given, activations="tanh")
    with pytest.raises(ValueError, match="record_params=False"):
        manual.train(p.params, p.x, p.t, steps=6, history=given, record_params=False, activations="tanh")
