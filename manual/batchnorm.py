"""Batch normalisation in the blog's column layout: each row (feature) normalised over the N columns.

Training mode, for ``x`` (D, N) and per-feature ``gamma``, ``beta`` (D, 1)::

    μ = Σ_n x / N              (D, 1)
    σ² = Σ_n (x − μ)² / N      (D, 1)   the biased variance
    x̂ = (x − μ) / √(σ² + eps)  (D, N)
    y = γ ⊙ x̂ + β             (D, N)

Inference uses running averages instead of the batch's μ and σ²:
``running ← momentum·running + (1 − momentum)·batch`` for the mean and the (biased) variance,
starting from mean 0 and variance 1.
"""

from typing import NamedTuple

import numpy as np

from fcgrad.manual.activations import namespace

BN_EPS = 1e-5  # added to σ² before the root, the usual value
BN_MOMENTUM = 0.9  # fraction of the running averages kept at each training step


class BatchNormCache(NamedTuple):
    x_hat: np.ndarray  # (D, N) the normalised input
    inv_std: np.ndarray  # (D, 1) 1 / √(σ² + eps)
    gamma: np.ndarray  # (D, 1)
    mean: np.ndarray  # (D, 1) the batch mean μ, for the running average
    var: np.ndarray  # (D, 1) the batch variance σ², for the running average


class BatchNormGrads(NamedTuple):
    residual_x: np.ndarray  # (D, N) ∂L/∂x
    grad_gamma: np.ndarray  # (D, 1) ∂L/∂γ
    grad_beta: np.ndarray  # (D, 1) ∂L/∂β


def batchnorm_forward(x, gamma, beta, eps: float = BN_EPS) -> tuple[np.ndarray, BatchNormCache]:
    xp = namespace(x)
    mean = xp.mean(x, axis=1, keepdims=True)  # (D, 1)
    centered = x - mean  # (D, N)
    var = xp.mean(centered**2, axis=1, keepdims=True)  # (D, 1)
    inv_std = 1.0 / xp.sqrt(var + eps)  # (D, 1)
    x_hat = centered * inv_std  # (D, N)
    return gamma * x_hat + beta, BatchNormCache(x_hat, inv_std, gamma, mean, var)


def batchnorm_backward(residual_y, cache: BatchNormCache) -> BatchNormGrads:
    """The compact backward: every path through μ and σ² folded into two row means.

    ``residual_x = (1/√(σ²+eps)) ⊙ (r − mean_n(r) − x̂ ⊙ mean_n(r ⊙ x̂))`` with ``r = γ ⊙ residual_y``.
    """
    xp = namespace(residual_y)
    x_hat, inv_std, gamma, _, _ = cache
    grad_gamma = xp.sum(residual_y * x_hat, axis=1, keepdims=True)  # (D, N)⊙(D, N) summed over N -> (D, 1)
    grad_beta = xp.sum(residual_y, axis=1, keepdims=True)  # (D, N) summed over N -> (D, 1)
    r = gamma * residual_y  # (D, 1)⊙(D, N) -> (D, N), ∂L/∂x̂
    r_mean = xp.mean(r, axis=1, keepdims=True)  # (D, 1), the path through μ
    rx_mean = xp.mean(r * x_hat, axis=1, keepdims=True)  # (D, 1), the path through σ²
    residual_x = inv_std * (r - r_mean - x_hat * rx_mean)  # (D, 1)⊙((D, N) − (D, 1) − (D, N)⊙(D, 1)) -> (D, N)
    return BatchNormGrads(residual_x, grad_gamma, grad_beta)


def running_update(running_mean, running_var, cache: BatchNormCache, momentum: float = BN_MOMENTUM):
    """The running averages after one training step: ``(mean (D, 1), var (D, 1))``."""
    new_mean = momentum * running_mean + (1 - momentum) * cache.mean  # (D, 1)
    new_var = momentum * running_var + (1 - momentum) * cache.var  # (D, 1)
    return new_mean, new_var


def batchnorm_inference(x, gamma, beta, running_mean, running_var, eps: float = BN_EPS) -> np.ndarray:
    """Inference mode: the running averages stand in for the batch's μ and σ²."""
    xp = namespace(x)
    return gamma * ((x - running_mean) / xp.sqrt(running_var + eps)) + beta  # (D, N)
