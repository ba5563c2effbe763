"""What is benchmarked: a network's sizes, a batch, a dtype, and the data and initial parameters.

Every variant of one workload starts from the same NumPy parameters and data (sigmoid
layers, the blog's square loss, lr 0.1). The blog's size, 2-4-1 with N=4, is the blog's own
AND problem; every other size is ``fcgrad.engine.problems.random_problem`` with seed 0.
"""

from dataclasses import dataclass

import numpy as np

from fcgrad.engine.problems import and_example, random_problem
from fcgrad.manual.errors import FcgradError

BLOG_SIZES = (2, 4, 1)
BLOG_BATCH = 4
BLOG_STEPS = 10_000  # the blog's run: what jit-fused and minimal-jax compile as one call at the blog's size
MNIST_SIZES = (784, 256, 256, 10)
DEFAULT_BATCH = 256  # batch of a size given without one that is neither the blog's nor all one width
LR = 0.1

CPU_SPECS = ("2-4-1", "784-256-256-10", "1024-1024-1024")
GPU_SPECS = CPU_SPECS + ("4096-4096-4096", "8192-8192-8192")
QUICK_SPECS = ("2-4-1", "784-256-256-10")


@dataclass(frozen=True)
class Workload:
    """One problem: ``x`` (in, N), ``t`` (out, N), ``params`` [{"w": (in, out), "b": (out, 1)}, ...]."""

    sizes: tuple[int, ...]
    batch: int
    dtype: str
    activations: tuple[str, ...]
    loss: str
    lr: float
    x: np.ndarray
    t: np.ndarray
    params: list

    @property
    def label(self) -> str:
        return "-".join(map(str, self.sizes))

    @property
    def width(self) -> int:
        return max(self.sizes)

    @property
    def is_blog_size(self) -> bool:
        return self.sizes == BLOG_SIZES and self.batch == BLOG_BATCH


def parse_spec(spec: str) -> tuple[tuple[int, ...], int]:
    """``"784-256-256-10"`` or ``"784-256-256-10:128"`` (batch after the colon) -> (sizes, batch).

    Without a batch: 4 for the blog's 2-4-1, the width for a net of one width (N equal
    to the width), else 256.
    """
    text, _, batch_text = spec.partition(":")
    try:
        sizes = tuple(int(s) for s in text.split("-"))
        batch = int(batch_text) if batch_text else None
    except ValueError:
        raise FcgradError(f"--sizes: expected widths joined by '-' such as 784-256-256-10[:N], got {spec!r}") from None
    if len(sizes) < 2 or min(sizes) < 1 or (batch is not None and batch < 1):
        raise FcgradError(f"--sizes: expected two or more positive widths and a positive batch, got {spec!r}")
    if batch is None:
        batch = BLOG_BATCH if sizes == BLOG_SIZES else sizes[0] if len(set(sizes)) == 1 else DEFAULT_BATCH
    return sizes, batch


def make_workload(sizes, batch: int, dtype: str) -> Workload:
    """The problem for ``sizes`` and ``batch``, cast to ``dtype`` (float64 or float32)."""
    sizes = tuple(sizes)
    if sizes == BLOG_SIZES and batch == BLOG_BATCH:
        p = and_example()
    else:
        p = random_problem(sizes, batch=batch, seed=0, lr=LR)
    p = p.with_options(dtype=dtype)
    return Workload(sizes, batch, p.dtype, p.activations, p.loss, p.lr, p.x, p.t, p.params)
