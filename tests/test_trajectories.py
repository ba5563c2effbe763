"""Training runs, manual vs JAX: the loss and every parameter at every step.

The examples run their full 10,000 steps (about a second each); the grid runs 50 steps
over sizes, activations and losses, long enough for a wrong update to compound.
"""

from dataclasses import replace

import numpy as np
import pytest
from conftest import assert_all_ok

from fcgrad import manual, reference
from fcgrad.engine.problems import example, mazur_example, random_problem
from fcgrad.engine.run import compare_trajectories

SHORT_STEPS = 50


def _compared(p) -> set[tuple[int, str]]:
    return {(-1, "loss")} | {(i, k) for i in range(len(p.params)) for k in ("w", "b")}


@pytest.mark.parametrize("name", ["and", "xor", "mazur"])
def test_example_agrees_with_jax_at_every_one_of_10000_steps(name, example_check):
    report = example_check(name)  # the session's one run of the example (conftest)
    p = report.problem
    assert p.steps == report.steps_compared == 10_000  # the blog's run length, every step compared
    rows = report.trajectory
    assert {(r.layer, r.quantity) for r in rows} == _compared(p)
    # the float64 bound scaled by max(1, max|param|), far below the float32 one
    assert {r.rule for r in rows} == {"global"}
    assert min(r.tol for r in rows) == pytest.approx(1e-12, rel=1e-9)  # |L| < 1: the loss row's bound unscaled
    assert_all_ok(rows)


def test_the_blogs_and_example_learns_and(example_check):
    # the run compared above also does what the blog's does: it learns t = [0, 0, 0, 1]
    report = example_check("and")
    p, h = report.problem, report.histories
    final = [{k: h[f"{k}{i}_manual"][-1] for k in ("w", "b")} for i in range(len(p.params))]
    y, _ = manual.forward(final, p.x, p.activations)
    assert np.array_equal(y > 0.5, p.t > 0.5)  # booleans: every sample on the right side of 0.5
    assert h["loss_manual"][-1] < h["loss_manual"][0] / 10


SHORT_GRID = [
    ((2, 4, 1), "sigmoid", "square", 4),
    ((3, 1), "tanh", "square", 1),
    ((3, 2), "identity", "cross-entropy", 5),
    ((3, 1, 2), "relu", "square", 5),
    ((4, 6, 3), "tanh", "cross-entropy", 1),
    ((3, 7, 5, 2), "relu", "cross-entropy", 8),
    ((3, 7, 5, 2), ("tanh", "sigmoid", "identity"), "square", 8),
    ((2, 5, 4, 3, 2), "sigmoid", "square", 6),
    ((2, 5, 4, 3, 2), "identity", "square", 6),
]


def _short_id(case) -> str:
    sizes, act, loss, batch = case
    acts = act if isinstance(act, str) else ",".join(act)
    return f"{'-'.join(map(str, sizes))}-{acts}-{loss}-N{batch}"


@pytest.mark.parametrize("case", SHORT_GRID, ids=[_short_id(c) for c in SHORT_GRID])
def test_short_run_agrees_with_jax_at_every_step(case):
    sizes, act, loss, batch = case
    p = random_problem(sizes, activations=act, loss=loss, batch=batch, seed=7, lr=0.1, steps=SHORT_STEPS)
    c = compare_trajectories(p, keep_history=True)
    rows, histories = c.rows, c.histories
    assert {(r.layer, r.quantity) for r in rows} == _compared(p)
    assert histories["loss_manual"].shape == histories["maxdiff_loss"].shape == (SHORT_STEPS,)
    assert histories["maxdiff_w0"].shape == (SHORT_STEPS,)  # per step: max|Δ| of the parameters it produced
    assert histories["w0_manual"].shape == (SHORT_STEPS + 1, *p.params[0]["w"].shape)
    assert_all_ok(rows)


def test_float32_run_agrees_under_the_local_rule():
    p = example("and").with_options(steps=1_000, dtype="float32")
    rows, final = compare_trajectories(p)[:2]
    assert final[0]["w"].dtype == np.float32
    assert {r.rule for r in rows} == {"local"}
    assert_all_ok(rows)


def _both_runs(p):
    common = dict(activations=p.activations, loss=p.loss, lr=p.lr, steps=p.steps, trainable=p.trainable)
    return manual.train(p.params, p.x, p.t, **common), reference.train(p.params, p.x, p.t, **common)


def test_mazur_biases_stay_frozen_on_both_sides():
    p = mazur_example().with_options(steps=SHORT_STEPS)
    m, r = _both_runs(p)
    for i, init in enumerate(p.params):
        # np.array_equal, not a tolerance: a frozen bias is never touched by arithmetic,
        # so every recorded entry must be the very same numbers as the initial one
        assert all(np.array_equal(b, init["b"]) for b in m.params[i]["b"]), f"manual moved layer {i} b"
        assert all(np.array_equal(b, init["b"]) for b in r["params"][i]["b"]), f"JAX moved layer {i} b"
        assert not np.array_equal(m.params[i]["w"][-1], init["w"])  # the weights did train
    assert_all_ok(compare_trajectories(p)[0])


def test_mixed_trainable_masks_agree_and_freeze_exactly():
    frozen = [{"w": False, "b": True}, {"w": True, "b": False}, {"w": True, "b": True}]
    p = replace(random_problem((3, 4, 4, 2), activations="tanh", batch=5, steps=SHORT_STEPS), trainable=frozen)
    m, r = _both_runs(p)
    for i, mask in enumerate(frozen):
        for key in ("w", "b"):
            if not mask[key]:
                # exact equality is right here: an untrained array is copied, never computed
                assert np.array_equal(m.params[i][key][-1], p.params[i][key]), f"manual moved layer {i} {key}"
                assert np.array_equal(r["params"][i][key][-1], p.params[i][key]), f"JAX moved layer {i} {key}"
    assert_all_ok(compare_trajectories(p)[0])


def test_trajectory_layout_entry_0_is_the_initial_parameters():
    p = random_problem((3, 4, 2), batch=5, steps=7)
    m, r = _both_runs(p)
    assert m.losses.shape == r["losses"].shape == (7,)
    for i, init in enumerate(p.params):
        for key in ("w", "b"):
            assert m.params[i][key].shape == r["params"][i][key].shape == (8, *init[key].shape)
            # entry 0 is a copy of the input, untouched by arithmetic: exact equality holds
            assert np.array_equal(m.params[i][key][0], init[key])
            assert np.array_equal(m.params[i][key][-1], m.final[i][key])
