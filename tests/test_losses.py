"""The new losses (multiclass hinge, binary cross-entropy from logits, mean absolute error) against JAX
and central finite differences, at and away from their kinks.

Finite differences never probe across a kink: an entry of y is probed only when ``kink_distance``
puts it more than ``KINK_MARGIN`` steps h from every kink, so y ± h stays on one side; the others are
skipped (and the test makes sure some were probed). At an exact kink both sides take the subgradient
0 (relu' = 0 at 0), which the exact-kink tests pin down.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import errors
from fcgrad.manual.finite_diff import FD_STEP
from fcgrad.manual.losses import LOSSES
from fcgrad.reference.model import LOSSES as JAX_LOSSES

NEW = ["hinge", "bce-logits", "mae"]
KINK_MARGIN = 10  # probe only entries more than 10·h from a kink: y ± h then never crosses one


def _data(name: str, seed: int, out: int = 4, n: int = 6):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((out, n))  # (out, N)
    if name == "hinge":
        t = np.eye(out)[:, rng.integers(0, out, n)]  # one-hot columns
    elif name == "bce-logits":
        t = rng.uniform(0, 1, (out, n))  # probabilities
    else:
        t = rng.standard_normal((out, n))
    return y, t


def _jax_residual_y(name, y, t):
    with jax.enable_x64(True):
        return np.asarray(jax.grad(JAX_LOSSES[name])(jnp.asarray(y), jnp.asarray(t)))


def _central(name, y, t, idx, h=FD_STEP):
    up, down = y.copy(), y.copy()
    up[idx] += h
    down[idx] -= h
    return (float(LOSSES[name].forward(up, t)) - float(LOSSES[name].forward(down, t))) / (2 * h)


def probe_entries(name, y, t, h=FD_STEP) -> list[tuple[int, int]]:
    """Entries of y whose ±h perturbation stays clear of every kink of the loss."""
    kink = LOSSES[name].kink_distance
    if kink is None:
        return list(np.ndindex(*y.shape))
    far = kink(y, t) > KINK_MARGIN * h
    return [tuple(int(i) for i in j) for j in np.argwhere(far)]


@pytest.mark.parametrize("column_sum", [1.0, 0.4, 2.5], ids=["probabilities", "sum-0.4", "sum-2.5"])
def test_cross_entropy_residual_y_holds_the_sum_of_each_target_column(column_sum):
    # ∂L/∂y = (softmax(y)·Σ_rows t − t) / N (README): targets that are not one-hot, and columns that do not
    # sum to 1 (weighted samples), where the shortcut (softmax(y) − t) / N is wrong
    rng = np.random.default_rng(3)
    y = rng.standard_normal((4, 6))  # (out, N)
    t = rng.uniform(0.1, 1.0, (4, 6))
    t *= column_sum / t.sum(axis=0, keepdims=True)  # (out, N), each column sums to column_sum
    max_abs, rel = errors(LOSSES["cross-entropy"].backward(y, t), _jax_residual_y("cross-entropy", y, t))
    assert rel <= tol.GRAD_REL_TOL_F64, f"max|Δ| {max_abs:.1e} rel {rel:.1e}"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", NEW)
def test_loss_value_and_residual_y_match_jax(name, seed):
    y, t = _data(name, seed)
    with jax.enable_x64(True):
        ref_value = float(JAX_LOSSES[name](jnp.asarray(y), jnp.asarray(t)))
    assert errors(LOSSES[name].forward(y, t), ref_value)[1] <= tol.GRAD_REL_TOL_F64
    max_abs, rel = errors(LOSSES[name].backward(y, t), _jax_residual_y(name, y, t))
    assert rel <= tol.GRAD_REL_TOL_F64, f"{name} residual_y: max|Δ| {max_abs:.1e} rel {rel:.1e}"


@pytest.mark.parametrize("name", NEW)
def test_residual_y_matches_finite_differences_away_from_kinks(name):
    y, t = _data(name, 5, out=5, n=8)
    if name == "hinge":
        y[:, :3] = np.round(y[:, :3])  # integer scores put some margins exactly on a kink
        y[0, 0], y[1, 0] = 0.0, -1.0
        t[:, 0] = np.eye(5)[:, 0]  # margin of class 1 in column 0 is exactly 0
    if name == "mae":
        y[:, 0] = t[:, 0]  # |y − t| at its kink in column 0
    entries = probe_entries(name, y, t)
    assert len(entries) >= y.size // 2, "most entries should be probed"
    if LOSSES[name].kink_distance is not None:
        assert len(entries) < y.size, "the planted kinks should be skipped"
    manual = LOSSES[name].backward(y, t)
    probed = np.array([manual[j] for j in entries])
    fd = np.array([_central(name, y, t, j) for j in entries])
    floor = tol.fd_noise_floor(float(LOSSES[name].forward(y, t)), FD_STEP)
    max_abs, rel = errors(probed, fd)
    assert rel <= tol.FD_REL_TOL or max_abs <= floor, f"{name}: max|Δ| {max_abs:.1e} rel {rel:.1e}"


def test_hinge_takes_subgradient_zero_at_an_exact_kink_on_both_sides():
    # column 0: class 0 is true with score 2; class 1 scores 1, so its margin 1 − 2 + 1 is exactly 0
    y = np.array([[2.0, 0.0], [1.0, 3.0], [-5.0, 0.5]])  # (3, 2)
    t = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    manual = LOSSES["hinge"].backward(y, t)
    jax_side = _jax_residual_y("hinge", y, t)
    # exact: 1 − 2 + 1 on small integers has no rounding
    assert LOSSES["hinge"].kink_distance(y, t)[1, 0] == pytest.approx(0.0, abs=0)
    # exactly zero where the margin sits on the kink: no arithmetic touches a 0 subgradient
    assert manual[1, 0] == pytest.approx(0.0, abs=0) and jax_side[1, 0] == pytest.approx(0.0, abs=0)
    assert errors(manual, jax_side)[0] <= tol.GRAD_REL_TOL_F64


def test_mae_takes_subgradient_zero_where_y_equals_t_on_both_sides():
    y = np.array([[1.0, -2.0, 0.5]])
    t = np.array([[1.0, 0.0, 0.5]])
    manual = LOSSES["mae"].backward(y, t)
    jax_side = _jax_residual_y("mae", y, t)
    expected = np.array([[0.0, -1.0, 0.0]]) / 3
    assert errors(manual, expected)[0] <= tol.GRAD_REL_TOL_F64
    assert errors(jax_side, expected)[0] <= tol.GRAD_REL_TOL_F64


@pytest.mark.parametrize("logit", [800.0, -800.0, 1e300, -1e300])
def test_bce_from_logits_is_finite_and_exact_for_huge_logits(logit):
    y = np.array([[logit, 0.0]])
    t = np.array([[1.0, 0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in exp would raise here
        value = float(LOSSES["bce-logits"].forward(y, t))
        grad = LOSSES["bce-logits"].backward(y, t)
    # softplus(y) − y·t: for y ≫ 0 it is y(1 − t) = 0 here; for y ≪ 0 it is −y·t = |y|
    expected = (0.0 if logit > 0 else -logit) + np.log(2.0)
    assert value == pytest.approx(expected / 2, rel=1e-15)
    assert np.all(np.isfinite(grad))
    assert errors(grad, _jax_residual_y("bce-logits", y, t))[1] <= tol.GRAD_REL_TOL_F64
