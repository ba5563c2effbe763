"""float64 networks with a ReLU are judged step by step (the local rule): rounding that flips an entry
across the kink cannot build up into a false verdict over 10,000 steps, while a wrong term still fails
from the first step. Networks without a kink keep the tighter global rule."""

import pytest
from conftest import assert_all_ok, failing
from test_broken_derivations import (
    _apply,
    backward_bias_summed_over_everything,
    backward_grad_w_transposed,
    backward_residual_with_updated_w,
    backward_residual_x_through_w_transposed,
    square_backward_without_1_over_n,
)

from crosscheck.problems import random_problem
from crosscheck.run import check
from crosscheck.trajectory import compare_trajectories
from manual.activations import Activation
from manual.losses import Loss, square_forward

# relu' that drops the upstream: the local derivative alone, as if residual_y were all ones
RELU_DROPS_UPSTREAM = Activation("relu", lambda z: z * (z > 0), lambda residual_y, z, y: (z > 0) * 1.0)

BROKEN = {
    "loss-drops-1/N": ("loss", "square", Loss("square", square_forward, square_backward_without_1_over_n)),
    "grad_b-summed-over-all-axes": ("layer", backward_bias_summed_over_everything),
    "residual_x-with-updated-w": ("layer", backward_residual_with_updated_w),
    "grad_w-missing-transpose": ("layer", backward_grad_w_transposed),
    "residual_x-missing-transpose": ("layer", backward_residual_x_through_w_transposed),
    "relu-derivative-drops-upstream": ("activation", "relu", RELU_DROPS_UPSTREAM),
}


def _relu_problem(steps: int):
    return random_problem((4, 4, 4, 4), activations="relu", batch=8, seed=2).with_options(steps=steps)


def test_the_relu_run_that_once_raised_a_false_alarm_passes_all_10000_steps():
    # the global rule failed it at step 7420: 1.3e-12 against 1e-12, rounding amplified through the kinks
    p = random_problem((8, 32, 32, 4), activations="relu", batch=32).with_options(steps=10_000)
    report = check(p, finite_differences=False)
    assert report.rule == "local"
    assert_all_ok(report.trajectory)


def test_networks_without_a_kink_keep_the_global_rule():
    p = random_problem((3, 5, 2), activations="tanh", batch=4).with_options(steps=5)
    assert {r.rule for r in compare_trajectories(p).rows} == {"global"}


def test_one_relu_layer_is_enough_for_the_local_rule():
    p = random_problem((3, 5, 2), activations=["relu", "sigmoid"], batch=4).with_options(steps=5)
    assert {r.rule for r in compare_trajectories(p).rows} == {"local"}


@pytest.mark.parametrize("variant", list(BROKEN))
def test_a_broken_derivation_fails_in_a_float64_relu_net_from_the_first_step(variant, monkeypatch):
    p = _relu_problem(steps=20)
    _apply(monkeypatch, BROKEN[variant])
    rows = compare_trajectories(p).rows
    assert failing(rows), f"{variant} passed"
    assert min(r.first_bad_step for r in rows if not r.ok) == 0


@pytest.mark.parametrize("offset, passes", [(1e-9, False), (1e-11, False), (1e-16, True)])
def test_float64_local_bound_is_pinned(offset, passes, monkeypatch):
    # a ReLU net's step-10 parameters moved by offset: the local rule's float64 bound sits between
    from test_checker import _planted

    p = _relu_problem(steps=20)
    _planted(monkeypatch, 10, param=offset)
    rows = compare_trajectories(p).rows
    assert {r.rule for r in rows} == {"local"}
    assert all(r.ok for r in rows) is passes
    if not passes:
        assert {r.first_bad_step for r in rows if not r.ok} == {10}
