"""A fully connected layer with a softplus activation, checked with ``assert_backward_matches``.

The library has no softplus; this file is what a user writes to add one: the forward,
a hand-derived backward, and a test that holds the backward to JAX's autodiff.
Copy it into your own tests (see examples/README.md) and replace the layer with yours.

Layout (the blog's): x (in, N) by column, w (in, out), b (out, 1), z = wᵀ·x + b, y = softplus(z).
softplus(z) = log(1 + eᶻ), and its derivative is the logistic sigmoid σ(z) = 1 / (1 + e⁻ᶻ).
"""

import numpy as np
import pytest

from fcgrad.testing import assert_backward_matches

# (in, out, N) per case: a single unit, a single sample, and a general layer
SHAPES = [(1, 1, 1), (3, 1, 4), (4, 3, 1), (5, 3, 8)]
IDS = [f"{i}-{o}-{n}" for i, o, n in SHAPES]


def softplus(z):
    """log(1 + eᶻ) without overflow, on NumPy or JAX arrays (array API: ``z.__array_namespace__()``)."""
    xp = z.__array_namespace__()
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def forward(x, w, b):
    """x (in, N), w (in, out), b (out, 1) -> y (out, N). One function: the helper runs it on JAX arrays."""
    return softplus(w.T @ x + b)


def backward(residual_y, x, w, b):
    """residual_y = ∂L/∂y (out, N) -> the gradients of x, w and b, in the blog's names."""
    z = w.T @ x + b  # (out, in)·(in, N) + (out, 1) -> (out, N)
    sigmoid = 0.5 * (1 + np.tanh(z / 2))  # (out, N), σ(z) written so that no exp can overflow
    residual_z = residual_y * sigmoid  # (out, N) ⊙ softplus'(z) = σ(z) -> (out, N)
    grad_w = x @ residual_z.T  # (in, N)·(N, out) -> (in, out)
    grad_b = residual_z.sum(axis=1, keepdims=True)  # sum over the N columns -> (out, 1)
    residual_x = w @ residual_z  # (in, out)·(out, N) -> (in, N)
    return {"residual_x": residual_x, "grad_w": grad_w, "grad_b": grad_b}


def backward_with_exp_derivative(residual_y, x, w, b):
    """A planted mistake: softplus' derivative written as eᶻ (the derivative of the exp inside the log)."""
    z = w.T @ x + b  # (out, in)·(in, N) + (out, 1) -> (out, N)
    residual_z = residual_y * np.exp(z)  # (out, N) ⊙ eᶻ: WRONG, softplus'(z) = eᶻ / (1 + eᶻ)
    grad_w = x @ residual_z.T  # (in, N)·(N, out) -> (in, out)
    grad_b = residual_z.sum(axis=1, keepdims=True)  # sum over the N columns -> (out, 1)
    residual_x = w @ residual_z  # (in, out)·(out, N) -> (in, N)
    return {"residual_x": residual_x, "grad_w": grad_w, "grad_b": grad_b}


def layer_shapes(n_in, n_out, n):
    return {"x": (n_in, n), "w": (n_in, n_out), "b": (n_out, 1)}


@pytest.mark.parametrize("n_in, n_out, n", SHAPES, ids=IDS)
def test_softplus_backward_matches_jax(n_in, n_out, n):
    # gradient names follow the inputs: x -> residual_x, w -> grad_w, b -> grad_b
    checks = assert_backward_matches(forward, backward, layer_shapes(n_in, n_out, n), seed=0)
    assert [c.name for c in checks] == ["residual_x", "grad_w", "grad_b"]


def test_softplus_with_exp_derivative_is_caught():
    # The helper names each wrong gradient, by how much, and where. With the planted mistake it says:
    #   AssertionError: backward does not match JAX autodiff of forward (trial 0, seed 0, float64,
    #   inputs {'x': (5, 8), 'w': (5, 3), 'b': (3, 1)}):
    #     residual_x   max|Δ| 1.7e+02  rel 2.6e+01  (rtol 1e-10, atol 1e-11)  MISMATCH
    #       largest difference at index (2, 5): manual 176.9336885, JAX 4.176526059
    #     grad_w       max|Δ| 1.2e+02  rel 2.6e+01  (rtol 1e-10, atol 1e-11)  MISMATCH
    #       largest difference at index (2, 2): manual 121.6945815, JAX 2.911910602
    #     grad_b       max|Δ| 8.4e+01  rel 3.0e+01  (rtol 1e-10, atol 1e-11)  MISMATCH
    #       largest difference at index (2, 0): manual 85.76988777, JAX 2.005961448
    # pytest.raises expects that failure, so the suite stays green; remove it to see the message live.
    with pytest.raises(AssertionError, match=r"residual_x +max\|Δ\|") as failure:
        assert_backward_matches(forward, backward_with_exp_derivative, layer_shapes(5, 3, 8), seed=0)
    message = str(failure.value)
    assert "grad_w" in message and "grad_b" in message  # every gradient downstream of residual_z is wrong
