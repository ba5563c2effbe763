"""The fast paths compute what the plain ones do.

- manual's training path (manual.train: in place, reused buffers, no first-layer residual_x) computes
  what the comparison path (gradients() then sgd_update) computes, and its sigmoid is the same function;
- the check's JAX side for large steps (one compiled call per step, the ReLU kink bound screened for)
  judges every row as the small-step side (vmapped chunks, compiled loops, the bound at every step)
  does, and each compiles one function per run, whatever the length of the last chunk."""

import jax
import numpy as np
import pytest

import fcgrad.engine.one_step as one_step
import fcgrad.engine.trajectory as trajectory
from fcgrad import manual, reference
from fcgrad.engine.problems import random_problem
from fcgrad.engine.trajectory import compare_trajectories
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


# ---- the check's JAX side: large steps, the kink screen, one compilation per run ----------------------------


def _every_step_is_large(monkeypatch):
    """The paths of large steps (one call per step, the kink screen) on nets small enough for a test."""
    monkeypatch.setattr(one_step, "LARGE_STEP_FLOPS", 0)
    monkeypatch.setattr(trajectory, "LARGE_STEP_FLOPS", 0)


# (activation, loss, dtype) -> the rule and how the kink bound is had on the large-step path
RULE_CASES = [
    ("relu", "square", "float64"),  # local, screened
    ("tanh", "square", "float64"),  # global: the free run
    ("relu", "hinge", "float32"),  # local, the bound with every step (a kinked loss)
    ("sigmoid", "cross-entropy", "float32"),  # local, no kink
]
# Both paths' JAX parameters at every step, |Δ| relative to max(1, |value|): the same steps compiled apart
# (vmapped or looped, against one call per step) round differently; measured ≤ 4e-16 (float64) and ≤ 1.2e-7
# (float32) over these 30-step runs, and a wrong term differs by ≥ 1e-2.
SAME_STEPS_REL = {"float64": 1e-13, "float32": 1e-5}


@pytest.mark.parametrize("activation, loss, dtype", RULE_CASES, ids=["-".join(c) for c in RULE_CASES])
def test_large_steps_are_judged_as_small_steps_are(activation, loss, dtype, monkeypatch):
    p = random_problem((6, 9, 7, 4), activations=activation, loss=loss, batch=11, seed=3)
    p = p.with_options(steps=30, dtype=dtype)
    small = compare_trajectories(p, keep_history=True)
    _every_step_is_large(monkeypatch)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 8)  # several chunks, the last one shorter
    large = compare_trajectories(p, keep_history=True)
    assert [(r.layer, r.quantity, r.rule, r.ok, r.first_bad_step) for r in large.rows] == [
        (r.layer, r.quantity, r.rule, r.ok, r.first_bad_step) for r in small.rows
    ]
    assert all(r.ok for r in large.rows)
    for key, want in small.histories.items():
        if key.endswith("_reference"):
            got = large.histories[key].astype(np.float64)
            scale = np.maximum(1.0, np.abs(want))
            assert np.max(np.abs(got - want) / scale) <= SAME_STEPS_REL[dtype], key


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_planted_step_fails_at_that_step_on_the_large_step_path(activation, monkeypatch):
    _every_step_is_large(monkeypatch)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 8)
    p = random_problem((6, 9, 7, 4), activations=activation, batch=11, seed=3).with_options(steps=30)
    real = manual.network.run_steps
    calls = {"n": 0}

    def run_steps(step, params, steps, **kw):
        def planted(q):
            value, new = step(q)
            if calls["n"] == 19:  # mid-run, inside the third chunk
                new = [dict(layer) for layer in new]
                new[1]["w"] = new[1]["w"] + 1e-9  # every entry of one array, as a wrong term would
            calls["n"] += 1
            return value, new

        return real(planted, params, steps, **kw)

    monkeypatch.setattr(manual.network, "run_steps", run_steps)
    rows = {(r.layer, r.quantity): r for r in compare_trajectories(p).rows}
    assert not rows[(1, "w")].ok and rows[(1, "w")].first_bad_step == 19


def _kink_bounds_and_linear_parts(p, stacked):
    """Per step j of ``stacked``: the exact kink bound (one_step._kink_bound) and every layer's z, as NumPy."""
    bounds, zs = [], []
    kink_bound = jax.jit(one_step._kink_bound, static_argnums=(3, 4))  # compiled once, not op by op at every step
    linear_parts = jax.jit(one_step._linear_parts, static_argnums=2)
    with reference.x64_for(p.dtype):
        _, x, t = reference.as_jax(p.params, p.x, p.t, p.dtype)
        for j in range(len(stacked[0]["w"])):
            params = [{k: jax.numpy.asarray(v[j]) for k, v in layer.items()} for layer in stacked]
            bound = kink_bound(params, x, t, tuple(p.activations), p.loss)
            bounds.append(max(float(v) for layer in bound for v in layer.values()))
            zs.append([np.asarray(z) for z in linear_parts(params, x, tuple(p.activations))])
    return np.array(bounds), [np.stack(layer_zs) for layer_zs in zip(*zs)]


def _relu_history(steps: int):
    p = random_problem((6, 9, 7, 4), activations="relu", batch=11, seed=3)
    m = manual.train(p.params, p.x, p.t, activations=p.activations, loss=p.loss, lr=p.lr, steps=steps)
    return p, [{k: v[:steps].copy() for k, v in layer.items()} for layer in m.params]


def test_a_step_the_kink_screen_clears_has_a_bound_of_exactly_zero():
    p, stacked = _relu_history(40)
    bounds, zs = _kink_bounds_and_linear_parts(p, stacked)
    flagged = one_step.may_flip(stacked, zs, p.x, p.activations, p.dtype)
    assert (~flagged).sum() >= 35, "the screen clears (almost) every step of a run far from its kinks"
    assert np.all(bounds[~flagged] == 0.0)  # exact: the bound of an unflagged step is not computed


def test_a_relu_z_planted_on_its_kink_or_a_nan_is_flagged():
    p, stacked = _relu_history(4)
    # step 1: layer 1's bias moved so that its first unit's z is 0 for the first sample, up to rounding
    a = np.maximum(0.0, stacked[0]["w"][1].T @ p.x + stacked[0]["b"][1])  # layer 1's input at step 1
    stacked[1]["b"][1, 0, 0] = -(stacked[1]["w"][1][:, 0] @ a[:, 0])
    stacked[2]["w"][3, 0, 0] = np.nan  # step 3: a NaN weight
    bounds, zs = _kink_bounds_and_linear_parts(p, stacked)
    flagged = one_step.may_flip(stacked, zs, p.x, p.activations, p.dtype)
    assert list(flagged) == [False, True, False, True]
    assert bounds[1] > 0  # the planted entry is within rounding of the kink: it may flip


def test_a_flagged_steps_bound_is_the_one_computed_with_every_step(monkeypatch):
    p, stacked = _relu_history(6)
    a = np.maximum(0.0, stacked[0]["w"][2].T @ p.x + stacked[0]["b"][2])
    stacked[1]["b"][2, 0, 0] = -(stacked[1]["w"][2][:, 0] @ a[:, 0])  # step 2 flagged, as above
    _every_step_is_large(monkeypatch)
    screened = one_step.StepsFrom(p, 6)
    assert screened.mode == one_step.SCREENED
    got = screened(stacked, 6)
    assert screened.bound_steps == 0  # the screen runs when the bounds are first read (the chunk judged)
    bounds = got.kink
    assert screened.bound_steps == 1
    monkeypatch.setattr(one_step, "bound_mode", lambda problem: one_step.EVERY_STEP)
    want = one_step.StepsFrom(p, 6)(stacked, 6)
    assert bounds[1]["w"][2] > 0 and bounds[0]["w"][2] > 0  # the flip's layer and the one below it
    for got_layer, want_layer in zip(bounds, want.kink):
        for key in ("w", "b"):
            np.testing.assert_allclose(got_layer[key], want_layer[key], rtol=SAME_STEPS_REL["float64"], atol=0)


def test_the_screen_of_each_step_bounds_the_first_layers_input_by_the_datas_largest_column(monkeypatch):
    p, stacked = _relu_history(3)
    _every_step_is_large(monkeypatch)  # one call per step: each step screened on its own
    given, real = [], one_step.may_flip

    def recorded(stacked, zs, x, activations, dtype, x_norm=None):
        given.append(one_step.input_norm(x) if x_norm is None else x_norm)
        return real(stacked, zs, x, activations, dtype, x_norm)

    monkeypatch.setattr(one_step, "may_flip", recorded)
    bounds = one_step.StepsFrom(p, 3)(stacked, 3).kink  # read: the chunk screened
    largest = np.linalg.norm(p.x, axis=0).max()  # max_n ‖x_:n‖
    assert len(given) == 3 and len(bounds) == len(p.params)
    for norm in given:
        np.testing.assert_allclose(norm, [largest], rtol=SAME_STEPS_REL["float64"], atol=0)


@pytest.mark.parametrize("large", [False, True], ids=["small-steps", "large-steps"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_each_path_compiles_one_step_function_per_run(activation, large, monkeypatch):
    if large:
        _every_step_is_large(monkeypatch)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 4)  # chunks of 4, 4 and 2: the last one shorter
    p = random_problem((6, 9, 7, 4), activations=activation, batch=11, seed=3).with_options(steps=10)
    compiled = {
        ("relu", False): one_step._many_steps,
        ("relu", True): one_step._step_one,
        ("tanh", False): reference.scan_train,
        ("tanh", True): reference.jit_step,
    }[(activation, large)]
    compiled.clear_cache()  # this function's compiled programs only: every other test's stay
    assert all(r.ok for r in compare_trajectories(p).rows)
    assert compiled._cache_size() == 1


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_short_runs_of_one_network_share_one_compiled_loop_at_the_next_power_of_two(activation):
    # 17 to 32 steps are compiled at 32: the extra steps are run and dropped, and every step compared is the run's
    p = random_problem((3, 5, 2), activations=activation, batch=4, seed=1)
    compiled = one_step._many_steps if activation == "relu" else reference.scan_train
    lengths = [trajectory.compiled_length(p, "global", s) for s in (1, 3, 17, 32, 33, 1024, 1025)]
    assert lengths == [1, 4, 32, 32, 64, 1024, 1025]  # above ROUNDED_LENGTH_STEPS, a chunk's own length
    compiled.clear_cache()
    for steps in (20, 25, 32):
        report = compare_trajectories(p.with_options(steps=steps))
        assert all(r.ok for r in report.rows) and report.steps_compared == steps
    assert compiled._cache_size() == 1


def test_inputs_reach_jax_without_a_conversion_program_compiled_per_shape():
    # jnp.asarray compiles a small program for each new shape when it converts (float64 NumPy to float32) or is
    # given no dtype; reference.to_jax converts with NumPy first, so nothing is compiled at any shape
    compiled = []

    def listen(event, duration, **kw):
        if event.endswith("backend_compile_duration"):
            compiled.append(kw.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        for width in (3, 4, 5):
            p = random_problem((2, width, 1), activations="tanh", batch=width + 1, seed=width)
            for dtype in ("float64", "float32"):
                with reference.x64_for(dtype):
                    params, x, t = reference.as_jax(p.params, p.x, p.t, dtype)
                assert x.dtype == np.dtype(dtype) and params[0]["w"].dtype == np.dtype(dtype)
                np.testing.assert_array_equal(np.asarray(x), p.x.astype(dtype))  # exact: IEEE rounding either way
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled == []
