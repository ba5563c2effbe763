"""Deliberately wrong backward passes, each caught by the same comparison that passes the real one.

Each variant monkeypatches one mistake into ``manual`` (the JAX side is untouched) and the
test asserts exactly which (layer, quantity) rows fail, so the report points at the wrong
term. Problems use a batch of 5 (a dropped 1/N is invisible at N = 1) and hidden layers of
4 units (a bias gradient summed over every axis is right for a one-unit layer only). The
missing transposes need square layers to stay shape-valid: there they are a numerical
error, not a crash, which is the case a comparison must catch.
"""

import numpy as np
import pytest
from conftest import failing

from fcgrad import manual
from fcgrad.engine.problems import random_problem
from fcgrad.engine.run import compare_finite_differences, compare_gradients, compare_trajectories
from fcgrad.manual.activations import ACTIVATIONS, Activation, sigmoid
from fcgrad.manual.layer import QUANTITIES, LayerGrads
from fcgrad.manual.losses import LOSSES, Loss, square_forward

BATCH = 5
LR = 0.1  # the blog's learning rate, used by the "updated weights" mistake
TRAJ_STEPS = 20

PROBLEMS = {
    # (3, 4, 4, 1): two 4-unit layers and the blog's one-unit output layer
    "sigmoid": random_problem((3, 4, 4, 1), activations="sigmoid", batch=BATCH, seed=11, steps=TRAJ_STEPS),
    "tanh": random_problem((3, 4, 4, 1), activations="tanh", batch=BATCH, seed=11, steps=TRAJ_STEPS),
    # every layer square, so w and wᵀ (and x·δzᵀ and its transpose) have the same shape
    "square": random_problem((4, 4, 4), activations="sigmoid", batch=BATCH, seed=12, steps=TRAJ_STEPS),
}


def _activation_backward(activation, residual_y, cache):
    return ACTIVATIONS[activation].backward(residual_y, cache.z, cache.y)


# --- the mistakes, each a whole backward so the wrong line is visible ---------------------


def square_backward_without_1_over_n(y, t):
    return y - t  # forward divides by N, this gradient does not: N times too large


def backward_bias_summed_over_everything(residual_y, w, cache, activation):
    residual_z = _activation_backward(activation, residual_y, cache)  # (out, N)
    grad_w = cache.x @ residual_z.T  # (in, out)
    grad_b = np.full((w.shape[1], 1), np.sum(residual_z))  # one scalar for every unit, broadcast to (out, 1)
    residual_x = w @ residual_z  # (in, N)
    return LayerGrads(residual_z, grad_w, grad_b, residual_x)


def backward_residual_with_updated_w(residual_y, w, cache, activation):
    residual_z = _activation_backward(activation, residual_y, cache)  # (out, N)
    grad_w = cache.x @ residual_z.T  # (in, out)
    grad_b = residual_z.sum(axis=1, keepdims=True)  # (out, 1)
    w = w - LR * grad_w  # updates first...
    residual_x = w @ residual_z  # ...then sends down a residual through the new w
    return LayerGrads(residual_z, grad_w, grad_b, residual_x)


def backward_grad_w_transposed(residual_y, w, cache, activation):
    residual_z = _activation_backward(activation, residual_y, cache)  # (out, N)
    grad_w = residual_z @ cache.x.T  # (out, N)·(N, in) -> (out, in): wᵀ's shape, fits only when in = out
    grad_b = residual_z.sum(axis=1, keepdims=True)  # (out, 1)
    residual_x = w @ residual_z  # (in, N)
    return LayerGrads(residual_z, grad_w, grad_b, residual_x)


def backward_residual_x_through_w_transposed(residual_y, w, cache, activation):
    residual_z = _activation_backward(activation, residual_y, cache)  # (out, N)
    grad_w = cache.x @ residual_z.T  # (in, out)
    grad_b = residual_z.sum(axis=1, keepdims=True)  # (out, 1)
    residual_x = w.T @ residual_z  # (out, in)·(out, N): fits only when in = out
    return LayerGrads(residual_z, grad_w, grad_b, residual_x)


SIGMOID_DERIVATIVE_Y = Activation("sigmoid", sigmoid, lambda residual_y, z, y: residual_y * y)  # σ' taken as y
TANH_DERIVATIVE_1_MINUS_Y = Activation(
    "tanh", lambda z: np.tanh(z), lambda residual_y, z, y: residual_y * (1 - y)
)  # tanh' taken as 1 − y, not 1 − y²


# --- which rows each mistake must make fail (layers 0..top) --------------------------------


def _all_four(*layers):
    return {(i, q) for i in layers for q in QUANTITIES}


# variant id -> (problem, patch, gradient rows that must fail)
VARIANTS = {
    "correct-sigmoid": ("sigmoid", None, set()),
    "correct-tanh": ("tanh", None, set()),
    "correct-square-layers": ("square", None, set()),
    # residual_y is N times too large, and every quantity below it with it; the loss itself is right
    "loss-drops-1/N": (
        "sigmoid",
        ("loss", "square", Loss("square", square_forward, square_backward_without_1_over_n)),
        {(2, "residual_y")} | _all_four(0, 1, 2),
    ),
    # wrong for the two 4-unit layers only; for the one-unit output the sum over everything is the column sum
    "grad_b-summed-over-all-axes": (
        "sigmoid",
        ("layer", backward_bias_summed_over_everything),
        {(0, "grad_b"), (1, "grad_b")},
    ),
    # the top layer's own gradients are right; its residual_x is not, and so is everything below it
    "residual_x-with-updated-w": (
        "sigmoid",
        ("layer", backward_residual_with_updated_w),
        {(2, "residual_x")} | _all_four(0, 1),
    ),
    "grad_w-missing-transpose": ("square", ("layer", backward_grad_w_transposed), {(0, "grad_w"), (1, "grad_w")}),
    "residual_x-missing-transpose": (
        "square",
        ("layer", backward_residual_x_through_w_transposed),
        {(1, "residual_x")} | _all_four(0),
    ),
    # residual_z is wrong at the top already: every quantity of every layer, but not residual_y or the loss
    "sigmoid-derivative-y": ("sigmoid", ("activation", "sigmoid", SIGMOID_DERIVATIVE_Y), _all_four(0, 1, 2)),
    "tanh-derivative-1-minus-y": ("tanh", ("activation", "tanh", TANH_DERIVATIVE_1_MINUS_Y), _all_four(0, 1, 2)),
}


def _apply(monkeypatch, patch) -> None:
    if patch is None:
        return
    kind, *what = patch
    if kind == "loss":
        monkeypatch.setitem(LOSSES, what[0], what[1])  # Loss entries are frozen: replace the dict entry
    elif kind == "activation":
        monkeypatch.setitem(ACTIVATIONS, what[0], what[1])
    else:
        monkeypatch.setattr(manual.network, "fc_backward", what[0])  # network.backward looks it up here


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradient_comparison_fails_exactly_on_the_wrong_terms(variant, monkeypatch):
    problem, patch, expected = VARIANTS[variant]
    p = PROBLEMS[problem]
    assert failing(compare_gradients(p)) == set()  # the real code passes this very comparison
    _apply(monkeypatch, patch)
    assert failing(compare_gradients(p)) == expected


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_finite_differences_fail_on_the_same_terms(variant, monkeypatch):
    problem, patch, expected = VARIANTS[variant]
    p = PROBLEMS[problem]
    assert failing(compare_finite_differences(p)) == set()
    _apply(monkeypatch, patch)
    rows = compare_finite_differences(p)  # probes grad_w, grad_b of each layer and residual_x of layer 0
    assert failing(rows) == expected & {(r.layer, r.quantity) for r in rows}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_trajectory_comparison_catches_every_wrong_variant(variant, monkeypatch):
    problem, patch, expected = VARIANTS[variant]
    p = PROBLEMS[problem]
    _apply(monkeypatch, patch)
    rows = compare_trajectories(p).rows
    if not expected:
        assert failing(rows) == set()
    else:
        # after the first wrong step every parameter drifts from JAX's, and so does the loss
        assert failing(rows) == {(r.layer, r.quantity) for r in rows}
