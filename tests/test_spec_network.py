"""Spec networks: the spec's grammar, gradients against JAX and finite differences, mini-batches,
and the every-step check with optimizers, batch norm, layer norm, dropout and L2 on mini-batches."""

import numpy as np
import pytest
from conftest import assert_all_ok

from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import errors
from fcgrad.engine.toolbox import check_toolbox, compare_spec_gradients, make_problem
from fcgrad.manual import batches, network
from fcgrad.manual.batchnorm import batchnorm_backward
from fcgrad.manual.errors import DivergenceError, FcgradError
from fcgrad.manual.finite_diff import FD_STEP
from fcgrad.manual.optimizers import make_optimizer
from fcgrad.manual.spec import LayerSpec, format_spec, init_running, init_spec_params, parse_spec


def test_spec_text_reads_widths_activations_norms_and_dropout():
    spec = parse_spec("64-32:relu:bn:drop0.1-16:ln:tanh-10")
    assert spec == (
        LayerSpec(64, 32, "relu", "batch", 0.1),
        LayerSpec(32, 16, "tanh", "layer", 0.0),
        LayerSpec(16, 10, "identity", "", 0.0),  # the output layer defaults to identity (logits)
    )
    assert parse_spec(format_spec(spec)) == spec
    assert parse_spec("3-5-2")[0].activation == "relu"  # hidden layers default to relu


@pytest.mark.parametrize(
    "text,expected",
    [
        ("64", "at least one layer"),
        ("x-3", "input width"),
        ("4-0", "positive integer width"),
        ("4-3:swish", "got 'swish'"),
        ("4-3:relu:tanh", "each once"),
        ("4-3:drop1.0", "[0, 1)"),
        ("4-3:bn:ln", "each once"),
    ],
)
def test_bad_spec_raises_one_clear_error(text, expected):
    with pytest.raises(FcgradError, match=expected.replace("[", r"\[").replace(")", r"\)")):
        parse_spec(text)


def test_batch_normalised_layers_have_no_bias_and_norms_have_gamma_beta():
    params = init_spec_params(parse_spec("4-5:bn-3:ln-2"))
    assert [sorted(p) for p in params] == [["beta", "gamma", "w"], ["b", "beta", "gamma", "w"], ["b", "w"]]
    assert [sorted(r) for r in init_running(parse_spec("4-5:bn-3:ln-2"))] == [["mean", "var"], [], []]


def _data(n_in, n_out, n, loss, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_in, n))  # (in, N)
    if loss in ("cross-entropy", "hinge"):
        t = np.eye(n_out)[:, rng.integers(0, n_out, n)]  # one-hot columns
    elif loss == "bce-logits":
        t = rng.uniform(0, 1, (n_out, n))
    else:
        t = rng.standard_normal((n_out, n))
    return x, t


GRADIENT_CASES = [
    ("3-5:tanh-2", "square", 0.0),
    ("3-5:relu:bn-4:sigmoid-2", "cross-entropy", 0.0),
    ("3-6:tanh:ln:drop0.3-2", "bce-logits", 0.01),
    ("4-6:relu:bn:drop0.5-5:tanh:ln-3", "hinge", 0.1),
    ("2-3:sigmoid:bn-1", "mae", 0.0),
]


@pytest.mark.parametrize("case", GRADIENT_CASES, ids=[f"{c[0]}-{c[1]}-l2{c[2]:g}" for c in GRADIENT_CASES])
def test_every_gradient_of_a_spec_network_matches_jax(case):
    text, loss, l2 = case
    spec = parse_spec(text)
    x, t = _data(spec[0].n_in, spec[-1].n_out, 9, loss)
    rows = compare_spec_gradients(make_problem(spec, x, t, loss=loss, l2=l2, seed=2))
    assert {r.quantity for r in rows} >= {"loss", "grad_w", "residual_x"}
    assert_all_ok(rows)


def test_a_planted_batchnorm_mistake_inside_a_network_fails_below_the_norm_only(monkeypatch):
    from fcgrad.manual.batchnorm import BatchNormGrads

    def without_mean_and_variance_paths(residual_y, cache):
        right = batchnorm_backward(residual_y, cache)
        return BatchNormGrads(cache.gamma * residual_y * cache.inv_std, right.grad_gamma, right.grad_beta)

    monkeypatch.setattr(network, "batchnorm_backward", without_mean_and_variance_paths)
    x, t = _data(3, 2, 9, "cross-entropy")
    rows = compare_spec_gradients(make_problem("3-5:tanh-4:relu:bn-2", x, t, seed=2))
    # layer 1's γ, β and the layer above are right; its w and everything below it are wrong
    assert {(r.layer, r.quantity) for r in rows if not r.ok} == {
        (1, "grad_w"),
        (0, "grad_w"),
        (0, "grad_b"),
        (0, "residual_x"),
    }


def test_spec_network_gradients_match_finite_differences():
    # smooth pieces only (tanh, sigmoid, norms, dropout with a fixed mask, L2): no kink to cross
    spec = parse_spec("3-5:tanh:bn:drop0.4-4:sigmoid:ln-2")
    x, t = _data(3, 2, 7, "cross-entropy")
    params = init_spec_params(spec, seed=4)
    running = init_running(spec)
    masks = batches.step_masks(spec, 7, np.random.default_rng(0))
    g = network.spec_loss_and_gradients(params, x, t, spec, "cross-entropy", masks, running, 0.05)
    for i, layer in enumerate(params):
        for key, arr in layer.items():
            fd = np.zeros_like(arr)
            for j in np.ndindex(*arr.shape):
                saved = arr[j]
                values = []
                for h in (FD_STEP, -FD_STEP):
                    arr[j] = saved + h
                    values.append(
                        network.spec_loss_and_gradients(params, x, t, spec, "cross-entropy", masks, running, 0.05).loss
                    )
                arr[j] = saved
                fd[j] = (values[0] - values[1]) / (2 * FD_STEP)
            max_abs, rel = errors(g.grads[i][key], fd)
            floor = tol.fd_noise_floor(g.loss, FD_STEP)
            assert rel <= tol.FD_REL_TOL or max_abs <= floor, (
                f"layer {i} grad_{key}: max|Δ| {max_abs:.1e} rel {rel:.1e}"
            )


def test_schedule_shuffles_each_epoch_into_batches_with_a_smaller_last_one():
    steps = batches.schedule(10, 4, 3, seed=5)
    assert [len(s) for s in steps] == [4, 4, 2] * 3
    epochs = [np.concatenate(steps[k : k + 3]) for k in (0, 3, 6)]
    assert all(np.array_equal(np.sort(e), np.arange(10)) for e in epochs)  # each epoch sees every sample once
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh order each epoch
    again = batches.schedule(10, 4, 3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(steps, again))  # seeded: the same batches every time
    assert [len(s) for s in batches.schedule(10, None, 2, seed=0)] == [10, 10]


@pytest.mark.parametrize(
    "kwargs,expected",
    [({"batch_size": 11}, "at most the 10"), ({"batch_size": 0}, "positive integer"), ({"epochs": 0}, "epochs")],
)
def test_bad_batches_raise_before_any_work(kwargs, expected):
    x, t = _data(3, 2, 10, "cross-entropy")
    with pytest.raises(FcgradError, match=expected):
        make_problem("3-4-2", x, t, **kwargs)


def test_a_diverging_run_stops_and_names_the_step():
    x, t = _data(3, 2, 10, "square")
    p = make_problem("3-4:relu-2", 100 * x, t, loss="square", optimizer=make_optimizer("sgd", 10.0), epochs=50)
    with pytest.raises(DivergenceError, match="diverged: the manual loss is .* at step") as info:
        check_toolbox(p)
    assert 0 < info.value.step < 50


def test_a_nan_on_the_jax_side_is_a_mismatch_not_a_pass(monkeypatch):
    from fcgrad.engine import toolbox

    real = toolbox.jit_spec_step

    def nan_params(*args, **kwargs):
        params, *rest = real(*args, **kwargs)
        return ([{**params[0], "w": params[0]["w"] * float("nan")}, *params[1:]], *rest)

    monkeypatch.setattr(toolbox, "jit_spec_step", nan_params)
    x, t = _data(3, 2, 10, "square")
    report = check_toolbox(make_problem("3-4:tanh-2", x, t, loss="square", optimizer="sgd", epochs=2))
    assert (0, "w") in {(r.layer, r.quantity) for r in report.failures()}


def test_bad_problem_inputs_raise_one_clear_error():
    x, t = _data(3, 2, 10, "square")
    with pytest.raises(FcgradError, match="one-hot"):
        make_problem("3-4-2", x, t, loss="hinge")
    with pytest.raises(FcgradError, match=r"expected shape \(3, N\)"):
        make_problem("3-4-2", x.T, t)
    with pytest.raises(FcgradError, match="expected a name or make_optimizer"):
        make_problem("3-4-2", x, t, loss="square", optimizer=0.1)
    with pytest.raises(FcgradError, match="expected keys"):
        make_problem("3-4:bn-2", x, t, loss="square", params=init_spec_params(parse_spec("3-4-2")))


CHECK_CASES = [  # 48 samples: batches of 16 divide them, batches of 10 leave a last one of 8
    ("5-8:relu:bn:drop0.2-6:tanh:ln-3", "cross-entropy", "adam", 16, 0.0),
    ("5-8:tanh:bn-3", "hinge", "nesterov", 10, 0.0),
    ("5-8:sigmoid:drop0.5-3", "bce-logits", "adamw", 16, 0.0),
    ("5-6:tanh:ln-3", "mae", "rmsprop", 16, 0.01),
]


@pytest.mark.parametrize("case", CHECK_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}-B{c[3]}" for c in CHECK_CASES])
def test_every_step_agrees_with_jax_and_optax_on_mini_batches(case):
    text, loss, opt, batch_size, l2 = case
    hyper = {"decay": 0.99} if opt == "rmsprop" else {}  # decay 0.9 amplifies rounding (docs/toolbox.md)
    x, t = _data(5, 3, 48, loss, seed=1)
    p = make_problem(
        text, x, t, loss=loss, optimizer=make_optimizer(opt, 0.01, **hyper), batch_size=batch_size, epochs=5, l2=l2
    )
    report = check_toolbox(p)
    assert report.steps == 5 * -(-48 // batch_size)
    quantities = {r.quantity for r in report.rows}
    assert ("running_mean" in quantities) == ("bn" in text)
    assert_all_ok(report.rows)


def test_float32_run_agrees_within_the_float32_tolerance():
    # measured max|Δ| 2.4e-7 over these 15 steps, 1.5e-6 over 300: well inside TRAJ_ABS_TOL_F32 (1e-4)
    x, t = _data(5, 3, 48, "cross-entropy", seed=1)
    p = make_problem(
        "5-8:relu:bn:drop0.2-3", x, t, optimizer=make_optimizer("adam", 0.01), batch_size=16, epochs=5, dtype="float32"
    )
    report = check_toolbox(p)
    assert report.params_manual[0]["w"].dtype == np.float32
    # the float32 bound, 1e-4 scaled by max(1, max|JAX|): the loss and the small moments get it unscaled
    assert min(r.tol for r in report.rows) == pytest.approx(1e-4, rel=1e-9)
    assert_all_ok(report.rows)
