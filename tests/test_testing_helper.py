"""fcgrad.testing.assert_backward_matches: passes on right backwards, names what is wrong in wrong ones.

The library's own layer is the first user: manual.fc_backward, wrapped as a user's backward,
must pass against JAX autodiff of an independent forward (reference.model's activations).
Planted mistakes must fail with a message naming the gradient, max |Δ|, rel and the worst index.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from fcgrad import manual
from fcgrad.manual.errors import FcgradError
from fcgrad.reference.model import ACTIVATIONS as JAX_ACTIVATIONS
from fcgrad.testing import BACKWARD_ABS_TOL, BACKWARD_REL_TOL, assert_backward_matches

# (in, out, N): one unit and one sample, a single output, a square layer (a dropped transpose keeps the shape)
LAYER_SHAPES = [(1, 1, 1), (3, 1, 4), (3, 3, 5), (4, 2, 6)]
LAYER_IDS = [f"{i}-{o}-{n}" for i, o, n in LAYER_SHAPES]
FC_SHAPES = {"x": (3, 5), "w": (3, 2), "b": (2, 1)}


def shapes_of(n_in, n_out, n):
    return {"x": (n_in, n), "w": (n_in, n_out), "b": (n_out, 1)}


def jax_forward(act):
    """The layer's forward in jax.numpy, written independently of manual/."""
    return lambda x, w, b: JAX_ACTIVATIONS[act](w.T @ x + b)


def manual_backward(act):
    """manual's own layer as a user backward: returns its LayerGrads (residual_z is an extra key)."""

    def backward(residual_y, x, w, b):
        _, cache = manual.fc_forward(x, w, b, act)
        return manual.fc_backward(residual_y, w, cache, act)

    return backward


def planted(act, change):
    """manual's backward with ``change(grads, x, w, b) -> dict`` applied to its result."""

    def backward(residual_y, x, w, b):
        grads = manual_backward(act)(residual_y, x, w, b)._asdict()
        return change(grads, residual_y=residual_y, x=x, w=w, b=b)

    return backward


@pytest.mark.parametrize("act", sorted(manual.activations.ACTIVATIONS))
@pytest.mark.parametrize("n_in, n_out, n", LAYER_SHAPES, ids=LAYER_IDS)
def test_manual_fc_backward_passes_the_helper(n_in, n_out, n, act):
    checks = assert_backward_matches(jax_forward(act), manual_backward(act), shapes_of(n_in, n_out, n))
    assert [c.name for c in checks] == ["residual_x", "grad_w", "grad_b"]
    assert [c.input for c in checks] == ["x", "w", "b"]
    assert all(c.ok and c.rel_err <= BACKWARD_REL_TOL for c in checks)


def test_one_array_api_forward_serves_both_sides():
    # manual.fc_forward is written against the array API: the helper differentiates it on JAX arrays
    forward = lambda x, w, b: manual.fc_forward(x, w, b, "tanh")[0]
    assert_backward_matches(forward, manual_backward("tanh"), FC_SHAPES)


def test_checks_report_the_defaults_and_print_one_line_each():
    checks = assert_backward_matches(jax_forward("sigmoid"), manual_backward("sigmoid"), FC_SHAPES)
    assert {(c.rtol, c.atol) for c in checks} == {(BACKWARD_REL_TOL, BACKWARD_ABS_TOL)}
    assert str(checks[1]).startswith("grad_w") and str(checks[1]).endswith("ok")


def test_flipped_residual_x_names_residual_x_only():
    wrong = planted("sigmoid", lambda g, **_: {**g, "residual_x": -g["residual_x"]})
    with pytest.raises(AssertionError) as failure:
        assert_backward_matches(jax_forward("sigmoid"), wrong, FC_SHAPES)
    message = str(failure.value)
    assert "residual_x" in message and "MISMATCH" in message
    assert "max|Δ|" in message and "rel 2.0e+00" in message  # -r against r: ‖2r‖/‖r‖ = 2
    assert "rtol 1e-10" in message and "largest difference at index (" in message
    assert "grad_w" not in message and "grad_b" not in message


def test_dropped_activation_derivative_names_every_gradient():
    def no_derivative(g, residual_y, x, w, b):
        # residual_z = residual_y, as if the activation were the identity
        return {"residual_x": w @ residual_y, "grad_w": x @ residual_y.T, "grad_b": residual_y.sum(1, keepdims=True)}

    with pytest.raises(AssertionError) as failure:
        assert_backward_matches(jax_forward("tanh"), planted("tanh", no_derivative), FC_SHAPES)
    for name in ("residual_x", "grad_w", "grad_b"):
        assert f"{name}  " in str(failure.value)


def test_worst_index_and_both_values_are_shown():
    def nudge(g, **_):
        r = g["residual_x"].copy()
        r[2, 4] += 0.5
        return {**g, "residual_x": r}

    with pytest.raises(AssertionError, match=r"residual_x +max\|Δ\| 5\.0e-01") as failure:
        assert_backward_matches(jax_forward("relu"), planted("relu", nudge), FC_SHAPES)
    line = str(failure.value).splitlines()[-1]
    assert "largest difference at index (2, 4)" in line
    manual_value, jax_value = (float(s.split(",")[0]) for s in (line.split("manual ")[1], line.split("JAX ")[1]))
    assert abs(manual_value - jax_value - 0.5) <= 1e-8  # both printed to 10 significant digits


def test_transposed_grad_w_of_a_square_layer_is_a_value_mismatch():
    wrong = planted("identity", lambda g, **_: {**g, "grad_w": g["grad_w"].T})
    with pytest.raises(AssertionError, match=r"grad_w +max\|Δ\|"):
        assert_backward_matches(jax_forward("identity"), wrong, shapes_of(3, 3, 5))


def test_scalar_grad_b_is_a_shape_error():
    # the blog code's np.sum(residual_z) over all axes: one number for the whole layer
    wrong = planted("sigmoid", lambda g, **_: {**g, "grad_b": np.sum(g["residual_z"])})
    with pytest.raises(AssertionError, match=r"grad_b \(∂L/∂b\): expected shape \(2, 1\) \(the shape of b\), got \(\)"):
        assert_backward_matches(jax_forward("sigmoid"), wrong, FC_SHAPES)


def test_missing_gradient_lists_what_came():
    wrong = planted("sigmoid", lambda g, **_: {"residual_x": g["residual_x"], "grad_w": g["grad_w"]})
    with pytest.raises(AssertionError, match=r"grad_b \(∂L/∂b\): missing .* returned \['grad_w', 'residual_x'\]"):
        assert_backward_matches(jax_forward("sigmoid"), wrong, FC_SHAPES)


def test_nan_in_a_gradient_is_named_with_its_index():
    def nan_at(g, **_):
        w = g["grad_w"].copy()
        w[1, 0] = np.nan
        return {**g, "grad_w": w}

    with pytest.raises(AssertionError, match=r"grad_w \(∂L/∂w\): .*not finite: nan at index \(1, 0\)"):
        assert_backward_matches(jax_forward("tanh"), planted("tanh", nan_at), FC_SHAPES)


def test_wrt_chooses_names_and_which_inputs_are_checked():
    def backward(dy, x, w, b):
        g = manual_backward("tanh")(dy, x, w, b)
        return {"dW": g.grad_w, "dx": g.residual_x}

    checks = assert_backward_matches(
        jax_forward("tanh"), backward, FC_SHAPES, wrt={"dx": "x", "dW": "w"}, upstream="dy"
    )
    assert [(c.name, c.input) for c in checks] == [("dx", "x"), ("dW", "w")]


def test_transform_keeps_inputs_in_the_forward_domain():
    forward = lambda v: jnp.sqrt(v)
    backward = lambda residual_y, v: {"grad_v": residual_y / (2 * np.sqrt(v))}  # (3, 4) ⊙ (3, 4) -> (3, 4)
    with pytest.raises(FcgradError, match=r"forward: its output y is not finite .* transform="):
        assert_backward_matches(forward, backward, {"v": (3, 4)})
    assert_backward_matches(forward, backward, {"v": (3, 4)}, transform={"v": np.exp})


def test_every_trial_draws_new_inputs():
    # a backward right only for the first trial's inputs is caught by the second
    first = {}

    def backward(residual_y, x, w, b):
        first.setdefault("x", x)
        return manual_backward("identity")(residual_y, first["x"], w, b)

    with pytest.raises(AssertionError, match=r"trial 1, seed 8"):
        assert_backward_matches(jax_forward("identity"), backward, FC_SHAPES, seed=7)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"shapes": {}}, r"shapes: expected a dict"),
        ({"shapes": {"x": (3, 0)}}, r"shapes\['x'\]: expected a tuple of positive integers, got \(3, 0\)"),
        ({"wrt": {"grad_v": "v"}}, r"wrt: \{'grad_v': 'v'\} name inputs that are not in shapes"),
        ({"transform": {"v": np.exp}}, r"transform: \['v'\] are not inputs"),
        ({"upstream": "x"}, r"upstream: 'x' is also an input name"),
        ({"n_trials": 0}, r"n_trials: expected a positive integer, got 0"),
    ],
    ids=["empty-shapes", "zero-width", "unknown-wrt", "unknown-transform", "upstream-clash", "no-trials"],
)
def test_bad_calls_raise_fcgrad_error(kwargs, expected):
    call = {"shapes": FC_SHAPES, **kwargs}
    with pytest.raises(FcgradError, match=expected):
        assert_backward_matches(jax_forward("tanh"), manual_backward("tanh"), **call)


def test_float32_forward_is_refused():
    forward = lambda x, w, b: jax_forward("tanh")(x, w, b).astype(jnp.float32)
    with pytest.raises(FcgradError, match=r"expected a float64 output .* got float32"):
        assert_backward_matches(forward, manual_backward("tanh"), FC_SHAPES)


def test_backward_returning_a_list_is_refused():
    backward = lambda residual_y, x, w, b: list(manual_backward("tanh")(residual_y, x, w, b))
    with pytest.raises(AssertionError, match=r"backward: expected a dict of named gradients .* got list"):
        assert_backward_matches(jax_forward("tanh"), backward, FC_SHAPES)


def test_backward_with_other_argument_names_is_refused_before_any_work():
    backward = lambda dout, x, w, b: manual_backward("tanh")(dout, x, w, b)
    expected = r"backward: expected it to take the keywords \['residual_y', 'x', 'w', 'b'\].* pass upstream="
    with pytest.raises(FcgradError, match=expected):
        assert_backward_matches(jax_forward("tanh"), backward, FC_SHAPES)
    assert_backward_matches(jax_forward("tanh"), backward, FC_SHAPES, upstream="dout")


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1e-6", None, True])
def test_a_bad_tolerance_is_refused(name, bad):
    with pytest.raises(FcgradError, match=name):
        assert_backward_matches(jax_forward("tanh"), manual_backward("tanh"), FC_SHAPES, **{name: bad})


def test_a_backward_that_ignores_residual_y_fails():
    # right for an upstream gradient of all ones, wrong for the random, non-uniform one assert_backward_matches draws
    def ignores(residual_y, x, w, b):
        return manual_backward("sigmoid")(np.ones_like(residual_y), x, w, b)

    with pytest.raises(AssertionError, match="residual_x.*MISMATCH"):
        assert_backward_matches(jax_forward("sigmoid"), ignores, FC_SHAPES)


def test_a_float32_backward_is_compared_at_the_float32_tolerance_and_says_so():
    def float32_backward(residual_y, x, w, b):
        return {k: v.astype(np.float32) for k, v in manual_backward("tanh")(residual_y, x, w, b)._asdict().items()}

    checks = assert_backward_matches(jax_forward("tanh"), float32_backward, FC_SHAPES)
    assert all(c.ok and c.rtol == 1e-4 and "float32" in c.note for c in checks)
    assert "float32 tolerance" in str(checks[0])


def test_a_wrong_float32_backward_still_fails():
    def wrong(residual_y, x, w, b):
        g = manual_backward("tanh")(residual_y, x, w, b)._asdict()
        return {k: (2 * v if k == "grad_b" else v).astype(np.float32) for k, v in g.items()}

    with pytest.raises(AssertionError, match="grad_b.*MISMATCH"):
        assert_backward_matches(jax_forward("tanh"), wrong, FC_SHAPES)


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_a_forward_whose_output_is_not_finite_fails(bad):
    forward = lambda x, w, b: jnp.where(x[:1] > 0, bad, 0.0) * 0 + w.T @ x + b * bad  # noqa: E731
    with pytest.raises(FcgradError, match="forward: its output y is not finite"):
        assert_backward_matches(forward, manual_backward("identity"), FC_SHAPES)


def test_a_forward_written_in_numpy_gets_one_clear_error():
    forward = lambda x, w, b: np.tanh(w.T @ x + b)  # noqa: E731  NumPy cannot take JAX's traced arrays
    with pytest.raises(FcgradError, match="must be written with jax.numpy") as failure:
        assert_backward_matches(forward, manual_backward("tanh"), FC_SHAPES)
    assert "\n" not in str(failure.value)


# --- what a user sees: the test, the message, none of fcgrad's own source -------------------------------------------

USER_TEST = """
import jax.numpy as jnp
import numpy as np

from fcgrad.testing import assert_backward_matches, assert_derivation_matches


def forward(x, w, b):
    return jnp.tanh(w.T @ x + b)


def backward(residual_y, x, w, b):
    residual_z = residual_y * (1 - np.tanh(w.T @ x + b))  # tanh' written as 1 - y
    return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(axis=1, keepdims=True)}


def test_my_layer():
    assert_backward_matches(forward, backward, {"x": (3, 5), "w": (3, 2), "b": (2, 1)})


def loss(tap, x, t, w):
    xp = x.__array_namespace__()
    z = tap("z", w.T @ x)
    return xp.sum((z - t) ** 2) / 2


def derivation(g, v):
    g["z"] = v.z - v.t
    g["w"] = v.x @ g["z"]  # the transpose forgotten: raises inside the user's backward


def test_my_derivation():
    rng = np.random.default_rng(0)
    assert_derivation_matches(loss, derivation, {"w": rng.standard_normal((3, 2))},
                              {"x": rng.standard_normal((3, 4)), "t": rng.standard_normal((2, 4))})
"""


def test_a_failing_user_test_shows_the_test_and_the_message_not_fcgrads_source(pytester):
    """The user's own pytest run of a file of theirs (in this process: pytest's ``pytester``)."""
    (pytester.path / "test_user.py").write_text(USER_TEST, encoding="utf-8")  # as written: its line numbers
    run = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "test_user.py")
    out = run.stdout.str() + run.stderr.str()
    assert run.ret == 1 and "2 failed" in out, out
    assert "assert_backward_matches(forward, backward," in out  # the user's own line
    assert "backward does not match JAX autodiff of forward" in out and "residual_x   max|Δ|" in out
    line = next(i for i, text in enumerate(USER_TEST.splitlines(), 1) if "the transpose forgotten" in text)
    assert (
        "backward does not match JAX term by term" in out and f"test_user.py:{line}: backward raised ValueError" in out
    )
    fcgrad_files = [text for text in out.splitlines() if "/fcgrad/" in text or "fcgrad\\" in text]
    assert not fcgrad_files, "\n".join(fcgrad_files)
    assert "raise AssertionError" not in out and "def assert_backward_matches" not in out


@pytest.mark.parametrize("name", ["assert_backward_matches", "assert_backward_matches_fd", "assert_derivation_matches"])
def test_help_of_every_public_helper_documents_its_arguments_and_an_example(name):
    import inspect

    import fcgrad.testing

    helper = getattr(fcgrad.testing, name)
    doc = inspect.getdoc(helper)
    assert "Arguments:" in doc and "Example" in doc, name
    arguments = [p for p in inspect.signature(helper).parameters if p != "options"]
    assert [a for a in arguments if f"{a}:" not in doc and f"{a}," not in doc] == [], name
