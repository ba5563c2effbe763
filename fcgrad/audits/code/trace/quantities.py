"""What correct code computes at step 0, for the whole batch and for each sample, in the blog's layout.

The backward's quantities (``residual_y``, each layer's ``residual_z``, ``grad_w``, ``grad_b``,
``residual_x``) come from JAX on the file's model; the forward's (each layer's input ``x``, ``z``, output
``y``, the activation's derivative ``f'(z)``, the softmax of the output under cross-entropy) from the same
model's forward, so that a value the file computes on the way (its ``sp = sigmoid_prime(z)``) is known for
what it is and never taken for a mistake.

Per sample: a file that runs its backward one sample at a time (the textbook's ``backprop(x, y)``)
computes the gradients of that sample's own loss ℓ_n, with L = Σ ℓ_n / N: its residuals are N × the
batch's column n, its ``grad_w`` N·x_n·δ_nᵀ.
"""

from dataclasses import dataclass

import numpy as np

from fcgrad.manual.activations import ACTIVATIONS

BACKWARD = ("residual_y", "residual_z", "grad_w", "grad_b", "residual_x")


@dataclass(frozen=True)
class Quantity:
    layer: int
    name: str  # a BACKWARD name, or w, b, t, x, z, y, f'(z), softmax(y) of the forward
    value: np.ndarray  # the blog's layout
    sample: int | None = None  # the sample it belongs to, when it is one sample's

    @property
    def backward(self) -> bool:
        return self.name in BACKWARD

    @property
    def kind(self) -> str:
        return {"grad_w": "weight", "grad_b": "bias"}.get(self.name, "data")


def _softmax(y):
    e = np.exp(y - y.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def batch(p, ref: dict, caches, scale: float = 1.0) -> list[Quantity]:
    """Every quantity of step 0 for the whole batch; the backward's times ``scale`` (the file's loss's factor)."""
    top = len(p.params) - 1
    out = [Quantity(top, "residual_y", scale * ref["residual_y"]), Quantity(top, "t", p.t)]
    for i, c in enumerate(caches):
        out += [Quantity(i, "w", p.params[i]["w"]), Quantity(i, "b", p.params[i]["b"])]
        for q, g in (("w", "grad_w"), ("b", "grad_b")):  # the parameter after a correct step
            out.append(Quantity(i, f"{q} − lr·{g}", p.params[i][q] - p.lr * scale * ref["layers"][i][g]))
        layer = ref["layers"][i]
        out += [Quantity(i, q, scale * layer[q]) for q in ("residual_z", "grad_w", "grad_b", "residual_x")]
        out += [Quantity(i, "x", c.x), Quantity(i, "z", c.z), Quantity(i, "y", c.y)]
        with np.errstate(over="ignore", invalid="ignore"):
            slope = ACTIVATIONS[p.activations[i]].backward(np.ones_like(c.z), c.z, c.y)  # (out, N) f'(z)
        out.append(Quantity(i, "f'(z)", slope))
    probabilities = output_probabilities(p, caches[-1].y)
    if probabilities is not None:
        out.append(Quantity(top, probabilities[0], probabilities[1]))
    return out


def output_probabilities(p, y) -> tuple[str, np.ndarray] | None:
    """The probabilities a file computes from the top layer's z where the library's loss takes them in:
    softmax(y) under cross-entropy, sigmoid(y) under bce-logits (a file's forward often ends in them)."""
    if p.loss == "cross-entropy":
        return "softmax(y)", _softmax(y)
    if p.loss == "bce-logits" and p.activations[-1] == "identity":  # not where the trace unfolded the sigmoid
        with np.errstate(over="ignore"):
            return "sigmoid(y)", ACTIVATIONS["sigmoid"].forward(y)
    return None


def one_sample(quantities: list[Quantity], n: int, size: int) -> list[Quantity]:
    """The quantities of sample ``n`` alone, as a backward of that sample's loss computes them."""
    by = {(q.layer, q.name): q.value for q in quantities}
    out = []
    for q in quantities:
        if q.name in ("w", "b") or "lr" in q.name:
            continue
        column = q.value[:, [n]] if q.name not in ("grad_w", "grad_b") else None
        if q.name == "grad_w":
            value = size * by[(q.layer, "x")][:, [n]] @ by[(q.layer, "residual_z")][:, [n]].T  # (in, 1)·(1, out)
        elif q.name == "grad_b":
            value = size * by[(q.layer, "residual_z")][:, [n]]  # (out, 1)
        elif q.backward:
            value = size * column
        else:
            value = column
        out.append(Quantity(q.layer, q.name, value, n))
    return out
