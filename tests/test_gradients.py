"""Manual gradients against JAX (and finite differences), every layer and quantity, over a grid.

The grid covers depths 1 to 4, widths including 1, batches of 1 and more, every activation
and both losses. Each JAX case compiles once (about 0.3 s here), so instead of the full
product the batch alternates along the grid: every (activation, loss) pair meets both a
batch of 1 and a batch of 5, and every depth.
"""

from dataclasses import replace

import numpy as np
import pytest
from conftest import assert_all_ok

from fcgrad import manual, reference
from fcgrad.engine.problems import random_problem
from fcgrad.engine.run import compare_finite_differences, compare_gradients
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.losses import LOSSES

# one network per depth; widths include 1 (a one-unit hidden layer, a one-input layer), and
# square layers (5-5, 4-4), where a missing transpose is shape-valid and only numbers catch it
SIZES_BY_DEPTH = {1: (3, 2), 2: (2, 1, 3), 3: (4, 5, 5, 3), 4: (1, 3, 1, 4, 4)}
ACTIVATION_NAMES = ("sigmoid", "tanh", "relu", "identity")
LOSS_NAMES = ("square", "cross-entropy")


def _grid():
    cases = []
    for depth, sizes in SIZES_BY_DEPTH.items():
        for a, act in enumerate(ACTIVATION_NAMES):
            for loss in LOSS_NAMES:
                batch = 1 if (depth + a) % 2 == 0 else 5
                cases.append((sizes, act, loss, batch))
    # the blog's shape (one output unit), and layers with different activations
    cases.append(((2, 4, 1), "sigmoid", "square", 4))
    cases.append(((3, 5, 4, 2), ("relu", "tanh", "sigmoid"), "square", 6))
    cases.append(((3, 5, 4, 2), ("tanh", "relu", "identity"), "cross-entropy", 6))
    return cases


def _case_id(case) -> str:
    sizes, act, loss, batch = case
    acts = act if isinstance(act, str) else ",".join(act)
    return f"{'-'.join(map(str, sizes))}-{acts}-{loss}-N{batch}"


GRID = _grid()
GRID_IDS = [_case_id(c) for c in GRID]


def _problem(case):
    """A random problem with random biases too: with the zero initial biases, a dead one-unit ReLU
    layer would feed exactly z = 0 (the kink) to the next one, where finite differences see a corner."""
    sizes, act, loss, batch = case
    p = random_problem(sizes, activations=act, loss=loss, batch=batch, seed=len(sizes) + batch)
    rng = np.random.default_rng(len(sizes))
    params = [{"w": layer["w"], "b": rng.normal(0.0, 0.5, layer["b"].shape)} for layer in p.params]
    return replace(p, params=params)


def test_grid_covers_every_activation_loss_depth_and_both_batch_kinds():
    pairs = {(act, loss, batch > 1) for _, act, loss, batch in GRID if isinstance(act, str)}
    # the blog's two losses; hinge, bce-logits and mae are covered by test_losses.py, test_spec_network.py
    # and the property tests, which draw every loss of LOSSES
    assert set(LOSS_NAMES) <= set(LOSSES)
    assert pairs == {(a, loss, many) for a in ACTIVATIONS for loss in LOSS_NAMES for many in (False, True)}
    assert {len(sizes) - 1 for sizes, *_ in GRID} == {1, 2, 3, 4}
    assert any(1 in sizes[1:-1] for sizes, *_ in GRID)  # a one-unit hidden layer
    assert any(n_in == n_out > 1 for sizes, *_ in GRID for n_in, n_out in zip(sizes, sizes[1:]))  # a square layer


@pytest.mark.parametrize("case", GRID, ids=GRID_IDS)
def test_every_quantity_matches_jax(case):
    p = _problem(case)
    rows = compare_gradients(p)
    n = len(p.params)
    # every layer's four quantities, then the loss's residual_y and the loss itself
    compared = {(r.layer, r.quantity) for r in rows}
    assert compared == {(i, q) for i in range(n) for q in manual.QUANTITIES} | {(n - 1, "residual_y"), (n - 1, "loss")}
    assert [r.tol for r in rows] == pytest.approx([1e-12] * len(rows), rel=1e-9)  # README: rel ≤ 1e-12 in float64
    assert_all_ok(rows)


@pytest.mark.parametrize("case", GRID, ids=GRID_IDS)
def test_gradients_follow_the_blogs_layout(case):
    p = _problem(case)
    g = manual.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss)
    n_batch = p.x.shape[1]
    assert g.y.shape == g.residual_y.shape == p.t.shape
    for layer, grads in zip(p.params, g.layers):
        n_in, n_out = layer["w"].shape
        assert grads.residual_z.shape == (n_out, n_batch)  # by column, like z
        assert grads.grad_w.shape == (n_in, n_out)  # like w
        assert grads.grad_b.shape == (n_out, 1)  # like b, a column
        assert grads.residual_x.shape == (n_in, n_batch)  # like x


# Finite differences have an absolute floor of about ε·|L|/h (h = 1e-6; compare_finite_differences
# accepts rows under tolerances.fd_noise_floor). Behind one-unit sigmoid layers some gradients are
# ~1e-5, where that floor decides alone; so this grid (no JAX, the full product is cheap) keeps every
# layer at least 2 wide, where the 1e-6 relative tolerance does the work.
FD_SIZES = ((3, 2), (3, 4, 2), (4, 6, 5, 3), (3, 5, 4, 4, 2))
FD_GRID = [(s, a, loss, n) for s in FD_SIZES for a in ACTIVATION_NAMES for loss in LOSS_NAMES for n in (1, 4)]


@pytest.mark.parametrize("case", FD_GRID, ids=[_case_id(c) for c in FD_GRID])
def test_manual_matches_finite_differences(case):
    # ReLU is fine with random data and random biases: no z lands within h = 1e-6 of the kink
    rows = compare_finite_differences(_problem(case))
    assert_all_ok(rows)


def test_float32_agrees_within_the_float32_tolerance():
    p = random_problem((3, 5, 4, 2), activations="tanh", batch=5, seed=3).with_options(dtype="float32")
    m = manual.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss)
    assert m.layers[0].grad_w.dtype == np.float32  # float32 all the way, not upcast
    rows = compare_gradients(p)
    assert [r.tol for r in rows] == pytest.approx([1e-4] * len(rows), rel=1e-9)  # README: rel ≤ 1e-4 in float32
    assert_all_ok(rows)


# sigmoid(±800) differs from 0 or 1 by e^-800 ≈ 1e-348, below the smallest float64: the
# exact answer in float64 is 0 or 1, so only a tolerance far below any real error is allowed
SATURATED_ABS_TOL = 1e-300


def test_sigmoid_saturates_without_overflow_warning():
    # warnings are errors in this suite (pyproject), so an overflow in exp would fail here
    z = np.array([[-1e4, -800.0, 0.0, 800.0, 1e4]])
    sig = ACTIVATIONS["sigmoid"]
    y = sig.forward(z)
    np.testing.assert_allclose(y, [[0.0, 0.0, 0.5, 1.0, 1.0]], rtol=0, atol=SATURATED_ABS_TOL)
    residual_z = sig.backward(np.ones_like(z), z, y)
    np.testing.assert_allclose(residual_z, [[0.0, 0.0, 0.25, 0.0, 0.0]], rtol=0, atol=SATURATED_ABS_TOL)


def test_saturated_network_matches_jax_without_warnings():
    p = random_problem((3, 4, 2), activations="sigmoid", batch=5, seed=1)
    params = [{"w": layer["w"] * 1e4, "b": layer["b"]} for layer in p.params]  # |z| ~ 1e4
    g = manual.gradients(params, p.x, p.t, activations=p.activations)
    assert all(np.all(np.isfinite(getattr(lg, q))) for lg in g.layers for q in manual.QUANTITIES)
    assert_all_ok(compare_gradients(p, params))


# the loss below is 1e4 / 2 up to log(1 + e^-1e4) ≈ 1e-4343: exact in float64 but for rounding
HUGE_LOGIT_REL_TOL = 1e-15


def test_cross_entropy_is_stable_for_huge_logits():
    ce = LOSSES["cross-entropy"]
    y = np.array([[1e4, -1e4], [0.0, 0.0], [-1e4, 1e4]])  # 3 classes by row, 2 samples by column
    t = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # sample 0 right with certainty, sample 1 wrong by 1e4
    loss = float(ce.forward(y, t))
    assert abs(loss - 5e3) <= HUGE_LOGIT_REL_TOL * 5e3
    residual_y = ce.backward(y, t)  # (softmax − t) / N
    np.testing.assert_allclose(residual_y, [[0.0, 0.0], [0.0, -0.5], [0.0, 0.5]], rtol=0, atol=SATURATED_ABS_TOL)
    ref = reference.gradients(
        [{"w": np.eye(3), "b": np.zeros((3, 1))}], y, t, activations=("identity",), loss="cross-entropy"
    )
    assert abs(ref["loss"] - loss) <= HUGE_LOGIT_REL_TOL * 5e3
    np.testing.assert_allclose(residual_y, ref["residual_y"], rtol=0, atol=SATURATED_ABS_TOL)


def test_huge_logit_network_matches_jax():
    p = random_problem((3, 4, 3), loss="cross-entropy", batch=5, seed=2)  # identity output: logits
    params = [p.params[0], {"w": p.params[1]["w"] * 1e4, "b": p.params[1]["b"]}]
    g = manual.gradients(params, p.x, p.t, activations=p.activations, loss=p.loss)
    assert np.isfinite(g.loss) and g.loss > 1.0  # large and finite, no overflow
    assert_all_ok(compare_gradients(p, params))


def _soft_targets(p):
    # columns of uniform(0, 1) numbers: they do not sum to 1 (here 0.3 to 2.7 per column)
    t = np.random.default_rng(5).uniform(0, 1, size=p.t.shape)
    assert np.all(np.abs(t.sum(axis=0) - 1) > 0.05)
    return replace(p, t=t)


def test_cross_entropy_with_soft_targets_not_summing_to_1_agrees_with_jax():
    p = _soft_targets(random_problem((3, 4, 3), loss="cross-entropy", batch=6, steps=0))
    assert_all_ok(compare_gradients(p))
    assert_all_ok(compare_finite_differences(p))


def test_cross_entropy_backward_that_assumes_targets_sum_to_1_fails_on_soft_targets(monkeypatch):
    p = _soft_targets(random_problem((3, 4, 3), loss="cross-entropy", batch=6, steps=0))
    real = LOSSES["cross-entropy"]

    def softmax_minus_t(y, t):  # right only when every column of t sums to 1
        e = np.exp(y - y.max(axis=0, keepdims=True))
        return (e / e.sum(axis=0, keepdims=True) - t) / y.shape[1]

    monkeypatch.setitem(LOSSES, "cross-entropy", replace(real, backward=softmax_minus_t))
    rows = compare_gradients(p)
    assert (1, "residual_y") in {(r.layer, r.quantity) for r in rows if not r.ok}
