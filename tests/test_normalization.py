"""Batch and layer normalisation: the hand-derived backward against jax.vjp of the forward, running
averages and inference, and the classic mistake of dropping the paths through the mean and variance."""

import jax.numpy as jnp
import numpy as np
import pytest

from fcgrad.manual.batchnorm import (
    BN_EPS,
    BatchNormGrads,
    batchnorm_backward,
    batchnorm_forward,
    batchnorm_inference,
    running_update,
)
from fcgrad.manual.layernorm import LN_EPS, layernorm_backward, layernorm_forward
from fcgrad.testing import assert_backward_matches

SHAPES = [(3, 5), (1, 7), (6, 2), (4, 32)]  # (D, N)


def jax_batchnorm(x, gamma, beta):
    mean = jnp.mean(x, axis=1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=1, keepdims=True)
    return gamma * (x - mean) / jnp.sqrt(var + BN_EPS) + beta


def jax_layernorm(x, gamma, beta):
    mean = jnp.mean(x, axis=0, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=0, keepdims=True)
    return gamma * (x - mean) / jnp.sqrt(var + LN_EPS) + beta


def bn_backward(residual_y, x, gamma, beta):
    return batchnorm_backward(residual_y, batchnorm_forward(x, gamma, beta)[1])._asdict()


def ln_backward(residual_y, x, gamma, beta):
    return layernorm_backward(residual_y, layernorm_forward(x, gamma, beta)[1])._asdict()


def _shapes(d, n):
    return {"x": (d, n), "gamma": (d, 1), "beta": (d, 1)}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"D{s[0]}-N{s[1]}")
def test_batchnorm_backward_matches_jax(shape):
    assert_backward_matches(jax_batchnorm, bn_backward, _shapes(*shape))


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[0] >= 2], ids=lambda s: f"D{s[0]}-N{s[1]}")
def test_layernorm_backward_matches_jax(shape):
    # D = 1 leaves every column at its mean: x̂ = 0 and ∂L/∂x = 0, nothing to compare relatively
    assert_backward_matches(jax_layernorm, ln_backward, _shapes(*shape))


def bn_backward_without_mean_and_variance_paths(residual_y, x, gamma, beta):
    """The classic mistake: treat μ and σ² as constants, residual_x = γ ⊙ residual_y / √(σ² + eps)."""
    _, cache = batchnorm_forward(x, gamma, beta)
    right = batchnorm_backward(residual_y, cache)
    return BatchNormGrads(gamma * residual_y * cache.inv_std, right.grad_gamma, right.grad_beta)._asdict()


def test_batchnorm_backward_without_the_mean_and_variance_terms_is_caught_on_residual_x():
    with pytest.raises(AssertionError, match="residual_x") as info:
        assert_backward_matches(jax_batchnorm, bn_backward_without_mean_and_variance_paths, _shapes(4, 8))
    assert "grad_gamma" not in str(info.value)  # only the wrong quantity is named


def test_batchnorm_output_rows_have_mean_beta_and_variance_gamma_squared():
    rng = np.random.default_rng(0)
    x = 3 + 2 * rng.standard_normal((4, 50))
    gamma, beta = rng.uniform(1, 2, (4, 1)), rng.standard_normal((4, 1))
    y, _ = batchnorm_forward(x, gamma, beta)
    assert np.allclose(y.mean(axis=1, keepdims=True), beta, atol=1e-12)
    # the variance is var/(var + eps) of γ², slightly below: eps/var ≈ 1e-6 here
    assert np.allclose(y.var(axis=1, keepdims=True), gamma**2, rtol=1e-5)


def test_running_averages_follow_the_batch_statistics_and_drive_inference():
    rng = np.random.default_rng(1)
    gamma, beta = np.ones((3, 1)), np.zeros((3, 1))
    mean, var = np.zeros((3, 1)), np.ones((3, 1))
    for _ in range(200):  # 0.9^200 ≈ 7e-10 of the start is left
        x = 5 + 0.5 * rng.standard_normal((3, 400))
        _, cache = batchnorm_forward(x, gamma, beta)
        mean, var = running_update(mean, var, cache)
    # sampling noise of a 400-column mean of N(5, 0.25) is 0.025; averaged over ~10 steps, below 0.02
    assert np.allclose(mean, 5, atol=0.02) and np.allclose(var, 0.25, atol=0.02)
    x = 5 + 0.5 * rng.standard_normal((3, 1))
    y = batchnorm_inference(x, gamma, beta, mean, var)
    assert np.allclose(y, (x - mean) / np.sqrt(var + BN_EPS), atol=1e-15)  # one sample: no batch needed
