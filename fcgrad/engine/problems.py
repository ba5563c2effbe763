"""The problems ``fcgrad`` runs: the blog's AND, XOR, Matt Mazur's worked example, or random ones.

A ``Problem`` holds everything both sides need, in the blog's layout, as NumPy arrays.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from fcgrad.manual import validate
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.network import init_params

CLASS_LOSSES = ("cross-entropy", "hinge")  # targets are one-hot classes
LINEAR_OUTPUT_LOSSES = ("cross-entropy", "hinge", "bce-logits")  # they take logits or scores, not sigmoids
EXAMPLES = ("and", "xor", "mazur")
BLOG_STEPS = 10_000  # the blog trains for 10,000 full-batch iterations
RANDOM_STEPS = 1_000  # default for custom sizes, where a step can cost far more


@dataclass(frozen=True)
class Problem:
    name: str
    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    x: np.ndarray  # (in, N)
    t: np.ndarray  # (out, N)
    params: list = field(repr=False)  # initial [{"w": (in, out), "b": (out, 1)}, ...]
    lr: float
    steps: int
    trainable: list | None = None  # None: every w and b is trained
    dtype: str = "float64"
    seed: int | None = None  # the random seed that drew the data and initial parameters; None: fixed by a source

    @property
    def batch(self) -> int:
        return self.x.shape[1]

    def summary(self) -> dict:
        """The problem's settings, for JSON reports."""
        return {
            "name": self.name,
            "sizes": list(self.sizes),
            "activations": list(self.activations),
            "loss": self.loss,
            "batch": self.batch,
            "lr": self.lr,
            "steps": self.steps,
            "dtype": self.dtype,
            "trainable": "every w and b" if self.trainable is None else [dict(layer) for layer in self.trainable],
            "seed": self.seed,
        }

    def with_options(self, *, lr=None, steps=None, dtype=None) -> "Problem":
        """A copy with the given options changed (checked), parameters and data cast to ``dtype``."""
        p = replace(
            self,
            lr=self.lr if lr is None else validate.check_lr(lr),
            steps=self.steps if steps is None else validate.check_steps(steps),
        )
        if dtype is not None:
            dt = validate.check_dtype(dtype)
            p = replace(
                p,
                dtype=dt.name,
                x=p.x.astype(dt),
                t=p.t.astype(dt),
                params=[{k: v.astype(dt) for k, v in layer.items()} for layer in p.params],
            )
        return p


def _blog_network(name: str, t_row: list[float], seed: int) -> Problem:
    x = np.array([[0, 0, 1, 1], [0, 1, 0, 1]], dtype=np.float64)  # 4 samples by column
    t = np.array([t_row], dtype=np.float64)
    # the blog draws w from randn (std 1) and starts b at zero
    params = init_params([2, 4, 1], seed=seed, std=1.0)
    return Problem(name, (2, 4, 1), ("sigmoid", "sigmoid"), "square", x, t, params, 0.1, BLOG_STEPS, seed=seed)


def and_example(seed: int = 0) -> Problem:
    """The blog's problem: logical AND, 2-4-1 sigmoid, square loss, lr 0.1, 10,000 steps."""
    return _blog_network("and", [0, 0, 0, 1], seed)


def xor_example(seed: int = 0) -> Problem:
    """The same network on XOR, which needs its hidden layer."""
    return _blog_network("xor", [0, 1, 1, 0], seed)


def mazur_example() -> Problem:
    """Matt Mazur, "A Step by Step Backpropagation Example" (2015).

    2-2-2 sigmoid, square loss, one sample (0.05, 0.10) -> (0.01, 0.99), lr 0.5.
    The post's w1..w4 feed the hidden layer (h1 = w1·i1 + w2·i2 + b1, h2 = w3·i1 + w4·i2 + b1)
    and w5..w8 the outputs (o1 = w5·h1 + w6·h2 + b2, o2 = w7·h1 + w8·h2 + b2). In the
    ``(in, out)`` layout, ``w[i, j]`` joins input i to unit j, so each unit is a column.
    Biases 0.35 and 0.60 are shared by a layer's units and never trained by the post.
    No random seed: every number is the post's.
    """
    w1, w2, w3, w4, w5, w6, w7, w8 = 0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55
    params = [
        {"w": np.array([[w1, w3], [w2, w4]]), "b": np.full((2, 1), 0.35)},
        {"w": np.array([[w5, w7], [w6, w8]]), "b": np.full((2, 1), 0.60)},
    ]
    x = np.array([[0.05], [0.10]])
    t = np.array([[0.01], [0.99]])
    frozen_b = [{"w": True, "b": False}, {"w": True, "b": False}]
    return Problem("mazur", (2, 2, 2), ("sigmoid", "sigmoid"), "square", x, t, params, 0.5, BLOG_STEPS, frozen_b)


def default_activations(n_layers: int, loss: str) -> tuple[str, ...]:
    """Sigmoid everywhere (as in the blog); with a loss of logits or scores the output layer is linear."""
    if loss in LINEAR_OUTPUT_LOSSES:
        return ("sigmoid",) * (n_layers - 1) + ("identity",)
    return ("sigmoid",) * n_layers


def draw_data(n_in: int, n_out: int, loss: str, batch: int, rng: np.random.Generator):
    """``X ~ N(0, 1)`` (in, N), then targets: one-hot columns for cross-entropy and hinge, uniform in (0, 1) else."""
    x = rng.standard_normal((n_in, batch))
    if loss in CLASS_LOSSES:
        return x, np.eye(n_out)[:, rng.integers(0, n_out, size=batch)]
    return x, rng.uniform(0, 1, size=(n_out, batch))


def random_problem(
    sizes: Sequence[int],
    *,
    activations: str | Sequence[str] | None = None,
    loss: str = "square",
    batch: int = 8,
    seed: int = 0,
    lr: float = 0.1,
    steps: int = RANDOM_STEPS,
) -> Problem:
    """Random data ``X ~ N(0, 1)`` and parameters for any sizes.

    Targets: one-hot classes for cross-entropy and the hinge loss; uniform in (0, 1) for the others.
    """
    sizes = tuple(validate.check_sizes(sizes))
    loss = validate.check_loss(loss)
    n_layers = len(sizes) - 1
    acts = default_activations(n_layers, loss) if activations is None else activations
    acts = tuple(validate.check_activations(acts, n_layers))
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise FcgradError(f"batch: expected a positive number of samples, got {batch!r}")
    x, t = draw_data(sizes[0], sizes[-1], loss, batch, np.random.default_rng(validate.check_seed(seed)))
    params = init_params(sizes, seed=seed + 1)
    name = "-".join(map(str, sizes))
    return Problem(
        name, sizes, acts, loss, x, t, params, validate.check_lr(lr), validate.check_steps(steps), seed=int(seed)
    )


def example(name: str, seed: int = 0) -> Problem:
    if name == "and":
        return and_example(seed)
    if name == "xor":
        return xor_example(seed)
    if name == "mazur":
        return mazur_example()
    raise FcgradError(f"example: expected one of {list(EXAMPLES)}, got {name!r}")
