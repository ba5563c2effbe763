"""float32 verdicts: correct runs pass under the local rule (no false alarm through ReLU kinks or
long cross-entropy runs), and every broken derivation still fails, at its first step, on the
parameters whose gradient is wrong. The full grid is ``python -m tests.float32_grid``."""

import pytest
from conftest import assert_all_ok, failing
from test_broken_derivations import PROBLEMS, VARIANTS, _apply

from fcgrad.engine.problems import random_problem
from fcgrad.engine.run import check
from fcgrad.engine.trajectory import compare_trajectories

# Four cases of tests/float32_grid.json, built as tests/float32_grid.py builds them. The two runs that once
# failed on correct code, for their full 10,000 steps (false alarms showed late: step 7420 for one); and two near
# the edge of stability (the grid's lr0.9edge: 0.9 of 2/sharpness, 1.4516 and 1.8944, rounded here), ReLU at
# depth 3 and tanh at depth 4, for 2,000 of the grid's 10,000 steps: the length of the runs the local rule's
# bounds were measured on (fcgrad/engine/tolerances.py). Each through check(), as `fcgrad check --dtype float32`.
SUBSET = {
    "8-32-32-4-relu-square-lr0.1": ((8, 32, 32, 4), "relu", "square", 32, 0.1, 0, 10_000),
    "8-32-32-4-sigmoid-cross-entropy-lr0.5": ((8, 32, 32, 4), "sigmoid", "cross-entropy", 8, 0.5, 0, 10_000),
    "8-32-32-4-relu-cross-entropy-lr0.9edge": ((8, 32, 32, 4), "relu", "cross-entropy", 32, 1.45, 3, 2_000),
    "6-16-16-8-3-tanh-cross-entropy-lr0.9edge": ((6, 16, 16, 8, 3), "tanh", "cross-entropy", 32, 1.89, 4, 2_000),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SUBSET))
def test_correct_float32_run_has_no_false_alarm(case):
    sizes, act, loss, batch, lr, seed, steps = SUBSET[case]
    p = random_problem(sizes, activations=act, loss=loss, batch=batch, seed=seed)
    p = p.with_options(lr=lr, steps=steps, dtype="float32")
    report = check(p, finite_differences=False)
    assert report.steps_compared == steps and report.divergence is None
    assert report.rule == "local" and {r.rule for r in report.trajectory} == {"local"}
    assert_all_ok(report.gradients)
    assert_all_ok(report.trajectory)


def _wrong_params(expected) -> set[tuple[int, str]]:
    """The parameter rows a wrong gradient moves: w of a wrong grad_w, b of a wrong grad_b."""
    return {(i, {"grad_w": "w", "grad_b": "b"}[q]) for i, q in expected if q in ("grad_w", "grad_b")}


BROKEN = [v for v in VARIANTS if VARIANTS[v][1] is not None]


@pytest.mark.parametrize("variant", BROKEN)
def test_broken_derivation_fails_in_float32_on_the_wrong_parameters_from_step_0(variant, monkeypatch):
    problem, patch, expected = VARIANTS[variant]
    p = PROBLEMS[problem].with_options(dtype="float32")
    _apply(monkeypatch, patch)
    rows = compare_trajectories(p).rows
    # a wrong term moves its own parameters at every step; a second-order one (the residual through the
    # updated w) can stay within float32 rounding on the layers further down, but never on all of them
    assert failing(rows) and failing(rows) <= _wrong_params(expected)
    assert {r.first_bad_step for r in rows if not r.ok} == {0}
