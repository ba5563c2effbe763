"""The layer helper, wider: residual_z compared and named, the suspect line, and the finite-difference mode."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from fcgrad.manual.errors import FcgradError
from fcgrad.testing import assert_backward_matches, assert_backward_matches_fd

SHAPES = {"x": (3, 5), "w": (3, 4), "b": (4, 1)}


def sigmoid_forward(x, w, b):
    return 1 / (1 + jnp.exp(-(w.T @ x + b)))


def sigmoid_backward(residual_y, x, w, b, *, derivative=lambda y: y * (1 - y), report=None):
    """A sigmoid layer; ``report`` chooses what is returned as residual_z (default: the one used)."""
    y = 1 / (1 + np.exp(-(w.T @ x + b)))  # (out, N)
    residual_z = residual_y * derivative(y)  # (out, N)
    grads = {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(1, keepdims=True)}
    return {**grads, "residual_z": residual_z if report is None else report(residual_y, y)}


def test_a_correct_residual_z_passes():
    checks = assert_backward_matches(sigmoid_forward, sigmoid_backward, SHAPES)
    assert [c.name for c in checks] == ["residual_x", "grad_w", "grad_b"]


def test_a_wrong_residual_z_is_caught_and_named_even_when_the_gradients_are_right():
    def backward(residual_y, x, w, b):
        return sigmoid_backward(residual_y, x, w, b, report=lambda up, y: up * y)  # σ' written as y

    with pytest.raises(AssertionError, match=r"(?s)residual_z .*MISMATCH.*σ' written as y"):
        assert_backward_matches(sigmoid_forward, backward, SHAPES)


def test_when_all_three_gradients_fail_residual_z_is_named_the_suspect():
    def backward(residual_y, x, w, b):
        out = sigmoid_backward(residual_y, x, w, b, derivative=lambda y: y)
        out.pop("residual_z")
        return out

    with pytest.raises(AssertionError, match=r"residual_z = residual_y ⊙ f'\(z\), which is the suspect"):
        assert_backward_matches(sigmoid_forward, backward, SHAPES)


def test_one_wrong_gradient_names_no_suspect():
    def backward(residual_y, x, w, b):
        return {**sigmoid_backward(residual_y, x, w, b), "residual_x": np.zeros((3, 5))}

    with pytest.raises(AssertionError) as failure:
        assert_backward_matches(sigmoid_forward, backward, SHAPES)
    assert "suspect" not in str(failure.value)


def _softsign_by_entry(z):
    """z / (1 + |z|) with a Python branch on each value: JAX cannot trace it."""
    return np.array([[v / (1 + v) if v >= 0 else v / (1 - v) for v in row] for row in z])


def numpy_forward(x, w, b):
    return _softsign_by_entry(w.T @ x + b)


def softsign_backward(residual_y, x, w, b, *, power=2):
    z = w.T @ x + b  # (out, N)
    residual_z = residual_y / (1 + np.abs(z)) ** power  # (out, N), softsign' = 1 / (1 + |z|)²
    return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(1, keepdims=True)}


def test_a_forward_jax_cannot_trace_is_checked_by_finite_differences():
    checks = assert_backward_matches_fd(numpy_forward, softsign_backward, SHAPES)
    assert all(c.ok for c in checks) and max(c.rel_err for c in checks) < 1e-7


def test_finite_differences_catch_a_wrong_derivative_and_say_they_are_the_weaker_oracle():
    def backward(residual_y, x, w, b):
        return softsign_backward(residual_y, x, w, b, power=1)

    with pytest.raises(AssertionError, match=r"(?s)the weaker oracle.*grad_w .*MISMATCH"):
        assert_backward_matches_fd(numpy_forward, backward, SHAPES)


def test_finite_differences_refuse_a_float32_forward():
    with pytest.raises(FcgradError, match="expected one float64 array y"):
        assert_backward_matches_fd(lambda x, w, b: (w.T @ x + b).astype(np.float32), softsign_backward, SHAPES)


def test_the_rounding_floor_passes_a_gradient_finite_differences_cannot_resolve():
    # a large output (|L| ≈ 1e8) makes each difference round at ε·|L|/h ≈ 2e-2: the floor must absorb it
    def forward(x, w, b):
        return 1e7 + (w.T @ x + b)

    def backward(residual_y, x, w, b):
        return {"residual_x": w @ residual_y, "grad_w": x @ residual_y.T, "grad_b": residual_y.sum(1, keepdims=True)}

    checks = assert_backward_matches_fd(forward, backward, SHAPES)
    assert all(c.ok for c in checks) and math.isfinite(checks[0].atol) and checks[0].atol > 1e-3


def test_a_returned_residual_z_gets_a_row_of_its_own_beside_the_three_it_spoils():
    def backward(residual_y, x, w, b):
        return sigmoid_backward(residual_y, x, w, b, derivative=lambda y: y)  # σ' written as y, residual_z returned

    with pytest.raises(AssertionError) as failure:
        assert_backward_matches(sigmoid_forward, backward, SHAPES)
    message = str(failure.value)
    rows = [line for line in message.splitlines() if line.startswith("  ") and line[2] != " "]
    assert [line.split()[0] for line in rows if not line.startswith("  line ")] == [
        "residual_x", "grad_w", "grad_b", "residual_z",
    ]  # fmt: skip
    assert "residual_z   max|Δ|" in message and "looks like σ' written as y" in message
    assert "suspect" not in message  # residual_z was compared: no need to suspect it
    # the trace: the one statement that computed the wrong residual_z, named once more
    assert [line.split(":")[1].strip() for line in rows if line.startswith("  line ")] == [
        "residual_z = residual_y * derivative(y)  (`residual_z`)"
    ]


@pytest.mark.parametrize("returns_residual_z", [True, False], ids=["residual_z-returned", "not-returned"])
def test_three_wrong_gradient_formulas_do_not_blame_residual_z(returns_residual_z):
    def backward(residual_y, x, w, b):
        out = sigmoid_backward(residual_y, x, w, b)
        wrong = {"grad_w": x @ (out["residual_z"] * 5).T, "grad_b": out["grad_b"] * 5, "residual_x": w @ residual_y}
        return {**out, **wrong} if returns_residual_z else {**wrong}

    with pytest.raises(AssertionError) as failure:
        assert_backward_matches(sigmoid_forward, backward, SHAPES)
    message = str(failure.value)
    assert "suspect" not in message and "residual_z   max" not in message  # each of the three is named on its own
    assert message.count("looks like a missing 1/N") == 2  # grad_w and grad_b: 5 × JAX, N = 5
    assert "looks like the activation's derivative dropped from the residual sent down" in message


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda g, up: {**g, "grad_b": g["residual_z"].sum(axis=1)}, "looks like keepdims lost: manual has shape (4,)"),
        (lambda g, up: {**g, "grad_w": g["grad_w"].T}, "looks like a transposed result: manual is JAX's (3, 4)ᵀ"),
        (
            lambda g, up: {**g, "grad_b": g["residual_z"].sum(axis=0)},
            "looks like a bias gradient summed over the wrong",
        ),
    ],
    ids=["keepdims-lost", "transposed", "bias-wrong-axis"],
)
def test_a_wrong_shape_is_named_by_the_catalogue(change, words):
    def backward(residual_y, x, w, b):
        return change(sigmoid_backward(residual_y, x, w, b), residual_y)

    with pytest.raises(AssertionError, match=r"expected shape") as failure:
        assert_backward_matches(sigmoid_forward, backward, SHAPES)
    assert words in str(failure.value)


def test_a_hidden_residual_that_skips_w_is_named_though_its_shape_is_wrong():
    def backward(residual_y, x, w, b):
        out = sigmoid_backward(residual_y, x, w, b)
        return {**out, "residual_x": out["residual_z"]}  # (4, 5) where (3, 5) belongs

    with pytest.raises(AssertionError, match="looks like a hidden residual that reuses the error above"):
        assert_backward_matches(sigmoid_forward, backward, SHAPES)


# ---- a layer that ends in its loss: y is one number, z is still (out, N) ----

LOSS_SHAPES = {"x": (3, 5), "w": (3, 2), "b": (2, 1), "t": (2, 5)}
LOSS_WRT = {"residual_x": "x", "grad_w": "w", "grad_b": "b"}  # the targets t are data, not differentiated


def square_loss_forward(x, w, b, t):
    """A linear layer and the blog's square loss: L = Σ (z − t)² / N / 2, one number."""
    return jnp.sum((w.T @ x + b - t) ** 2) / x.shape[1] / 2


def square_loss_backward(residual_y, x, w, b, t, *, per_sample=False):
    """∂L/∂z = residual_y · (z − t)/N; ``per_sample`` forgets the 1/N."""
    z = w.T @ x + b  # (out, N)
    residual_z = residual_y * (z - t) / (1 if per_sample else x.shape[1])  # (out, N)
    grads = {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(1, keepdims=True)}
    return {**grads, "residual_z": residual_z}


def test_a_layer_that_ends_in_its_loss_passes_with_its_residual_z_compared():
    checks = assert_backward_matches(square_loss_forward, square_loss_backward, LOSS_SHAPES, wrt=LOSS_WRT)
    assert [c.name for c in checks] == ["residual_x", "grad_w", "grad_b"]


def test_a_layer_that_ends_in_its_loss_has_its_returned_residual_z_compared_with_jax():
    # the gradients are right, residual_z alone is wrong (N times too large): JAX's ∂L/∂z through a widened
    # bias is (out, N) though the loss is one number, and the row says so
    def backward(residual_y, x, w, b, t):
        out = square_loss_backward(residual_y, x, w, b, t)
        return {**out, "residual_z": out["residual_z"] * x.shape[1]}

    named = r"(?s)residual_z +max\|Δ\|.*looks like a missing 1/N: manual is exactly 5"
    with pytest.raises(AssertionError, match=named):
        assert_backward_matches(square_loss_forward, backward, LOSS_SHAPES, wrt=LOSS_WRT)


def test_a_layer_that_ends_in_its_loss_and_forgets_its_1_over_n_is_named_on_every_row():
    # N comes from x when ∂L/∂y is one number: the catalogue names the factor 5 as the missing 1/N
    def backward(residual_y, x, w, b, t):
        out = square_loss_backward(residual_y, x, w, b, t, per_sample=True)
        out.pop("residual_z")
        return out

    with pytest.raises(AssertionError) as failure:
        assert_backward_matches(square_loss_forward, backward, LOSS_SHAPES, wrt=LOSS_WRT)
    assert str(failure.value).count("looks like a missing 1/N: manual is exactly 5 × JAX") >= 3
