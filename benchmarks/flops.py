"""FLOP counts of one training step, from its matrix products only.

One layer of width ``in -> out`` over a batch of N does three products, each of
2·in·out·N FLOPs (a multiply and an add per term):

    z = wᵀ·x          (out, in)·(in, N)    forward
    grad_w = x·δᵀ     (in, N)·(N, out)     backward
    residual_x = w·δ  (in, out)·(out, N)   backward, sent to the layer below

A training step needs all three in every layer except ``residual_x`` of the first layer,
which feeds nothing: manual's training path skips it (its comparison path,
``manual.gradients``, still reports it), the minimal baselines skip it, and under
``jax.jit`` XLA drops it as dead code. The ``floor`` does all three, ``floor-needed``
the ones a step needs.
Element-wise work (sigmoid, its derivative, the loss, the update) is left out of the
count: O(width·N) against the products' O(width²·N).
"""

from collections.abc import Sequence

ALL = "all"  # 3 products per layer: the floor
NEEDED = "needed"  # without the first layer's residual_x: every training variant and floor-needed


def layer_product_flops(sizes: Sequence[int], batch: int) -> list[int]:
    """FLOPs of one product of each layer: 2·in·out·N."""
    return [2 * n_in * n_out * batch for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def gemm_count(sizes: Sequence[int], kind: str) -> int:
    n_layers = len(sizes) - 1
    return 3 * n_layers - (1 if kind == NEEDED else 0)


def step_flops(sizes: Sequence[int], batch: int, kind: str = ALL) -> int:
    """FLOPs of the products one step does: 3 per layer, less layer 0's residual_x for ``NEEDED``."""
    per_layer = layer_product_flops(sizes, batch)
    total = 3 * sum(per_layer)
    return total - per_layer[0] if kind == NEEDED else total
