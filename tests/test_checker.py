"""The checking code itself: NaN never passes, a planted deviation is found at its step, the
float64 bounds are pinned by literals, and chunked comparisons equal unchunked ones."""

import numpy as np
import pytest
from conftest import failing

import fcgrad.engine.trajectory as trajectory
from fcgrad import manual
from fcgrad.engine.compare import rel_row
from fcgrad.engine.problems import example, random_problem
from fcgrad.engine.run import check, compare_finite_differences, compare_gradients
from fcgrad.engine.trajectory import compare_trajectories
from fcgrad.manual.errors import FcgradError

PLANT_STEPS = 400
PLANTED_AT = 237  # mid-run, inside a chunk rather than on its edge


def _planted(monkeypatch, at: int, *, loss: float = 0.0, param: float = 0.0):
    """Make manual's step number ``at`` (counted over the whole run) return its loss, or entry [0, 0] of
    layer 0's w, off by a little."""
    real = manual.network.run_steps
    calls = {"n": 0}

    def run_steps(step, params, steps, **kw):
        def planted_step(p):
            value, new = step(p)
            if calls["n"] == at:
                value = value + loss
                new = [dict(layer) for layer in new]
                new[0]["w"] = new[0]["w"].copy()
                new[0]["w"][0, 0] += param  # one entry of one array
            calls["n"] += 1
            return value, new

        return real(planted_step, params, steps, **kw)

    monkeypatch.setattr(manual.network, "run_steps", run_steps)


@pytest.mark.parametrize("dtype, size", [("float64", 1e-9), ("float32", 1e-3)])
def test_a_parameter_planted_at_one_step_fails_and_names_that_step(dtype, size, monkeypatch):
    p = example("and").with_options(steps=PLANT_STEPS, dtype=dtype)
    _planted(monkeypatch, PLANTED_AT, param=size)
    rows = {(r.layer, r.quantity): r for r in compare_trajectories(p).rows}
    assert not rows[(0, "w")].ok
    assert rows[(0, "w")].first_bad_step == PLANTED_AT
    if dtype == "float32":  # one step from manual's own parameters: only the planted row and step differ
        assert failing(rows.values()) == {(0, "w")}


@pytest.mark.parametrize("dtype, size", [("float64", 1e-9), ("float32", 1e-3)])
def test_a_loss_planted_at_one_step_fails_and_names_that_step(dtype, size, monkeypatch):
    p = example("and").with_options(steps=PLANT_STEPS, dtype=dtype)
    _planted(monkeypatch, PLANTED_AT, loss=size)
    rows = {(r.layer, r.quantity): r for r in compare_trajectories(p).rows}
    assert failing(rows.values()) == {(-1, "loss")}
    assert rows[(-1, "loss")].first_bad_step == PLANTED_AT


def test_a_deviation_at_the_last_step_is_not_missed(monkeypatch):
    p = example("and").with_options(steps=50)
    _planted(monkeypatch, 49, param=1e-9)
    rows = compare_trajectories(p).rows
    assert [r.first_bad_step for r in rows if not r.ok] == [49]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["manual", "reference", "both"])
def test_nan_or_inf_never_passes_a_gradient_row(bad, side):
    a, r = np.ones((3, 2)), np.ones((3, 2))
    if side in ("manual", "both"):
        a[1, 1] = bad
    if side in ("reference", "both"):
        r[1, 1] = bad
    assert not rel_row(0, "grad_w", a, r, 1e-12).ok


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nan_in_a_manual_parameter_fails_the_trajectory(dtype, monkeypatch):
    # NaN planted at the last step, where no later loss can turn it into a divergence
    p = example("and").with_options(steps=30, dtype=dtype)
    _planted(monkeypatch, 29, param=np.nan)
    rows = compare_trajectories(p).rows
    assert (0, "w") in failing(rows)
    assert next(r for r in rows if r.quantity == "w" and r.layer == 0).first_bad_step == 29


def test_nan_in_a_manual_gradient_fails_gradients_and_finite_differences(monkeypatch):
    p = random_problem((3, 4, 2), batch=5, steps=0)
    real = manual.network.fc_backward

    def backward(residual_y, w, cache, act):
        g = real(residual_y, w, cache, act)
        return g._replace(grad_b=g.grad_b * np.nan)

    monkeypatch.setattr(manual.network, "fc_backward", backward)
    assert {(0, "grad_b"), (1, "grad_b")} <= failing(compare_gradients(p))
    assert {(0, "grad_b"), (1, "grad_b")} <= failing(compare_finite_differences(p))


@pytest.mark.parametrize("relative, passes", [(1e-9, False), (1e-11, False), (1e-14, True), (0.0, True)])
def test_float64_gradient_bound_is_pinned(relative, passes):
    r = np.linspace(-2.0, 3.0, 12).reshape(3, 4)
    a = r * (1 + relative)
    p = random_problem((3, 2), steps=0)
    from fcgrad.engine import tolerances as tol

    assert rel_row(0, "grad_w", a, r, tol.grad_rel_tol(p.dtype)).ok is passes


@pytest.mark.parametrize("offset, passes", [(1e-9, False), (1e-11, False), (1e-14, True)])
def test_float64_trajectory_bound_is_pinned(offset, passes, monkeypatch):
    p = example("and").with_options(steps=20)
    _planted(monkeypatch, 10, param=offset)
    rows = compare_trajectories(p).rows
    assert all(r.ok for r in rows) is passes


@pytest.mark.parametrize("chunk", [1, 2, 3])
@pytest.mark.slow
def test_rows_are_the_same_whatever_the_chunk_size(chunk, monkeypatch):
    p = random_problem((3, 4, 2), activations="relu", batch=5, steps=11).with_options(dtype="float32")
    whole = compare_trajectories(p, keep_history=True)
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", chunk)
    calls = []
    parts = compare_trajectories(p, keep_history=True, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(min(11, k), 11) for k in range(chunk, 11 + chunk, chunk)]  # one call per chunk
    for key, value in whole.histories.items():
        assert parts.histories[key].shape == value.shape, key
        np.testing.assert_allclose(parts.histories[key], value, rtol=0, atol=1e-6, err_msg=key)
    assert [(r.layer, r.quantity, r.ok) for r in parts.rows] == [(r.layer, r.quantity, r.ok) for r in whole.rows]


# Two offsets of manual's layer-0 w, each 0.7 of the float64 bound (max|w| < 1 here, so the bound is 1e-12), on
# either side of a chunk boundary (chunks of 4 steps: 0-3, 4-7, 8-11). Alone each stays within the bound; under
# the global rule both sides train freely, so the first is still there when the second comes and their sum,
# 1.4e-12, is beyond it. A JAX side restarted from manual's parameters at each chunk would forget the first.
DRIFT_OFFSET = 0.7e-12


@pytest.mark.parametrize("planted_at, first_bad", [((2, 6), 6), ((2,), None), ((6,), None)], ids=["both", "2", "6"])
def test_the_global_rule_carries_drift_across_chunk_boundaries(planted_at, first_bad, monkeypatch):
    p = random_problem((3, 4, 2), activations="tanh", batch=5, steps=12)
    assert max(np.abs(layer["w"]).max() for layer in p.params) < 1  # the bound is 1e-12 at every step
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 4)
    for at in planted_at:
        _planted(monkeypatch, at, param=DRIFT_OFFSET)
    chunks = []
    rows = compare_trajectories(p, progress=lambda done, total: chunks.append(done)).rows
    assert chunks == [4, 8, 12]
    w0 = next(r for r in rows if (r.layer, r.quantity) == (0, "w"))
    assert w0.rule == "global" and w0.first_bad_step == first_bad


def test_chunked_comparison_still_finds_a_planted_step(monkeypatch):
    monkeypatch.setattr(trajectory, "MAX_CHUNK_STEPS", 3)
    p = example("and").with_options(steps=40)
    _planted(monkeypatch, 22, param=1e-9)
    rows = compare_trajectories(p).rows
    assert next(r for r in rows if (r.layer, r.quantity) == (0, "w")).first_bad_step == 22
    assert min(r.first_bad_step for r in rows if not r.ok) == 22  # the others follow, from the shifted run


def test_both_sides_diverging_at_the_same_step_keeps_the_rows_before():
    p = random_problem((2, 3, 1), activations="identity", batch=4, lr=50.0, steps=200)
    report = check(p, finite_differences=False)
    assert report.divergence is not None and report.divergence.side == "both"
    assert report.diverged_at_step == report.steps_compared < 200
    assert report.trajectory and all(r.ok for r in report.trajectory)


def test_one_side_diverging_fails(monkeypatch):
    p = example("and").with_options(steps=60)
    _planted(monkeypatch, 30, loss=np.inf)
    report = check(p, finite_differences=False)
    assert report.divergence.side == "manual" and report.diverged_at_step == 30
    assert not report.ok
    assert report.steps_compared == 30


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf, "1e-3", True])
@pytest.mark.parametrize("name", ["rtol", "atol"])
def test_check_refuses_a_bad_tolerance(name, bad):
    with pytest.raises(FcgradError, match=name):
        check(example("and").with_options(steps=1), **{name: bad})


def test_rtol_and_atol_override_and_are_reported():
    p = example("and").with_options(steps=5)
    report = check(p, rtol=1e-3, atol=1e-5, finite_differences=False)
    assert report.rtol == 1e-3 and report.atol == 1e-5
    assert {r.tol for r in report.gradients} == {1e-3}
    assert all(1e-5 <= r.tol for r in report.trajectory)
