"""The manual formulas inline in one plain function: what ``manual`` costs without its abstraction.

Sigmoid layers and the square loss only, any depth; the same arithmetic as
``manual.network.loss_and_gradients`` followed by ``sgd_update`` (the same overflow-free
sigmoid, the first layer's residual_x included), with no dicts, named tuples, registry
look-ups or namespace dispatch. Layout: ``x`` (in, N), ``ws[i]`` (in, out), ``bs[i]`` (out, 1).
"""

import numpy as np


def bare_step(ws: list, bs: list, x: np.ndarray, t: np.ndarray, lr: float) -> tuple[float, list, list]:
    """One full-batch SGD step -> (loss at the given parameters, new ws, new bs)."""
    ys = [x]
    for w, b in zip(ws, bs):
        z = w.T @ ys[-1] + b  # (out, in)·(in, N) + (out, 1) -> (out, N)
        e = np.exp(-np.abs(z))
        ys.append(np.where(z >= 0, 1.0, e) / (1.0 + e))  # (out, N)
    y = ys[-1]
    n = x.shape[1]
    loss = float(np.sum((y - t) ** 2) / n / 2)
    residual = (y - t) / n  # (out, N)
    new_ws = list(ws)
    new_bs = list(bs)
    for i in range(len(ws) - 1, -1, -1):
        y = ys[i + 1]
        residual_z = residual * y * (1 - y)  # (out, N)
        grad_w = ys[i] @ residual_z.T  # (in, N)·(N, out) -> (in, out)
        grad_b = np.sum(residual_z, axis=1, keepdims=True)  # (out, 1)
        residual = ws[i] @ residual_z  # (in, out)·(out, N) -> (in, N), pre-update w
        new_ws[i] = ws[i] - lr * grad_w
        new_bs[i] = bs[i] - lr * grad_b
    return loss, new_ws, new_bs
