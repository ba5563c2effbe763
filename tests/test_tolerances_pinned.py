"""Every tolerance pinned at its documented value from both sides.

For each tolerance a deviation of half its documented value is planted where the check measures it
and must pass, and one of twice its value must fail: a constant loosened or tightened by more than a
factor of two changes a verdict here. The documented values are written as literals (README.md,
docs/design.md, docs/toolbox.md and the comments of fcgrad/engine/tolerances.py state them), never
read from the constants under test.

| tolerance | documented | planted where |
|---|---|---|
| gradients, float64 / float32 | rel 1e-12 / 1e-4 | manual's grad_w times (1 + δ) |
| finite differences | rel 1e-6 | manual's grad_w times (1 + δ), against central differences |
| trajectory, global rule, float64 / float32 | 1e-12 / 1e-4 × max(1, max\\|param\\|) | one step's w[0, 0] |
| trajectory, local rule, float64 | loss 1e-13, param 1e-14, 1e-9 of the step | one step's loss, w[0, 0] |
| trajectory, local rule, float32 | loss 1e-5, param 1e-6, 1e-3 of the step | one step's loss, w[0, 0] |
| the catalogue's signatures, float64 / float32 | rel 1e-9 / 1e-4 | N × JAX plus noise of rel δ |
| assert_backward_matches, float64 / float32 | rel 1e-10 / 1e-4, or max\\|Δ\\| 1e-11 | a backward's grad_w |

The trajectory bounds scale with max(1, max|param|): a net whose weights are 100 times larger gets a
bound 100 times larger, pinned the same way.
"""

from dataclasses import replace

import jax.numpy as jnp
import numpy as np
import pytest
from test_checker import _planted

from fcgrad import manual
from fcgrad.diagnosis.catalogue import Context, diagnose
from fcgrad.engine.problems import random_problem
from fcgrad.engine.run import compare_finite_differences, compare_gradients
from fcgrad.engine.trajectory import compare_trajectories
from fcgrad.testing import assert_backward_matches

HALF, TWICE = 0.5, 2.0  # a deviation of half the tolerance passes, twice fails
SIDES = [(HALF, True), (TWICE, False)]
SIDE_IDS = ["half-passes", "twice-fails"]
PLANT_AT, STEPS = 5, 10  # a deviation planted mid-run, inside one chunk


def _problem(dtype="float64", lr=0.1):
    """max|w| < 1 and |L| < 1 at every step: the scale max(1, ·) of each bound is 1."""
    p = random_problem((3, 4, 2), activations="tanh", batch=5, seed=0, lr=lr, steps=STEPS).with_options(dtype=dtype)
    assert max(np.abs(layer["w"]).max() for layer in p.params) < 0.9
    return p


def _scaled_grad_w(monkeypatch, delta: float) -> None:
    """manual's grad_w of every layer times (1 + delta): a relative error of delta on those rows only."""
    real = manual.network.fc_backward

    def backward(residual_y, w, cache, act):
        g = real(residual_y, w, cache, act)
        return g._replace(grad_w=g.grad_w * g.grad_w.dtype.type(1 + delta))

    monkeypatch.setattr(manual.network, "fc_backward", backward)


def _row(rows, layer, quantity):
    return next(r for r in rows if (r.layer, r.quantity) == (layer, quantity))


# ---- gradients and finite differences ----


@pytest.mark.parametrize("factor, passes", SIDES, ids=SIDE_IDS)
@pytest.mark.parametrize("dtype, documented", [("float64", 1e-12), ("float32", 1e-4)])
def test_gradient_tolerance(dtype, documented, factor, passes, monkeypatch):
    p = _problem(dtype)
    _scaled_grad_w(monkeypatch, factor * documented)
    rows = compare_gradients(p)
    assert [_row(rows, i, "grad_w").ok for i in (0, 1)] == [passes, passes]
    assert all(r.ok for r in rows if r.quantity != "grad_w")


@pytest.mark.parametrize("factor, passes", SIDES, ids=SIDE_IDS)
def test_finite_difference_tolerance(factor, passes, monkeypatch):
    documented = 1e-6
    p = _problem()
    _scaled_grad_w(monkeypatch, factor * documented)
    rows = compare_finite_differences(p)
    # far above the rounding floor 10·ε·max(1,|L|)/h = 2.2e-9: the relative bound decides
    assert min(np.abs(layer["w"]).max() for layer in p.params) * documented > 10 * 2.2e-9
    assert [_row(rows, i, "grad_w").ok for i in (0, 1)] == [passes, passes]


# ---- trajectories ----


def _w0_ok(p, monkeypatch, rule=None, *, param=0.0, loss=0.0) -> bool:
    _planted(monkeypatch, PLANT_AT, param=param, loss=loss)
    rows = compare_trajectories(p, rule=rule).rows
    row = _row(rows, -1, "loss") if loss else _row(rows, 0, "w")
    assert row.ok or row.first_bad_step == PLANT_AT
    return row.ok


@pytest.mark.parametrize("factor, passes", SIDES, ids=SIDE_IDS)
@pytest.mark.parametrize("dtype, documented", [("float64", 1e-12), ("float32", 1e-4)])
def test_global_rule_tolerance(dtype, documented, factor, passes, monkeypatch):
    assert _w0_ok(_problem(dtype), monkeypatch, "global", param=factor * documented) is passes


@pytest.mark.parametrize("factor, passes", SIDES, ids=SIDE_IDS)
@pytest.mark.parametrize("dtype, documented", [("float64", 1e-13), ("float32", 1e-5)])
def test_local_rule_loss_tolerance(dtype, documented, factor, passes, monkeypatch):
    assert _w0_ok(_problem(dtype), monkeypatch, "local", loss=factor * documented) is passes


# a learning rate this small makes the step's share of the bound (1e-9 or 1e-3 of lr·grad) negligible
TINY_LR = 1e-9


@pytest.mark.parametrize("factor, passes", SIDES, ids=SIDE_IDS)
@pytest.mark.parametrize("dtype, documented", [("float64", 1e-14), ("float32", 1e-6)])
def test_local_rule_parameter_tolerance(dtype, documented, factor, passes, monkeypatch):
    assert _w0_ok(_problem(dtype, lr=TINY_LR), monkeypatch, "local", param=factor * documented) is passes


@pytest.mark.parametrize("factor, passes", SIDES, ids=SIDE_IDS)
@pytest.mark.parametrize("dtype, documented", [("float64", 1e-9), ("float32", 1e-3)])
def test_local_rule_share_of_the_step(dtype, documented, factor, passes, monkeypatch):
    # lr 0.5: the step of layer 0's w is ~1e-2, so its share dwarfs the absolute parameter bound
    p = _problem(dtype, lr=0.5)
    free = manual.train(p.params, p.x, p.t, activations=p.activations, loss=p.loss, lr=p.lr, steps=STEPS, dtype=dtype)
    w = free.params[0]["w"].astype(np.float64)
    step = float(np.max(np.abs(w[PLANT_AT + 1] - w[PLANT_AT])))
    absolute = {"float64": 1e-14, "float32": 1e-6}[dtype]
    assert documented * step > 10 * absolute
    assert _w0_ok(p, monkeypatch, "local", param=factor * documented * step) is passes


def test_global_rule_bound_scales_with_the_largest_parameter(monkeypatch):
    # weights 100 times the usual: the bound at a step is 1e-12 · max|w| of that step, here about 80 times 1e-12
    p = _problem()
    big = replace(p, params=[{k: 100 * v for k, v in layer.items()} for layer in p.params])
    free = manual.train(big.params, big.x, big.t, activations=big.activations, loss=big.loss, lr=big.lr, steps=STEPS)
    scale = float(np.max(np.abs(free.params[0]["w"][PLANT_AT + 1])))
    assert scale > 10
    for factor, passes in SIDES:
        with monkeypatch.context() as patch:
            assert _w0_ok(big, patch, "global", param=factor * 1e-12 * scale) is passes, factor


# ---- the catalogue ----


@pytest.mark.parametrize("factor, passes", SIDES, ids=SIDE_IDS)
@pytest.mark.parametrize("dtype, documented", [("float64", 1e-9), ("float32", 1e-4)])
def test_catalogue_signature_tolerance(dtype, documented, factor, passes):
    n = 5
    rng = np.random.default_rng(0)
    r = rng.standard_normal((4, n))  # (out, N) the reference's residual_y
    noise = rng.standard_normal(r.shape)
    noise -= np.vdot(noise, r) / np.vdot(r, r) * r  # orthogonal to r: no constant factor absorbs it
    m = n * r + noise * (factor * documented * n * np.linalg.norm(r) / np.linalg.norm(noise))  # rel δ from N·r
    found = diagnose(m.astype(dtype), r.astype(dtype), Context(quantity="residual_y", n=n))
    assert [d.name for d in found] == (["missing_1_over_n"] if passes else [])


# ---- the pytest helper for a user's layer ----

SHAPES = {"x": (3, 5), "w": (3, 2), "b": (2, 1)}


def _layer_forward(x, w, b):
    return jnp.tanh(w.T @ x + b)  # (out, N)


def _layer_backward(delta: float, dtype="float64", scale: float = 1.0, offset: float = 0.0):
    """The right backward of ``scale``·tanh(wᵀx + b), its grad_w off by (1 + delta) and, at one entry, by offset."""

    def backward(residual_y, x, w, b):
        y = np.tanh(w.T @ x + b)  # (out, N)
        residual_z = scale * residual_y * (1 - y * y)  # (out, N)
        grad_w = x @ residual_z.T * (1 + delta)  # (in, out)
        grad_w[0, 0] += offset
        grads = {"residual_x": w @ residual_z, "grad_w": grad_w, "grad_b": residual_z.sum(axis=1, keepdims=True)}
        return {k: v.astype(dtype) for k, v in grads.items()}

    return backward


def _helper_passes(forward, backward) -> bool:
    try:
        assert_backward_matches(forward, backward, SHAPES)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("factor, passes", SIDES, ids=SIDE_IDS)
@pytest.mark.parametrize("dtype, documented", [("float64", 1e-10), ("float32", 1e-4)])
def test_backward_helper_relative_tolerance(dtype, documented, factor, passes):
    assert _helper_passes(_layer_forward, _layer_backward(factor * documented, dtype)) is passes


@pytest.mark.parametrize("factor, passes", SIDES, ids=SIDE_IDS)
def test_backward_helper_absolute_tolerance(factor, passes):
    # gradients of 1e-3: an offset of 1e-11 at one entry is rel ≥ 1e-9, so max|Δ| ≤ 1e-11 alone decides
    def small(x, w, b):
        return 1e-3 * jnp.tanh(w.T @ x + b)

    assert _helper_passes(small, _layer_backward(0.0, scale=1e-3, offset=factor * 1e-11)) is passes
