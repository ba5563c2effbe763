"""Data parallel by hand: the batch's N columns split over S shards, gradients summed by an all-reduce.

Each shard runs the one network's forward and backward (``manual.network.spec_loss_and_gradients``)
on its own columns, with the loss's residual rescaled from the shard-local mean to the GLOBAL 1/N:

    residual_y_k = (y_k − t_k) / n_k · (n_k / N) = (y_k − t_k) / N        (out, n_k)

so every shard's ``grad_w`` and ``grad_b`` is its part of the one-device sum over columns, and
the all-reduce (a ring, written out below) adds the parts. ``residual_x`` stays with its shard:
concatenated in shard order it is the one-device ``residual_x``. Every shard holds a replica of
the parameters and updates it from the all-reduced gradients, so the replicas stay identical.
"""

from typing import NamedTuple

import numpy as np

from fcgrad.manual import network, validate
from fcgrad.manual.errors import DivergenceError, FcgradError
from fcgrad.manual.layer import LayerGrads
from fcgrad.manual.network import Params, SpecGradients, blog_spec, l2_penalty, sgd_update


class ShardGradients(NamedTuple):
    loss: float  # L over the whole batch (the all-reduced sum of the shards' parts)
    shard_sizes: tuple[int, ...]  # n_k of each shard, summing to N
    local: list[list[LayerGrads]]  # per shard, per layer: its part, before the all-reduce
    reduced: list[Params]  # per replica, per layer: {"w": grad_w, "b": grad_b} after the all-reduce
    residual_x: list[np.ndarray]  # per layer: the shards' residual_x side by side, (in, N)


class ShardedTrajectory(NamedTuple):
    losses: np.ndarray  # (steps,) the loss at each step's parameters (replica 0's)
    replicas: list  # per replica, per layer {"w": (steps+1, in, out), "b": (steps+1, out, 1)}
    final: list[Params]  # per replica, the parameters after the last step


def split_columns(a: np.ndarray, n_shards: int) -> list[np.ndarray]:
    """The N columns in ``n_shards`` contiguous blocks, sizes differing by at most one (``np.array_split``)."""
    return np.array_split(a, n_shards, axis=1)


def shard_weight(n_shard: int, n_total: int, n_shards: int) -> float:
    """From a shard-local mean (1/n_shard) to its share of the global mean (1/N): n_shard / N.

    ``n_shards`` is unused by the right weight; a mean of per-shard means would use 1 / n_shards.
    """
    return n_shard / n_total


def ring_all_reduce(buffers: list[np.ndarray]) -> list[np.ndarray]:
    """Every device's array in, every device gets the elementwise sum out: a ring all-reduce.

    Each device's array is cut into S chunks. Reduce-scatter: for S−1 rounds, device d sends
    chunk (d − r) mod S to device d+1, which adds it to its own; afterwards device d holds the
    full sum of chunk (d + 1) mod S. All-gather: for S−1 rounds the summed chunks travel on
    around the ring and are copied. Each device sends 2·(S−1) chunks, about 2·(S−1)/S of the array.
    """
    n = len(buffers)
    flat = [b.ravel().copy() for b in buffers]  # each device's own buffer, (size,)
    edges = [flat[0].size * c // n for c in range(n + 1)]
    chunk = [slice(edges[c], edges[c + 1]) for c in range(n)]  # chunk c of every buffer
    for r in range(n - 1):  # reduce-scatter
        sent = [flat[d][chunk[(d - r) % n]].copy() for d in range(n)]  # all sends of a round happen at once
        for d in range(n):
            flat[d][chunk[(d - 1 - r) % n]] += sent[(d - 1) % n]  # the chunk arriving from device d − 1
    for r in range(n - 1):  # all-gather: device d owns the finished chunk (d + 1 − r) mod S
        sent = [flat[d][chunk[(d + 1 - r) % n]].copy() for d in range(n)]
        for d in range(n):
            flat[d][chunk[(d - r) % n]] = sent[(d - 1) % n]
    return [f.reshape(buffers[0].shape) for f in flat]


def reduce_gradients(local: list[list[LayerGrads]]) -> list[Params]:
    """All-reduce every layer's grad_w and grad_b over the shards -> per replica ``[{"w", "b"}, ...]``.

    Each shard's gradients travel as one flat buffer (a bucket): one all-reduce per step.
    """
    arrays = [[a for g in grads for a in (g.grad_w, g.grad_b)] for grads in local]  # per shard: w0, b0, w1, ...
    summed = all_reduce([np.concatenate([a.ravel() for a in shard]) for shard in arrays])  # S × (P,)
    cuts = np.cumsum([a.size for a in arrays[0]])[:-1]
    out = []
    for buffer in summed:
        parts = [part.reshape(a.shape) for part, a in zip(np.split(buffer, cuts), arrays[0])]
        out.append([{"w": parts[2 * i], "b": parts[2 * i + 1]} for i in range(len(local[0]))])
    return out


all_reduce = ring_all_reduce  # looked up at call time, so a test can plant a wrong collective


def shard_part(params, x_k, t_k, n_total: int, n_shards: int, spec, loss: str, masks=None) -> SpecGradients:
    """One shard's part of the step: the one network on its columns ``x_k`` (in, n_k), ``t_k`` (out, n_k),
    with its residual_y (and loss) weighted n_k/N, so that its gradients are its part of the global sums."""
    weight = shard_weight(x_k.shape[1], n_total, n_shards)  # n_k / N
    return network.spec_loss_and_gradients(params, x_k, t_k, spec, loss, masks, weight=weight)  # mean × n_k/N


def shard_step(replicas: list[Params], xs, ts, n_total: int, activations, loss: str) -> ShardGradients:
    """Every shard's forward and backward with the global 1/N, then the all-reduce. Unchecked.

    ``replicas[k]`` are the parameters shard k holds; ``xs[k]`` (in, n_k) and ``ts[k]`` (out, n_k) its columns.
    """
    spec = blog_spec(replicas[0], activations)
    shards = [shard_part(p, x_k, t_k, n_total, len(xs), spec, loss) for p, x_k, t_k in zip(replicas, xs, ts)]
    local = [g.layers for g in shards]
    loss_value = float(all_reduce([np.reshape(g.loss, (1,)) for g in shards])[0][0])  # Σ of the shards' parts of L
    residual_x = [np.concatenate([g[i].residual_x for g in local], axis=1) for i in range(len(local[0]))]
    sizes = tuple(int(x_k.shape[1]) for x_k in xs)
    return ShardGradients(loss_value, sizes, local, reduce_gradients(local), residual_x)


def update_replicas(replicas: list[Params], reduced: list[Params], lr: float, trainable) -> list[Params]:
    """Each replica takes its SGD step from its own copy of the all-reduced gradients."""
    return [
        sgd_update(p, [LayerGrads(None, g["w"], g["b"], None) for g in grads], lr, trainable)
        for p, grads in zip(replicas, reduced)
    ]


def _checked(params, x, t, activations, loss, n_shards: int, dtype):
    params, dt = validate.check_params(params, dtype)
    x, t = validate.check_data(x, t, params, dt)
    activations = validate.check_activations(activations, len(params))
    loss = validate.check_loss(loss)
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise FcgradError(f"shards: expected a positive number of shards, got {n_shards!r}")
    if n_shards > x.shape[1]:
        raise FcgradError(f"shards: expected at most N = {x.shape[1]} shards (one sample each), got {n_shards}")
    return params, x, t, activations, loss, dt


def sharded_gradients(
    params: Params, x, t, n_shards: int, *, activations="sigmoid", loss: str = "square", dtype=None
) -> ShardGradients:
    """The one-device gradients computed as ``n_shards`` data-parallel shards; nothing is updated."""
    params, x, t, activations, loss, _ = _checked(params, x, t, activations, loss, n_shards, dtype)
    replicas = [params] * n_shards
    return shard_step(replicas, split_columns(x, n_shards), split_columns(t, n_shards), x.shape[1], activations, loss)


def sharded_train(
    params: Params,
    x,
    t,
    n_shards: int,
    *,
    activations="sigmoid",
    loss: str = "square",
    lr: float = 0.1,
    steps: int = 1_000,
    trainable=None,
    dtype=None,
) -> ShardedTrajectory:
    """Full-batch SGD over ``n_shards`` replicas, each updating from the all-reduced gradients.

    Every replica's parameters are kept at every step, so a caller can see whether they stay identical.
    Raises ``DivergenceError`` naming the first step whose loss is not finite.
    """
    params, x, t, activations, loss, dt = _checked(params, x, t, activations, loss, n_shards, dtype)
    lr = validate.check_lr(lr)
    steps = validate.check_steps(steps)
    trainable = validate.check_trainable(trainable, len(params))
    xs, ts = split_columns(x, n_shards), split_columns(t, n_shards)
    replicas = [params] * n_shards
    history = [[p] for p in replicas]
    losses = np.empty(steps, dtype=dt)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps):
            g = shard_step(replicas, xs, ts, x.shape[1], activations, loss)
            if not np.isfinite(g.loss):
                raise DivergenceError(f"sharded training diverged: the loss is {g.loss} at step {k} (lr={lr})", k)
            losses[k] = g.loss
            replicas = update_replicas(replicas, g.reduced, lr, trainable)
            for h, p in zip(history, replicas):
                h.append(p)
    stacked = [
        [{key: np.stack([h[i][key] for h in hist]) for key in ("w", "b")} for i in range(len(params))]
        for hist in history
    ]
    return ShardedTrajectory(losses, stacked, replicas)


# ---- a spec network's step over shards (any optimizer, L2, dropout, layer norm; no batch norm) ---------------


class SpecShardGradients(NamedTuple):
    loss: float  # the global loss with its L2 term: Σ n_k/n · L_k + (λ/2)·Σ‖w‖²
    grads: list[dict[str, np.ndarray]]  # the all-reduced ∂L/∂ every parameter, as shard 0 holds it
    per_shard: list[list[dict[str, np.ndarray]]]  # each shard's own weighted part, before the all-reduce


def sharded_spec_gradients(params, x, t, spec, loss: str, masks, n_shards: int, l2: float = 0.0) -> SpecShardGradients:
    """One step's gradients of a spec network over ``n_shards`` column blocks, summed by the ring all-reduce.

    Each shard runs the one network (``shard_part``) on its columns and dropout masks, its residual_y
    weighted n_k/n, so its gradients are its part of the global sums. L2 is added once, after the sum.
    """
    n = x.shape[1]
    keys = [list(p) for p in params]
    blocks = [np.array_split(np.arange(n), n_shards)[k] for k in range(n_shards)]
    value, parts, buffers = 0.0, [], []
    for cols in blocks:
        shard_masks = [None if m is None else m[:, cols] for m in masks]
        g = shard_part(params, x[:, cols], t[:, cols], n, n_shards, spec, loss, shard_masks)
        value += g.loss  # this shard's part of L: its mean × n_k/n
        part = [{k: g.grads[i][k] for k in keys[i]} for i in range(len(spec))]
        parts.append(part)
        buffers.append(np.concatenate([part[i][k].ravel() for i in range(len(spec)) for k in keys[i]]))
    reduced, offset, grads = ring_all_reduce(buffers)[0], 0, []
    for i, p in enumerate(params):
        layer = {}
        for k in keys[i]:
            layer[k] = reduced[offset : offset + p[k].size].reshape(p[k].shape)
            offset += p[k].size
        if l2:
            layer["w"] = layer["w"] + l2 * p["w"]  # (in, out): ∂(λ/2 ‖w‖²)/∂w = λ·w, once, on the replicated w
        grads.append(layer)
    return SpecShardGradients(value + float(l2_penalty(params, l2)), grads, parts)
