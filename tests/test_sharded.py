"""Data parallel: five sides agree, the shard_map gradient forms are pinned, and each planted mistake is named.

Runs on the 4 host CPU devices conftest asks JAX for. Problems are small and runs short
(a wrong all-reduce shows at the first step); N = 10 over 4 shards gives uneven shards 3, 3, 2, 2.
"""

import json
import math

import jax
import numpy as np
import pytest
from conftest import HOST_DEVICES, assert_all_ok

from fcgrad import manual, reference
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import errors
from fcgrad.engine.problems import example, mazur_example, random_problem
from fcgrad.engine.report_forms import from_sharded
from fcgrad.engine.sharded import (
    BIAS_UNREDUCED,
    DOUBLE_ALL_REDUCE,
    LOCAL_UPDATES,
    MEAN_OF_MEANS,
    UNEXPLAINED,
    arrange_devices,
    first_disagreement,
    sharded_check,
)
from fcgrad.manual import sharded as _manual_sharded  # noqa: F401 (manual.sharded below)
from fcgrad.manual.errors import FcgradError
from fcgrad.reference import sharded as _reference_sharded  # noqa: F401 (reference.sharded below)
from fcgrad.reports.sharded import text

STEPS = 15
UNEVEN = random_problem((3, 4, 4, 2), batch=10, seed=3, steps=STEPS)  # 4 shards of 3, 3, 2, 2
# the same shards with softmax cross-entropy on a linear output layer
UNEVEN_CE = random_problem((3, 4, 4, 2), batch=10, seed=3, loss="cross-entropy", steps=STEPS)
EVEN = example("and").with_options(steps=STEPS)  # the blog's AND: 4 shards of one sample
DEVICES = arrange_devices(HOST_DEVICES, platform="cpu")


def _common(p):
    return dict(activations=p.activations, loss=p.loss, dtype=p.dtype)


def _mistakes(report) -> dict[str, str]:
    return {f.mistake: f.side for f in report.findings}


# --- the all-reduce and the manual shards ------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_ring_all_reduce_gives_every_device_the_same_sum(n):
    rng = np.random.default_rng(n)
    buffers = [rng.standard_normal((5, 3)) for _ in range(n)]  # 15 entries: uneven chunks for 2, 4, 7
    out = manual.sharded.ring_all_reduce(buffers)
    assert len(out) == n
    for o in out:
        assert errors(o, np.sum(buffers, axis=0))[1] <= tol.GRAD_REL_TOL_F64
        assert errors(o, out[0]) == (0.0, 0.0)  # every device ends with copies of the same summed chunks


@pytest.mark.parametrize("n", [1, 3, 4, 10], ids=lambda n: f"{n}shards")
@pytest.mark.parametrize("loss", ["square", "cross-entropy"])
def test_manual_shards_with_global_n_equal_one_device(n, loss):
    p = random_problem((3, 4, 4, 2), batch=10, seed=3, loss=loss)
    one = manual.gradients(p.params, p.x, p.t, **_common(p))
    sh = manual.sharded.sharded_gradients(p.params, p.x, p.t, n, **_common(p))
    assert sum(sh.shard_sizes) == 10 and max(sh.shard_sizes) - min(sh.shard_sizes) <= 1
    assert errors(sh.loss, one.loss)[1] <= tol.GRAD_REL_TOL_F64
    for i, g in enumerate(one.layers):
        for replica in sh.reduced:
            assert errors(replica[i]["w"], g.grad_w)[1] <= tol.GRAD_REL_TOL_F64
            assert errors(replica[i]["b"], g.grad_b)[1] <= tol.GRAD_REL_TOL_F64
        assert errors(sh.residual_x[i], g.residual_x)[1] <= tol.GRAD_REL_TOL_F64  # shards side by side


def test_sharded_training_keeps_replicas_identical_and_matches_one_device():
    p = UNEVEN
    common = dict(lr=p.lr, steps=STEPS, **_common(p))
    one = manual.train(p.params, p.x, p.t, **common)
    sh = manual.sharded.sharded_train(p.params, p.x, p.t, 4, **common)
    assert first_disagreement(sh.replicas, tol.TRAJ_ABS_TOL_F64) is None
    assert np.max(np.abs(sh.losses - one.losses)) <= tol.TRAJ_ABS_TOL_F64
    for i in range(len(p.params)):
        for k in "wb":
            assert np.max(np.abs(sh.replicas[0][i][k] - one.params[i][k])) <= tol.TRAJ_ABS_TOL_F64


# --- the shard_map forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "factor"),
    [("explicit", 1), ("implicit", 1), ("psum-after-grad", HOST_DEVICES)],
    ids=["pcast-then-psum-is-the-gradient", "grad-of-replicated-is-already-summed", "psum-after-that-is-S-times"],
)
def test_shard_map_gradient_of_replicated_params(form, factor):
    p = UNEVEN
    one = reference.gradients(p.params, p.x, p.t, **_common(p))
    r = reference.sharded.gradients(p.params, p.x, p.t, devices=DEVICES, engine="shard_map", form=form, **_common(p))
    assert errors(r["loss"], one["loss"])[1] <= tol.GRAD_REL_TOL_F64
    for got, want in zip(r["layers"], one["layers"]):
        for q in ("grad_w", "grad_b"):
            assert errors(got[q], factor * want[q])[1] <= tol.GRAD_REL_TOL_F64, (form, q)


def test_padded_columns_follow_array_split_and_mask_the_padding():
    a = np.arange(10.0)[None]  # (1, 10)
    padded, mask = reference.sharded.padded_columns(a, 4)
    assert padded.shape == mask.shape == (1, 12)  # 4 blocks of 3: sizes 3, 3, 2, 2 plus one pad column each
    assert np.array_equal(padded[mask > 0], a.ravel())
    assert mask.sum() == 10


@pytest.mark.parametrize("p", [UNEVEN, UNEVEN_CE], ids=["square", "cross-entropy"])
@pytest.mark.parametrize("engine", reference.sharded.ENGINES)
def test_sharded_jax_gradients_over_uneven_shards(engine, p):
    # uneven shards are padded to one width: the padding must count for nothing in either loss (a zero target
    # alone hides it from cross-entropy, not from the square loss, whose padded outputs σ(b) are not zero)
    one = reference.gradients(p.params, p.x, p.t, **_common(p))
    r = reference.sharded.gradients(p.params, p.x, p.t, devices=DEVICES, engine=engine, **_common(p))
    assert errors(r["loss"], one["loss"])[1] <= tol.GRAD_REL_TOL_F64
    for got, want in zip(r["layers"], one["layers"]):
        for q in ("grad_w", "grad_b"):
            assert errors(got[q], want[q])[1] <= tol.GRAD_REL_TOL_F64, q


# --- the five-way check ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "n"),
    [
        (EVEN, 4),
        (UNEVEN, 4),
        (mazur_example().with_options(steps=STEPS), 1),  # one sample, frozen biases
    ],
    ids=["and-over-4", "uneven-10-over-4", "mazur-over-1"],
)
@pytest.mark.slow
def test_five_sides_agree_on_gradients_and_every_step(p, n):
    report = sharded_check(p, n, platform="cpu")
    assert report.findings == []
    for c in report.comparisons:
        assert_all_ok(c.rows)
    pairs = {c.pair for c in report.comparisons}
    assert {"manual-sharded vs manual", "jax-jit-sharded vs jax", "jax-shard_map-sharded vs jax"} <= pairs
    assert report.ok and "OK: all five sides agree" in text(report)
    data = from_sharded(None, report, 0.0, free=True).as_json()  # the --json object less its meta (and description)
    assert data["ok"] is True and data["form"] == "sharded free" and len(data["sides"]) == 5


# --- the data-parallel mistakes, each written out whole ---------------------------------------


def weight_of_a_mean_of_means(n_shard, n_total, n_shards):
    return 1 / n_shards  # each shard's local mean weighted alike, whatever its size


def all_reduce_twice(buffers):
    once = manual.sharded.ring_all_reduce(buffers)
    return manual.sharded.ring_all_reduce(once)  # the sum summed again: S times too large


def reduce_weights_only(local):
    reduced = manual.sharded.ring_all_reduce([np.concatenate([g.grad_w.ravel() for g in grads]) for grads in local])
    cuts = np.cumsum([g.grad_w.size for g in local[0]])[:-1]
    out = []
    for buffer, grads in zip(reduced, local):
        w = [part.reshape(g.grad_w.shape) for part, g in zip(np.split(buffer, cuts), grads)]
        out.append([{"w": w[i], "b": g.grad_b} for i, g in enumerate(grads)])  # grad_b: this shard's part only
    return out


def no_all_reduce(local):
    return [[{"w": g.grad_w, "b": g.grad_b} for g in grads] for grads in local]  # each replica its own shard's part


def test_mean_of_per_shard_means_is_named_with_uneven_shards(monkeypatch):
    monkeypatch.setattr(manual.sharded, "shard_weight", weight_of_a_mean_of_means)
    report = sharded_check(UNEVEN, 4, platform="cpu")
    assert _mistakes(report) == {MEAN_OF_MEANS: "manual-sharded"}
    assert f"FOUND {MEAN_OF_MEANS} in manual-sharded" in text(report)


def test_mean_of_per_shard_means_is_harmless_with_even_shards(monkeypatch):
    monkeypatch.setattr(manual.sharded, "shard_weight", weight_of_a_mean_of_means)
    assert sharded_check(EVEN, 4, platform="cpu").ok  # n_k/N = 1/S when every shard has N/S columns


def test_double_all_reduce_in_shard_map_is_named():
    report = sharded_check(UNEVEN, 4, platform="cpu", form="psum-after-grad")
    assert _mistakes(report) == {DOUBLE_ALL_REDUCE: "jax-shard_map-sharded"}


def test_double_all_reduce_by_hand_is_named(monkeypatch):
    monkeypatch.setattr(manual.sharded, "all_reduce", all_reduce_twice)
    report = sharded_check(UNEVEN, 4, platform="cpu")
    assert _mistakes(report) == {DOUBLE_ALL_REDUCE: "manual-sharded"}


def test_bias_gradient_left_unreduced_is_named_and_replicas_part_after_step_1(monkeypatch):
    monkeypatch.setattr(manual.sharded, "reduce_gradients", reduce_weights_only)
    report = sharded_check(UNEVEN, 4, platform="cpu")
    assert [(f.side, f.mistake, f.step) for f in report.findings] == [("manual-sharded", BIAS_UNREDUCED, 1)]
    assert " b of replica " in report.findings[0].detail


def test_replicas_updating_from_local_gradients_are_named_with_the_first_step(monkeypatch):
    monkeypatch.setattr(manual.sharded, "reduce_gradients", no_all_reduce)
    report = sharded_check(UNEVEN, 4, platform="cpu")
    assert [(f.side, f.mistake, f.step) for f in report.findings] == [("manual-sharded", LOCAL_UPDATES, 1)]
    assert "FOUND replicas updating from local gradients in manual-sharded (first after step 1)" in text(report)


def test_first_disagreement_names_the_earliest_step_and_the_replica():
    same = {"w": np.zeros((7, 2, 2)), "b": np.zeros((7, 2, 1))}  # 6 steps of a one-layer net, entry 0 initial
    w_late = {"w": same["w"].copy(), "b": same["b"]}
    w_late["w"][5:, 1, 0] = 1e-9  # replica 1: w agrees for 4 steps, then parts by 1000× the tolerance
    b_early = {"w": same["w"], "b": same["b"].copy()}
    b_early["b"][3:, 0, 0] = -1e-9  # replica 2: b parts after step 3, found after replica 1's w
    limit = tol.TRAJ_ABS_TOL_F64
    assert first_disagreement([[same], [w_late], [b_early]], limit) == (3, "layer 0 b of replica 2")
    assert first_disagreement([[same], [w_late], [same]], limit) == (5, "layer 0 w of replica 1")
    assert first_disagreement([[same], [same]], limit) is None


def test_a_near_miss_of_a_known_mistake_is_not_named_as_it(monkeypatch):
    # 1e-9 relative away from a mean of means: a mismatch (tolerance 1e-12), but not that mistake
    near = lambda n_shard, n_total, n_shards: (1 + 1e-9) / n_shards  # noqa: E731
    monkeypatch.setattr(manual.sharded, "shard_weight", near)
    report = sharded_check(UNEVEN, 4, platform="cpu")
    assert _mistakes(report) == {UNEXPLAINED: "manual-sharded"}


# --- bad input ---------------------------------------------------------------------------------


def test_more_devices_than_jax_has_is_refused():
    with pytest.raises(FcgradError, match=r"--devices 64: expected 64 devices, got 4 cpu"):
        arrange_devices(64, platform="cpu")


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_a_non_positive_device_count_is_refused(n):
    with pytest.raises(FcgradError, match="--devices: expected a positive number of devices"):
        arrange_devices(n)


def test_more_devices_than_samples_is_refused():
    p = random_problem((3, 2), batch=3, steps=1)
    with pytest.raises(FcgradError, match=r"--devices 4: expected at most N = 3 devices"):
        sharded_check(p, 4, platform="cpu")


def test_manual_refuses_more_shards_than_samples():
    p = random_problem((3, 2), batch=3)
    with pytest.raises(FcgradError, match="expected at most N = 3 shards"):
        manual.sharded.sharded_gradients(p.params, p.x, p.t, 4)


def test_jax_sees_the_four_host_devices():
    assert len(jax.devices("cpu")) == HOST_DEVICES
    assert [d.id for d in DEVICES] == [0, 1, 2, 3]


# --- the benchmark of a sharded step: structure, never timings ----------------------------------


def test_sharded_benchmark_quick_run_writes_one_row_per_variant(tmp_path, capsys):
    from fcgrad.benchmarks import sharded as bench

    path = tmp_path / "sharded.json"
    assert bench.main(["--quick", "--sizes", "2-4-1", "--dtypes", "float64", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    want = {"manual-1", "manual-4", "jax-1", "jax-jit-4", "jax-shard_map-4", "psum-4"}
    assert {r["variant"] for r in rows} == want
    assert all(r["step_s_median"] > 0 and r["sizes"] == "2-4-1" and r["batch"] == 4 for r in rows)
    assert {r["variant"] for r in rows if r["devices"] == 4} == want - {"manual-1", "jax-1"}
    assert "jax-shard_map-4" in capsys.readouterr().out


def test_sharded_benchmark_refuses_more_devices_than_jax_has(capsys):
    from fcgrad.benchmarks import sharded as bench

    assert bench.main(["--quick", "--devices", "64"]) == 2
    assert "expected 64 devices, got 4" in capsys.readouterr().err


@pytest.mark.parametrize("doc", ["docs/data_parallel.md", "benchmarks/README.md"])
def test_modelled_table_in_the_doc_is_the_one_the_model_prints(doc):
    from pathlib import Path

    from fcgrad.benchmarks import sharded_model

    text = (Path(__file__).resolve().parents[1] / doc).read_text(encoding="utf-8")
    assert sharded_model.markdown() in text


def test_ring_all_reduce_model_sends_2_s_minus_1_over_s_of_the_gradients():
    from fcgrad.benchmarks import sharded_model as m

    assert m.all_reduce_s(10**6, 1, m.NVLINK_BPS) == 0.0  # one device: nothing to send
    two, eight = m.all_reduce_s(10**9, 2, 1e9) - 2 * m.RING_STEP_S, m.all_reduce_s(10**9, 8, 1e9) - 14 * m.RING_STEP_S
    assert math.isclose(two, 4.0) and math.isclose(eight, 7.0)  # 4 GB of float32 × 2·(S−1)/S at 1 GB/s
    assert m.parameters((784, 256, 256, 10)) == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10


def test_a_run_whose_histories_would_not_fit_is_refused_before_any_work():
    p = random_problem((784, 256, 256, 10), batch=4, steps=2_000)  # 2 MB of parameters × 2001 steps × 8 sides
    with pytest.raises(FcgradError, match=r"expected at most 1024 MiB, got \d+ MiB for 2000 steps: use fewer --steps"):
        sharded_check(p, 4, platform="cpu")
