"""What a user's file exposes of one training step: the numbers the audit judges, in the file's own layout."""

from dataclasses import dataclass, field

import numpy as np

FED_JAX = "jax"  # each layer's backward was fed JAX's upstream
FED_OWN = "own"  # the file's own numbers flowed down, each layer fed the residual of the layer above


@dataclass
class LayerSeen:
    """One layer: ``grad_w`` and ``grad_b`` always; ``residual_z`` and ``residual_x`` when the file exposes them."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    unchanged: bool = False  # its backward (or step) left w and b exactly as they were


@dataclass
class Seen:
    fed: str  # FED_JAX or FED_OWN
    residual_y: np.ndarray | None  # ∂L/∂y as the file's loss backward gives it; None when it exposes none
    layers: list[LayerSeen]  # in forward order


def read_back(before: np.ndarray, after: np.ndarray, lr: float) -> np.ndarray:
    """A gradient read back from an update ``after = before − lr·grad``."""
    return (np.asarray(before, np.float64) - np.asarray(after, np.float64)) / lr


def chain_stepper(net, p):
    """``params -> (loss, new params)`` of one step of ``net``, from its ``chain(p, params)``."""

    def run(params):
        value, _, new = net.chain(p, params)
        return value, new

    return run
