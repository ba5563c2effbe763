"""A failing assert_backward_matches names the line of your backward where it went wrong.

After a gradient fails, the backward runs once more while every assignment of the file that defines it is
recorded. Each value is held against what the helper knows (the inputs, ∂L/∂y, the layer's z, y and f'(z),
JAX's residual_z and gradients) in any orientation, and the message gains, for the first wrong value computed
from right ones, ``line N of FILE: statement  (`target`)`` with the catalogue's name for it. A correct backward
is never traced.
"""

import inspect
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from fcgrad import manual
from fcgrad.testing import assert_backward_matches, backward_trace
from fcgrad.testing.backward_trace import TRACE_MATCH_REL_TOL, same
from fcgrad.testing.record import recording

LAYER = {"x": (3, 5), "w": (3, 2), "b": (2, 1)}
SQUARE = {"x": (3, 5), "w": (3, 3), "b": (3, 1)}  # in = out: w and wᵀ, x and y, are interchangeable by shape
HERE = Path(__file__).name


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def sigmoid_forward(x, w, b):
    return 1 / (1 + jnp.exp(-(w.T @ x + b)))


def line_of(fn, text: str) -> int:
    """The line of ``fn``'s source that holds ``text``."""
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


def traced_lines(message: str) -> list[str]:
    """The message's traced statements: ``line N of FILE: statement  (`target`)``, one per origin."""
    return [line.strip() for line in message.splitlines() if line.startswith("  line ")]


def failure_of(forward, backward, shapes, **options) -> str:
    with pytest.raises(AssertionError) as failure:
        assert_backward_matches(forward, backward, shapes, **options)
    return str(failure.value)


# ---- the mistakes, each placed at its statement ----


def sigma_prime_as_sigma(residual_y, x, w, b):
    z = w.T @ x + b  # (out, N)
    sp = sigmoid(z)  # meant as σ'(z); it is σ(z) = y
    residual_z = residual_y * sp  # (out, N)
    grad_w = x @ residual_z.T  # (in, out)
    grad_b = residual_z.sum(axis=1, keepdims=True)  # (out, 1)
    residual_x = w @ residual_z  # (in, N)
    return {"residual_x": residual_x, "grad_w": grad_w, "grad_b": grad_b}


def test_sigma_prime_written_as_sigma_is_placed_at_residual_z_and_its_factor_at_its_own_line():
    message = failure_of(sigmoid_forward, sigma_prime_as_sigma, LAYER)
    at = line_of(sigma_prime_as_sigma, "residual_z = residual_y * sp")
    factor = line_of(sigma_prime_as_sigma, "sp = sigmoid(z)")
    # sp = σ(z) is a right value (the layer's output y): the first wrong value is residual_z, which reads it
    assert traced_lines(message) == [f"line {at} of tests/{HERE}: residual_z = residual_y * sp  (`residual_z`)"]
    assert "sigmoid_prime_as_y: looks like σ' written as y" in message
    assert f"it read sp, which is the layer's output y, from line {factor}: sp = sigmoid(z)" in message
    assert "residual_x, grad_w, grad_b follow from it" in message


def sigma_prime_as_sigma_returned(residual_y, x, w, b):
    sp = sigmoid(w.T @ x + b)  # (out, N): σ(z) where σ'(z) belongs
    residual_z = residual_y * sp  # (out, N)
    return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(axis=1, keepdims=True)}


def test_gradients_computed_in_the_return_expression_are_traced_to_the_origin_they_read():
    message = failure_of(sigmoid_forward, sigma_prime_as_sigma_returned, LAYER)
    at = line_of(sigma_prime_as_sigma_returned, "residual_z = residual_y * sp")
    assert traced_lines(message) == [f"line {at} of tests/{HERE}: residual_z = residual_y * sp  (`residual_z`)"]
    assert "sigmoid_prime_as_y" in message


def residual_x_through_w_transposed(residual_y, x, w, b):
    y = sigmoid(w.T @ x + b)  # (out, N)
    residual_z = residual_y * y * (1 - y)  # (out, N)
    residual_x = w.T @ residual_z  # wᵀ where w belongs: runs only because in = out
    return {"residual_x": residual_x, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(axis=1, keepdims=True)}


def test_residual_x_sent_through_w_transposed_is_placed_at_its_line():
    message = failure_of(sigmoid_forward, residual_x_through_w_transposed, SQUARE)
    at = line_of(residual_x_through_w_transposed, "residual_x = w.T @ residual_z")
    assert traced_lines(message) == [f"line {at} of tests/{HERE}: residual_x = w.T @ residual_z  (`residual_x`)"]
    assert "residual_through_w_transposed, as named above" in message  # the row printed its words already


def z_with_w_for_w_transposed(residual_y, x, w, b):
    z = w @ x + b  # w where wᵀ belongs: runs only because in = out
    y = sigmoid(z)
    residual_z = residual_y * y * (1 - y)
    grad_w = x @ residual_z.T
    grad_b = residual_z.sum(axis=1, keepdims=True)
    residual_x = w @ residual_z
    return {"residual_x": residual_x, "grad_w": grad_w, "grad_b": grad_b}


def test_a_z_with_w_for_w_transposed_is_the_one_statement_every_failing_gradient_comes_from():
    # no catalogue entry names a wrong z, but all three formulas below it are right: they share it
    message = failure_of(sigmoid_forward, z_with_w_for_w_transposed, SQUARE)
    at = line_of(z_with_w_for_w_transposed, "z = w @ x + b")
    assert traced_lines(message) == [f"line {at} of tests/{HERE}: z = w @ x + b  (`z`)"]
    assert "the catalogue has no name for it" in message
    assert "residual_x, grad_w, grad_b are computed from it" in message


def grad_w_from_the_output(residual_y, x, w, b):
    y = sigmoid(w.T @ x + b)  # (out, N)
    residual_z = residual_y * y * (1 - y)  # (out, N)
    grad_w = y @ residual_z.T  # the output y where the input x belongs: runs only because in = out
    return {"residual_x": w @ residual_z, "grad_w": grad_w, "grad_b": residual_z.sum(axis=1, keepdims=True)}


def test_grad_w_from_the_output_is_placed_at_its_line():
    message = failure_of(sigmoid_forward, grad_w_from_the_output, SQUARE)
    at = line_of(grad_w_from_the_output, "grad_w = y @ residual_z.T")
    assert traced_lines(message) == [f"line {at} of tests/{HERE}: grad_w = y @ residual_z.T  (`grad_w`)"]
    assert "grad_w_from_output, as named above" in message
    assert "grad_w follows from it" in message


def square_loss_forward(x, w, b, t):
    return jnp.sum((w.T @ x + b - t) ** 2) / x.shape[1] / 2  # L = Σ (z − t)² / N / 2


def dropped_one_over_n(residual_y, x, w, b, t):
    z = w.T @ x + b  # (out, N)
    residual_z = residual_y * (z - t)  # the 1/N of the loss dropped
    grad_w = x @ residual_z.T
    grad_b = residual_z.sum(axis=1, keepdims=True)
    residual_x = w @ residual_z
    return {"residual_x": residual_x, "grad_w": grad_w, "grad_b": grad_b}


def test_a_dropped_1_over_n_is_placed_where_residual_z_lost_it():
    shapes = {**LAYER, "t": (2, 5)}
    wrt = {"residual_x": "x", "grad_w": "w", "grad_b": "b"}
    message = failure_of(square_loss_forward, dropped_one_over_n, shapes, wrt=wrt)
    at = line_of(dropped_one_over_n, "residual_z = residual_y * (z - t)")
    assert traced_lines(message) == [f"line {at} of tests/{HERE}: residual_z = residual_y * (z - t)  (`residual_z`)"]
    assert "missing_1_over_n" in message
    assert "residual_x, grad_w, grad_b follow from it" in message


def right_value_where_another_belongs(residual_y, x, w, b):
    y = sigmoid(w.T @ x + b)
    residual_z = residual_y * y * (1 - y)
    residual_x = residual_z  # ∂L/∂z handed down as it is, not through w: right numbers, wrong quantity
    return {"residual_x": residual_x, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(axis=1, keepdims=True)}


def test_a_right_value_returned_where_another_belongs_is_placed_at_its_statement():
    message = failure_of(sigmoid_forward, right_value_where_another_belongs, SQUARE)
    at = line_of(right_value_where_another_belongs, "residual_x = residual_z")
    assert traced_lines(message) == [f"line {at} of tests/{HERE}: residual_x = residual_z  (`residual_x`)"]
    assert "its value is JAX's residual_z (∂L/∂z), where residual_x belongs" in message


def square_forward(x, g, b):
    return g * x * x + b  # not a fully connected layer: no z, y or residual_z to know


def square_backward_wrong(residual_y, x, g, b):
    sq = x * x  # the helper does not know x²
    slope = 2 * x  # nor 2x
    grad_g = np.sum(residual_y * sq, axis=1, keepdims=True)
    grad_b = np.sum(residual_y, axis=1, keepdims=True)
    residual_x = residual_y * g * slope * sq  # x² too many
    return {"residual_x": residual_x, "grad_g": grad_g, "grad_b": grad_b}


def test_a_wrong_value_computed_from_values_the_helper_cannot_judge_is_placed_where_it_is_computed():
    message = failure_of(square_forward, square_backward_wrong, {"x": (3, 5), "g": (3, 1), "b": (3, 1)})
    at = line_of(square_backward_wrong, "residual_x = residual_y * g * slope * sq")
    assert traced_lines(message) == [
        f"line {at} of tests/{HERE}: residual_x = residual_y * g * slope * sq  (`residual_x`)"
    ]
    assert "where residual_x is computed; it read slope, sq, which the helper cannot judge" in message


def sigma_prime_at_z(residual_y, x, w, b):
    z = w.T @ x + b
    sp = z * (1 - z)  # σ' = y(1 − y) written with z: no value the helper knows
    residual_z = residual_y * sp
    return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(axis=1, keepdims=True)}


def test_a_factor_that_is_no_known_value_is_named_at_its_own_line_too():
    message = failure_of(sigmoid_forward, sigma_prime_at_z, LAYER)
    at, factor = line_of(sigma_prime_at_z, "residual_z = residual_y * sp"), line_of(sigma_prime_at_z, "sp = z * (1")
    assert traced_lines(message) == [f"line {at} of tests/{HERE}: residual_z = residual_y * sp  (`residual_z`)"]
    assert "derivative_form_at_z" in message
    assert f"it read sp, a value the helper cannot judge, from line {factor}: sp = z * (1 - z)" in message


# ---- no noise ----


def correct_backward(residual_y, x, w, b):
    y = sigmoid(w.T @ x + b)
    residual_z = residual_y * y * (1 - y)
    return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(axis=1, keepdims=True)}


def test_a_correct_backward_is_never_traced(monkeypatch):
    calls = []
    monkeypatch.setattr(backward_trace, "lines_of_failure", lambda *a, **k: calls.append(a) or [])
    assert_backward_matches(sigmoid_forward, correct_backward, LAYER)
    assert calls == []
    failure_of(sigmoid_forward, sigma_prime_as_sigma, LAYER)
    assert len(calls) == 1  # once, after the failure, whatever the number of trials


def test_the_trace_leaves_the_interpreters_trace_function_as_it_was():
    before = sys.gettrace()
    failure_of(sigmoid_forward, sigma_prime_as_sigma, LAYER)
    assert sys.gettrace() is before


def test_a_mistake_made_only_in_the_return_expression_adds_no_line():
    def flipped(residual_y, x, w, b):
        out = correct_backward(residual_y, x, w, b)
        return {**out, "residual_x": -out["residual_x"]}

    message = failure_of(sigmoid_forward, flipped, LAYER)
    assert "looks like a flipped sign" in message and traced_lines(message) == []


def test_a_backward_that_gives_other_values_when_run_again_adds_no_line():
    runs = []

    def drifting(residual_y, x, w, b):
        runs.append(1)
        residual_z = residual_y * len(runs)  # another value on each call
        return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(1, keepdims=True)}

    message = failure_of(sigmoid_forward, drifting, LAYER)
    assert len(runs) == 2 and traced_lines(message) == []


def test_a_value_the_catalogue_would_name_but_a_later_statement_makes_right_is_not_blamed():
    def roundabout(residual_y, x, w, b):
        y = sigmoid(w.T @ x + b)
        part = residual_y * y  # σ' written as y, were it residual_z: it is only half of it
        residual_z = part * (1 - y)  # right
        grad_b = residual_z.sum(axis=1)  # keepdims lost: the one mistake
        return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": grad_b}

    message = failure_of(sigmoid_forward, roundabout, LAYER)
    at = line_of(roundabout, "grad_b = residual_z.sum(axis=1)")
    assert traced_lines(message) == [f"line {at} of tests/{HERE}: grad_b = residual_z.sum(axis=1)  (`grad_b`)"]
    assert "keepdims_lost" in message and "sigmoid_prime_as_y" not in message


# ---- the recorder, one file ----


def _calls_the_library(x, w, b):
    y, cache = manual.fc_forward(x, w, b, "tanh")
    grads = manual.fc_backward(np.ones_like(y), w, cache, "tanh")
    total = grads.residual_z.sum(axis=1)
    return total


def test_the_recorder_of_one_file_keeps_that_files_statements_only():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 2)), rng.standard_normal((2, 1))
    with recording(__file__) as rec:
        _calls_the_library(x, w, b)
    assert {r.file for r in rec.records} == {__file__}  # nothing of fcgrad.manual's own lines
    total = next(r for r in rec.records if r.target == "total")
    # a method called on an array reads that array: grads.residual_z of grads.residual_z.sum(axis=1)
    assert [text for text, _ in total.reads] == ["grads.residual_z"]


def test_a_value_within_the_trace_tolerance_is_the_quantity_and_twice_as_far_is_not():
    # TRACE_MATCH_REL_TOL is documented as 1e-8 (relative, Frobenius); half of it passes, twice fails
    q = np.random.default_rng(1).standard_normal((4, 6))
    assert TRACE_MATCH_REL_TOL == pytest.approx(1e-8, rel=0.5)
    assert same(q * (1 + 0.5e-8), q) and not same(q * (1 + 2e-8), q)
    assert same(q.T.copy(), q) and same(q[:, :1].reshape(-1), q[:, :1])  # transposed, keepdims lost
