"""float32 verdicts: correct runs pass under the local rule (no false alarm through ReLU kinks or
long cross-entropy runs), and every broken derivation still fails, at its first step, on the
parameters whose gradient is wrong. The full grid is ``python -m tests.float32_grid``."""

import pytest
from conftest import assert_all_ok, failing
from test_broken_derivations import PROBLEMS, VARIANTS, _apply

from fcgrad.engine.problems import random_problem
from fcgrad.engine.run import check
from fcgrad.engine.trajectory import compare_trajectories

# representative grid cases (tests/float32_grid.json has all of them): the two runs that once failed
# on correct code, ReLU at depth 3 near the edge of stability, and tanh at depth 4
SUBSET = {
    "8-32-32-4-relu-square-lr0.1": ((8, 32, 32, 4), "relu", "square", 32, 0.1, 1),
    "8-32-32-4-relu-cross-entropy-lr1.45": ((8, 32, 32, 4), "relu", "cross-entropy", 32, 1.45, 3),
    "6-16-16-8-3-tanh-cross-entropy-lr1.89": ((6, 16, 16, 8, 3), "tanh", "cross-entropy", 32, 1.89, 4),
}
SUBSET_STEPS = 500


@pytest.mark.parametrize("case", list(SUBSET))
def test_correct_float32_run_has_no_false_alarm(case):
    sizes, act, loss, batch, lr, seed = SUBSET[case]
    p = random_problem(sizes, activations=act, loss=loss, batch=batch, seed=seed)
    p = p.with_options(lr=lr, steps=SUBSET_STEPS, dtype="float32")
    rows = compare_trajectories(p).rows
    assert {r.rule for r in rows} == {"local"}
    assert_all_ok(rows)


def test_the_cli_float32_relu_run_is_ok():
    p = random_problem((8, 32, 32, 4), activations="relu", batch=32).with_options(dtype="float32")
    report = check(p, finite_differences=False)
    assert report.ok and report.rule == "local"


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
