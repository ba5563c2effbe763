"""Layer normalisation over the features of each column, checked with ``assert_backward_matches``.

The library has no normalisation layer; this file is what a user writes to add one.
Copy it into your own tests (see examples/README.md) and replace the layer with yours.

Layout (the blog's): x (D, N) holds N samples by column; each column is normalised over its D rows,
then scaled by a gain g (D, 1) and shifted by a bias b (D, 1):
    μ = mean of the column, v = mean of (x − μ)², x̂ = (x − μ) / √(v + ε), y = g ⊙ x̂ + b.
"""

import numpy as np
import pytest

from fcgrad.testing import assert_backward_matches

EPS = 1e-5  # ε, keeps √(v + ε) away from 0 for a constant column

# (D, N) per case: one feature (x̂ = 0, so residual_x = 0), two (residual_x is tiny: x̂ ≈ ±1 whatever x),
# one sample, and general batches
SHAPES = [(1, 3), (2, 5), (4, 1), (5, 8), (16, 3)]
IDS = [f"{d}-{n}" for d, n in SHAPES]


def normalise(x):
    """x (D, N) -> x̂ (D, N) and 1/√(v + ε) (1, N); on NumPy or JAX arrays (array API)."""
    xp = x.__array_namespace__()
    centred = x - xp.mean(x, axis=0, keepdims=True)  # (D, N) − (1, N) -> (D, N)
    inv_std = 1.0 / xp.sqrt(xp.mean(centred * centred, axis=0, keepdims=True) + EPS)  # (1, N)
    return centred * inv_std, inv_std


def forward(x, g, b):
    """x (D, N), g (D, 1), b (D, 1) -> y (D, N). The helper runs it on JAX arrays, the backward on NumPy."""
    x_hat, _ = normalise(x)
    return g * x_hat + b


def backward(residual_y, x, g, b):
    """residual_y = ∂L/∂y (D, N) -> the gradients of x, g and b (default names: residual_x, grad_g, grad_b)."""
    x_hat, inv_std = normalise(x)  # (D, N), (1, N): the same formulas as the forward, on NumPy
    grad_g = np.sum(residual_y * x_hat, axis=1, keepdims=True)  # (D, N) summed over the N columns -> (D, 1)
    grad_b = np.sum(residual_y, axis=1, keepdims=True)  # (D, N) summed over the N columns -> (D, 1)
    residual_x_hat = residual_y * g  # (D, N) ⊙ (D, 1) -> (D, N)
    through_mean = np.mean(residual_x_hat, axis=0, keepdims=True)  # (1, N): x reaches x̂ through μ too
    through_var = np.mean(residual_x_hat * x_hat, axis=0, keepdims=True)  # (1, N): and through v
    residual_x = inv_std * (residual_x_hat - through_mean - x_hat * through_var)  # (1, N) ⊙ (D, N) -> (D, N)
    return {"residual_x": residual_x, "grad_g": grad_g, "grad_b": grad_b}


def backward_without_mean_term(residual_y, x, g, b):
    """A planted mistake: x̂'s dependence on the column mean μ is forgotten in residual_x."""
    x_hat, inv_std = normalise(x)  # (D, N), (1, N)
    grad_g = np.sum(residual_y * x_hat, axis=1, keepdims=True)  # (D, N) summed over the N columns -> (D, 1)
    grad_b = np.sum(residual_y, axis=1, keepdims=True)  # (D, N) summed over the N columns -> (D, 1)
    residual_x_hat = residual_y * g  # (D, N) ⊙ (D, 1) -> (D, N)
    through_var = np.mean(residual_x_hat * x_hat, axis=0, keepdims=True)  # (1, N)
    residual_x = inv_std * (residual_x_hat - x_hat * through_var)  # (D, N): WRONG, the μ term is missing
    return {"residual_x": residual_x, "grad_g": grad_g, "grad_b": grad_b}


def layer_shapes(d, n):
    return {"x": (d, n), "g": (d, 1), "b": (d, 1)}


@pytest.mark.parametrize("d, n", SHAPES, ids=IDS)
def test_layernorm_backward_matches_jax(d, n):
    assert_backward_matches(forward, backward, layer_shapes(d, n), seed=0)


def test_layernorm_without_mean_term_is_caught():
    # Only residual_x is wrong, and the message says so. With the planted mistake it reads:
    #   AssertionError: backward does not match JAX autodiff of forward (trial 0, seed 0, float64,
    #   inputs {'x': (5, 8), 'g': (5, 1), 'b': (5, 1)}):
    #     residual_x   max|Δ| 1.5e+00  rel 5.6e-01  (rtol 1e-10, atol 1e-11)  MISMATCH
    #       largest difference at index (3, 3): manual -1.565368771, JAX -0.08913832646
    # pytest.raises expects that failure, so the suite stays green; remove it to see the message live.
    with pytest.raises(AssertionError, match=r"residual_x +max\|Δ\|") as failure:
        assert_backward_matches(forward, backward_without_mean_term, layer_shapes(5, 8), seed=0)
    message = str(failure.value)
    assert "grad_g" not in message and "grad_b" not in message  # the gain and bias gradients are right
