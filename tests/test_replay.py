"""Every ``--save`` can be replayed by someone else's code: the archive and its meta are all a replay needs.

The trainers here are written in this file, from the formulas alone (forward in jax.numpy, derivatives
by ``jax.grad``, Adam and SGD by hand): they share no code with fcgrad. Each one reads a saved run's data,
initial parameters, batches, dropout masks and settings, trains, and must land on every saved step of
every side to 1e-12.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcgrad.cli.main import main

REPLAY_TOL = 1e-12  # float64 replays of a few steps agree to a few 1e-16; 1e-12 leaves room and still sees any slip


def _load(path) -> tuple[dict, dict]:
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, json.loads(str(arrays.pop("meta")))


def _layers(arrays: dict, name: str) -> list[dict]:
    """Every layer's parameters stored under ``name`` ("{}_init", "manual/{}"), ``{}`` standing for w0, b0, ..."""
    layers, i = [], 0
    while name.format(f"w{i}") in arrays:
        keys = [k for k in ("w", "b", "gamma", "beta") if name.format(f"{k}{i}") in arrays]
        layers.append({k: arrays[name.format(f"{k}{i}")] for k in keys})
        i += 1
    return layers


# ---- an Adam + mini-batch + dropout run --------------------------------------------------------------------


def _spec_forward(params, x, masks, activations, drops):
    for p, mask, act, drop in zip(params, masks, activations, drops):
        y = p["w"].T @ x + p["b"]
        y = {"tanh": jnp.tanh, "identity": lambda v: v}[act](y)
        x = y * mask / (1.0 - drop) if drop else y
    return x


def _cross_entropy(y, t):
    return -jnp.sum(t * jax.nn.log_softmax(y, axis=0)) / y.shape[1]


def _adam(params, grads, state, k, lr, b1, b2, eps):
    m = jax.tree.map(lambda m, g: (1 - b1) * g + b1 * m, state["m"], grads)
    v = jax.tree.map(lambda v, g: (1 - b2) * g * g + b2 * v, state["v"], grads)
    new = jax.tree.map(
        lambda p, m, v: p - lr * (m / (1 - b1 ** (k + 1))) / (jnp.sqrt(v / (1 - b2 ** (k + 1))) + eps), params, m, v
    )
    return new, {"m": m, "v": v}


def test_a_saved_adam_mini_batch_dropout_run_replays_in_an_independent_trainer(tmp_path, capsys):
    path = tmp_path / "adam.npz"
    argv = ["check", "--spec", "4-8:tanh:drop0.25-3", "--optimizer", "adam", "--lr", "0.01", "--batch-size", "16",
            "--steps", "10", "--save", str(path), "-q"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr()
    arrays, meta = _load(path)
    run = meta["problem"]
    assert (run["optimizer"], run["batch_size"], run["steps"], run["loss"]) == ("adam", 16, 10, "cross-entropy")
    hyper = run["hyperparameters"]
    activations, drops = ("tanh", "identity"), (0.25, 0.0)
    x, t = arrays["X"], arrays["T"]

    def loss(params, xb, tb, masks):
        return _cross_entropy(_spec_forward(params, xb, masks, activations, drops), tb)

    value_and_grad, adam = jax.jit(jax.value_and_grad(loss)), jax.jit(_adam)  # compiled: one program per batch size

    with jax.enable_x64(True):
        params = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in _layers(arrays, "{}_init")]
        state = {"m": jax.tree.map(jnp.zeros_like, params), "v": jax.tree.map(jnp.zeros_like, params)}
        saved_m, saved_r = _layers(arrays, "manual/{}"), _layers(arrays, "jax/{}")
        for k in range(run["steps"]):
            idx = arrays["batch_index"][k]
            idx = idx[idx >= 0]
            masks = [jnp.asarray(arrays["mask0"][k][:, : idx.size]), None]
            xb, tb = jnp.asarray(x[:, idx]), jnp.asarray(t[:, idx])
            value, grads = value_and_grad(params, xb, tb, masks)
            assert float(value) == pytest.approx(arrays["manual/loss"][k], rel=0, abs=REPLAY_TOL)
            params, state = adam(params, grads, state, k, run["lr"], hyper["b1"], hyper["b2"], hyper["eps"])
            for i, layer in enumerate(params):
                for key, value in layer.items():
                    # manual trains freely: the replay follows it step after step
                    assert np.max(np.abs(saved_m[i][key][k + 1] - np.asarray(value))) <= REPLAY_TOL, (k, i, key)
                    # the reference side's step k+1 is one JAX+optax step from manual's step k (rule local)
                    assert np.max(np.abs(saved_r[i][key][k + 1] - np.asarray(value))) <= REPLAY_TOL, (k, i, key)
                    for moment, replayed in (("mu", state["m"]), ("nu", state["v"])):  # Adam's moments, both sides
                        for side in ("manual", "jax"):
                            saved = arrays[f"{side}/{moment}_{key}{i}"][k + 1]
                            assert np.max(np.abs(saved - np.asarray(replayed[i][key]))) <= REPLAY_TOL, (side, k, i)


# ---- a --devices run -----------------------------------------------------------------------------------------

SIDES = ("manual", "jax", "manual-sharded", "jax-jit-sharded", "jax-shard_map-sharded")


def test_a_saved_devices_run_replays_every_side_in_an_independent_trainer(tmp_path, capsys):
    path = tmp_path / "sharded.npz"
    argv = ["check", "--devices", "2", "--sizes", "3,4,2", "--batch", "5", "--steps", "15", "--save", str(path), "-q"]
    assert main(argv) == 0, capsys.readouterr()
    arrays, meta = _load(path)
    run = meta["problem"]
    assert run["devices"] == 2 and list(arrays["shard_sizes"]) == [3, 2]

    def loss(params, x, t):
        for p in params:
            x = jax.nn.sigmoid(p["w"].T @ x + p["b"])
        return jnp.sum((x - t) ** 2) / x.shape[1] / 2

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    with jax.enable_x64(True):
        params = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in _layers(arrays, "{}_init")]
        x, t = jnp.asarray(arrays["X"]), jnp.asarray(arrays["T"])
        for k in range(run["steps"]):
            value, grads = value_and_grad(params, x, t)
            for side in SIDES:
                assert abs(arrays[f"{side}/loss"][k] - float(value)) <= REPLAY_TOL, (side, k)
            params = jax.tree.map(lambda p, g: p - run["lr"] * g, params, grads)
            for i, layer in enumerate(params):
                for key, value in layer.items():
                    for side in SIDES:
                        saved = arrays[f"{side}/{key}{i}"][k + 1]
                        assert np.max(np.abs(saved - np.asarray(value))) <= REPLAY_TOL, (side, k, i, key)
                    for r, replica in enumerate(arrays[f"manual-sharded/replicas/{key}{i}"]):  # every replica
                        assert np.max(np.abs(replica[k + 1] - np.asarray(value))) <= REPLAY_TOL, (r, k, i, key)
