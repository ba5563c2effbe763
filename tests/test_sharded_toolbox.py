"""``--devices`` with optimizers, mini-batches, L2, dropout and layer norm: five sides at every step.

Each sharded side is held against its own engine's one-device step, and manual against JAX, every step
from the one-device manual side's state; a sharding mistake planted on one side fails that side's rows only.
"""

import numpy as np
import pytest

from fcgrad.engine.check_run import check_run
from fcgrad.engine.description import describe
from fcgrad.manual import sharded as manual_sharded
from fcgrad.reference import sharded

PAIRS = ("jax vs manual", "manual-sharded vs manual", "jax-jit-sharded vs jax", "jax-shard_map-sharded vs jax")


def _run(**given):
    return check_run(describe(given)).report


def _failing_pairs(report) -> set[str]:
    return {pair for pair, _ in report.failures()}


@pytest.mark.parametrize(
    "given",
    [
        {"optimizer": "adam", "steps": 8},  # the blog's AND over 4 devices: one column each
        {"spec": "6-8:tanh:drop0.2:ln-3", "optimizer": "rmsprop", "batch_size": 16, "steps": 6, "l2": 0.01},
        {"spec": "5-7:relu-4", "loss": "hinge", "optimizer": "nesterov", "batch": 30, "batch_size": 13, "steps": 6},
    ],
    ids=["adam-and", "rmsprop-dropout-layernorm-l2", "nesterov-hinge-uneven-batches"],
)
def test_every_side_agrees_with_its_baseline_at_every_step(given):
    report = _run(devices=4 if "spec" not in given else 3, **given)
    assert [c.pair for c in report.comparisons] == list(PAIRS)
    assert all(c.rows and all(r.ok for r in c.rows) for c in report.comparisons), report.failures()
    assert report.ok


def test_a_mean_of_per_shard_means_fails_the_manual_shards_only(monkeypatch):
    monkeypatch.setattr(manual_sharded, "shard_weight", lambda n_shard, n_total, n_shards: 1 / n_shards)
    report = _run(devices=3, sizes=(3, 4, 2), batch=10, optimizer="adam", steps=4)  # shards of 4, 3, 3 columns
    assert _failing_pairs(report) == {"manual-sharded vs manual"}


def test_a_psum_after_grad_in_shard_map_fails_that_side_only(monkeypatch):
    real = sharded._shard_value_and_grad

    def summed_twice(*args, **kwargs):
        return real(*args, **{**kwargs, "form": "psum-after-grad"})

    monkeypatch.setattr(sharded, "_shard_value_and_grad", summed_twice)
    sharded.step.clear_cache()
    try:
        report = _run(devices=2, optimizer="momentum", steps=3)
    finally:
        sharded.step.clear_cache()
    assert _failing_pairs(report) == {"jax-shard_map-sharded vs jax"}


def test_l2_added_on_every_shard_fails_the_manual_shards(monkeypatch):
    real = manual_sharded.sharded_spec_gradients

    def l2_per_shard(params, x, t, spec, loss, masks, n_shards, l2=0.0):
        g = real(params, x, t, spec, loss, masks, n_shards, l2)
        extra = [{**layer, "w": layer["w"] + (n_shards - 1) * l2 * p["w"]} for layer, p in zip(g.grads, params)]
        return g._replace(grads=extra)

    from fcgrad.engine import sharded_toolbox

    monkeypatch.setattr(sharded_toolbox, "sharded_spec_gradients", l2_per_shard)
    report = _run(devices=2, spec="4-6:tanh-3", optimizer="sgd", l2=0.1, steps=3)
    assert _failing_pairs(report) == {"manual-sharded vs manual"}


def test_the_histories_hold_every_side_at_every_step():
    report = _run(devices=2, optimizer="adam", steps=5)
    h = report.histories
    assert report.sides == ("manual", "jax", "manual-sharded", "jax-jit-sharded", "jax-shard_map-sharded")
    for side in report.sides:  # entry 0: the initial parameters; entry k+1: the side's step k from manual's state k
        assert h[f"{side}/loss"].shape == (5,) and h[f"{side}/w0"].shape == (5 + 1, 2, 4)
    assert np.max(np.abs(h["manual-sharded/w0"] - h["manual/w0"])) <= 1e-12
