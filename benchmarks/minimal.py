"""The two baselines: the blog's arithmetic in the fewest calls, in NumPy and in JAX.

Sigmoid layers and the square loss only, any depth. Layout: ``x`` (in, N), ``ws[i]``
(in, out), ``bs[i]`` (out, 1). No dicts, named tuples, registries or checks beyond
what a step needs: what any hand-written loop would cost, against which the
project's own variants are priced.

``minimal_numpy_step`` takes the naive sigmoid ``1 / (1 + exp(−z))``: for z below
about −709 (float64) or −88 (float32) exp overflows, NumPy warns, and the value, 0,
is still right. The benchmark's problems stay far from that.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


def minimal_numpy_step(ws: list, bs: list, x: np.ndarray, t: np.ndarray, lr: float) -> float:
    """One full-batch SGD step, updating ``ws`` and ``bs`` in place -> the loss at the old parameters."""
    ys = [x]
    for w, b in zip(ws, bs):
        ys.append(1 / (1 + np.exp(-(w.T @ ys[-1] + b))))  # σ(wᵀx + b) (out, N)
    n = x.shape[1]
    residual = ys[-1] - t  # (out, N)
    loss = float(np.vdot(residual, residual)) / n / 2
    residual /= n  # ∂L/∂y
    for i in range(len(ws) - 1, -1, -1):
        y = ys[i + 1]
        residual_z = residual * y * (1 - y)  # (out, N)
        if i:
            residual = ws[i] @ residual_z  # (in, N), before w's update; the first layer's is not needed
        ws[i] -= lr * (ys[i] @ residual_z.T)  # (in, out)
        bs[i] -= lr * residual_z.sum(axis=1, keepdims=True)  # (out, 1)
    return loss


def _loss(params, x, t):
    for w, b in params:
        x = jax.nn.sigmoid(w.T @ x + b)
    return jnp.sum((x - t) ** 2) / x.shape[1] / 2


@partial(jax.jit, static_argnames="steps")
def minimal_jax_train(params, x, t, lr, steps: int):
    """``steps`` SGD steps as one ``fori_loop`` over ``jax.grad``, nothing recorded -> the final [(w, b), ...]."""

    def body(_, p):
        return jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(_loss)(p, x, t))

    return jax.lax.fori_loop(0, steps, body, params)
