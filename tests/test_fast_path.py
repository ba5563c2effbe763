"""The training path (manual.train: in place, reused buffers, no first-layer residual_x) computes
what the comparison path (gradients() then sgd_update) computes, and its sigmoid is the same function."""

import numpy as np
import pytest

from fcgrad import manual
from fcgrad.engine.problems import random_problem
from fcgrad.manual import network
from fcgrad.manual.activations import ACTIVATIONS, Activation, in_place, sigmoid, sigmoid_into

DTYPES = ["float64", "float32"]
# |sigmoid_into − sigmoid| in units of the dtype's eps: measured at most 1.0 eps over 300,000 points
# of [−40, 40] and N(0, 5²) in float64 and in float32; 2 leaves a factor 2 over that.
SIGMOID_FORMS_ABS_EPS = 2.0
# Training path against comparison path after a few steps, |Δ| relative to max(1, |value|) in eps:
# the same formulas with another sigmoid form and operation order; measured ≤ 0.004 eps (sigmoid) and
# exactly 0 (the others) over the cases below, float64 and float32, 5 steps; 1 eps leaves a factor 250.
PATHS_ABS_EPS = 1.0
STEPS = 5


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_into_equals_the_overflow_free_sigmoid_to_rounding(dtype):
    rng = np.random.default_rng(0)
    z = np.concatenate([np.linspace(-40, 40, 20001), 5 * rng.standard_normal(20000)]).astype(dtype)
    got = sigmoid_into(z, np.empty_like(z))
    assert got.dtype == np.dtype(dtype)
    err = np.max(np.abs(got.astype(np.float64) - sigmoid(z).astype(np.float64)))
    assert err <= SIGMOID_FORMS_ABS_EPS * np.finfo(dtype).eps, f"max |Δ| {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_into_does_not_overflow_at_z_of_plus_minus_1e4(dtype):
    z = np.array([-1e4, -710.0, -89.0, 0.0, 89.0, 710.0, 1e4], dtype=dtype)
    with np.errstate(all="raise"):  # an overflow would raise FloatingPointError here
        y = sigmoid_into(z, np.empty_like(z))
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    assert y[0] <= np.finfo(dtype).eps and 1 - y[-1] <= np.finfo(dtype).eps
    assert abs(y[3] - 0.5) <= np.finfo(dtype).eps


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_in_place_activation_form_equals_its_formula(name, dtype):
    act, forms = ACTIVATIONS[name], in_place(name)
    rng = np.random.default_rng(1)
    z = (3 * rng.standard_normal((5, 7))).astype(dtype)
    residual_y = rng.standard_normal((5, 7)).astype(dtype)
    y = act.forward(z)
    y_into = forms.forward_into(z, np.empty_like(z))
    eps = np.finfo(dtype).eps
    assert np.max(np.abs(y_into - y)) <= SIGMOID_FORMS_ABS_EPS * eps
    want = act.backward(residual_y, z, y)
    got = forms.backward_into(residual_y, z, y, np.empty_like(z))
    assert np.max(np.abs(got - want)) <= SIGMOID_FORMS_ABS_EPS * eps * max(1.0, float(np.max(np.abs(want))))


CASES = [
    ((2, 4, 1), "sigmoid", "square"),
    ((3, 5, 4, 2), "tanh", "cross-entropy"),
    ((4, 6, 3), "relu", "square"),
    ((3, 4, 2), "identity", "square"),
]
CASE_IDS = ["2-4-1-sigmoid-square", "3-5-4-2-tanh-cross-entropy", "4-6-3-relu-square", "3-4-2-identity-square"]


def _comparison_path(p, steps):
    """gradients() then sgd_update, step by step: new arrays every step."""
    params = p.params
    history = [params]
    for _ in range(steps):
        g = network.gradients(params, p.x, p.t, activations=p.activations, loss=p.loss)
        params = network.sgd_update(params, g.layers, p.lr, [{"w": True, "b": True}] * len(params))
        history.append(params)
    return history


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,activation,loss", CASES, ids=CASE_IDS)
def test_training_path_follows_the_comparison_path_at_every_step(sizes, activation, loss, dtype):
    p = random_problem(sizes, activations=activation, loss=loss, batch=5, seed=3).with_options(dtype=dtype)
    traj = manual.train(p.params, p.x, p.t, activations=p.activations, loss=p.loss, lr=p.lr, steps=STEPS)
    want = _comparison_path(p, STEPS)
    eps = np.finfo(dtype).eps
    for k in range(STEPS + 1):
        for i, layer in enumerate(want[k]):
            for key in ("w", "b"):
                got = traj.params[i][key][k]
                scale = max(1.0, float(np.max(np.abs(layer[key]))))
                err = float(np.max(np.abs(got.astype(np.float64) - layer[key])))
                assert err <= PATHS_ABS_EPS * eps * scale, f"step {k} layer {i} {key}: max |Δ| {err:.1e}"


def test_training_leaves_the_callers_parameters_untouched():
    p = random_problem((3, 4, 2), batch=5, seed=4)
    before = [{k: v.copy() for k, v in layer.items()} for layer in p.params]
    traj = manual.train(p.params, p.x, p.t, activations=p.activations, lr=p.lr, steps=3, record_params=False)
    for layer, old, new in zip(p.params, before, traj.final):
        for key in ("w", "b"):
            np.testing.assert_array_equal(layer[key], old[key])  # exact: never written, not recomputed
            assert not np.shares_memory(layer[key], new[key])


def test_recorded_history_holds_each_step_not_the_last_one_repeated():
    p = random_problem((3, 4, 2), batch=5, seed=4)
    traj = manual.train(p.params, p.x, p.t, activations=p.activations, lr=p.lr, steps=3)
    w = traj.params[0]["w"]  # (steps+1, in, out)
    np.testing.assert_array_equal(w[0], p.params[0]["w"])  # exact: entry 0 is a copy of the initial weights
    for k in range(3):
        assert np.max(np.abs(w[k + 1] - w[k])) > 0, f"entries {k} and {k + 1} are the same"
    np.testing.assert_array_equal(w[-1], traj.final[0]["w"])


def test_training_path_has_no_buffer_for_the_first_layers_residual_x():
    p = random_problem((3, 4, 4, 2), batch=5, seed=4)
    works, _ = network.train_works(p.params, 5)
    assert works[0].residual_x is None
    assert [w.residual_x.shape for w in works[1:]] == [(4, 5), (4, 5)]


def test_a_replaced_activation_runs_through_its_own_formulas_on_the_training_path(monkeypatch):
    """The in-place forms belong to the registry entry they compute: a replacement is used as written."""
    p = random_problem((3, 4, 2), batch=5, seed=4)
    genuine = manual.train(p.params, p.x, p.t, activations="sigmoid", lr=p.lr, steps=1).losses[0]
    halved = Activation("sigmoid", lambda z: sigmoid(z) / 2, lambda residual_y, z, y: residual_y * y * (1 - 2 * y))
    monkeypatch.setitem(ACTIVATIONS, "sigmoid", halved)
    assert in_place("sigmoid") is None
    got = manual.train(p.params, p.x, p.t, activations="sigmoid", lr=p.lr, steps=1).losses[0]
    want = network.gradients(p.params, p.x, p.t, activations="sigmoid").loss  # the comparison path, replaced too
    assert abs(got - want) <= PATHS_ABS_EPS * np.finfo(np.float64).eps * max(1.0, want)
    assert abs(got - genuine) > 1e-3 * genuine  # the replacement did change the run
