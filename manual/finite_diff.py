"""Central finite differences of the loss: the third oracle, independent of both derivations.

``∂L/∂θ ≈ (L(θ + h) − L(θ − h)) / 2h``, always in float64. With h = 1e-6 the
truncation error is O(h²) ≈ 1e-12 and the rounding error about ε·|L|/h ≈ 1e-10·|L|,
so agreement to about 1e-8 relative is what to expect; not near a ReLU kink
(a perturbation that crosses z = 0 sees a one-sided slope).
"""

import numpy as np

from fcgrad.manual import validate
from fcgrad.manual.losses import LOSSES
from fcgrad.manual.network import Params, forward

FD_STEP = 1e-6  # balances truncation (h²) against rounding (ε/h) for float64


def _loss_at(params: Params, x: np.ndarray, t: np.ndarray, activations, loss: str) -> float:
    y, _ = forward(params, x, activations)
    return float(LOSSES[loss].forward(y, t))


def _sample(shape: tuple[int, ...], max_entries: int | None, rng: np.random.Generator) -> list[tuple[int, ...]]:
    every = list(np.ndindex(*shape))
    if max_entries is None or len(every) <= max_entries:
        return every
    picks = rng.choice(len(every), size=max_entries, replace=False)
    return [every[i] for i in sorted(picks)]


def central_difference(array: np.ndarray, idx: tuple[int, ...], evaluate, step: float = FD_STEP) -> float:
    """(f(a + h) − f(a − h)) / 2h for entry ``idx`` of ``array``, changed in place and restored."""
    saved = array[idx]
    array[idx] = saved + step
    up = evaluate()
    array[idx] = saved - step
    down = evaluate()
    array[idx] = saved
    return (up - down) / (2 * step)


def finite_difference_gradients(
    params: Params,
    x,
    t,
    *,
    activations="sigmoid",
    loss: str = "square",
    step: float = FD_STEP,
    max_entries: int | None = 64,
    seed: int = 0,
) -> list[tuple[int, str, list[tuple[int, ...]], np.ndarray]]:
    """Estimate ``grad_w`` and ``grad_b`` of every layer and ``residual_x`` of layer 0 (∂L/∂X).

    Returns ``(layer, quantity, indices, values)`` rows; at most ``max_entries``
    entries of each array are probed (chosen with ``seed``), all of them when None.
    """
    params, _ = validate.check_params(params)
    params = [{k: v.astype(np.float64) for k, v in p.items()} for p in params]
    x, t = validate.check_data(x, t, params, np.dtype(np.float64))
    activations = validate.check_activations(activations, len(params))
    loss = validate.check_loss(loss)
    rng = np.random.default_rng(seed)

    def central(array: np.ndarray, idx: tuple[int, ...], evaluate) -> float:
        return central_difference(array, idx, evaluate, step)

    rows = []
    for i, layer in enumerate(params):
        for key, quantity in (("w", "grad_w"), ("b", "grad_b")):
            arr = layer[key]
            idx = _sample(arr.shape, max_entries, rng)
            vals = [central(arr, j, lambda: _loss_at(params, x, t, activations, loss)) for j in idx]
            rows.append((i, quantity, idx, np.array(vals)))
    idx = _sample(x.shape, max_entries, rng)
    vals = [central(x, j, lambda: _loss_at(params, x, t, activations, loss)) for j in idx]
    rows.append((0, "residual_x", idx, np.array(vals)))
    return rows
