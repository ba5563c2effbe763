"""Layer normalisation in the blog's column layout: each column (sample) normalised over its D rows.

For ``x`` (D, N) and per-feature ``gamma``, ``beta`` (D, 1)::

    μ = Σ_d x / D              (1, N)
    σ² = Σ_d (x − μ)² / D      (1, N)
    x̂ = (x − μ) / √(σ² + eps)  (D, N)
    y = γ ⊙ x̂ + β             (D, N)

The statistics belong to each sample, so training and inference are the same computation.
"""

from typing import NamedTuple

import numpy as np

from fcgrad.manual.activations import namespace

LN_EPS = 1e-5


class LayerNormCache(NamedTuple):
    x_hat: np.ndarray  # (D, N)
    inv_std: np.ndarray  # (1, N) 1 / √(σ² + eps) of each column
    gamma: np.ndarray  # (D, 1)


class LayerNormGrads(NamedTuple):
    residual_x: np.ndarray  # (D, N)
    grad_gamma: np.ndarray  # (D, 1)
    grad_beta: np.ndarray  # (D, 1)


def layernorm_forward(x, gamma, beta, eps: float = LN_EPS) -> tuple[np.ndarray, LayerNormCache]:
    xp = namespace(x)
    mean = xp.mean(x, axis=0, keepdims=True)  # (1, N)
    centered = x - mean  # (D, N)
    var = xp.mean(centered**2, axis=0, keepdims=True)  # (1, N)
    inv_std = 1.0 / xp.sqrt(var + eps)  # (1, N)
    x_hat = centered * inv_std  # (D, N)
    return gamma * x_hat + beta, LayerNormCache(x_hat, inv_std, gamma)


def layernorm_backward(residual_y, cache: LayerNormCache) -> LayerNormGrads:
    """As batch normalisation's compact backward, with the means taken down each column."""
    xp = namespace(residual_y)
    x_hat, inv_std, gamma = cache
    grad_gamma = xp.sum(residual_y * x_hat, axis=1, keepdims=True)  # (D, N) summed over N -> (D, 1)
    grad_beta = xp.sum(residual_y, axis=1, keepdims=True)  # (D, N) summed over N -> (D, 1)
    r = gamma * residual_y  # (D, 1)⊙(D, N) -> (D, N), ∂L/∂x̂
    r_mean = xp.mean(r, axis=0, keepdims=True)  # (1, N), the path through μ
    rx_mean = xp.mean(r * x_hat, axis=0, keepdims=True)  # (1, N), the path through σ²
    residual_x = inv_std * (r - r_mean - x_hat * rx_mean)  # (1, N)⊙((D, N) − (1, N) − (D, N)⊙(1, N)) -> (D, N)
    return LayerNormGrads(residual_x, grad_gamma, grad_beta)
