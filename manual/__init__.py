"""Hand-derived matrix backpropagation in NumPy, in the blog's layout. Never imports jax."""

from fcgrad.manual.classes import FC, CrossEntropyLoss, Net, SquareLoss
from fcgrad.manual.errors import DivergenceError, FcgradError
from fcgrad.manual.finite_diff import finite_difference_gradients
from fcgrad.manual.layer import QUANTITIES, Cache, LayerGrads, fc_backward, fc_forward
from fcgrad.manual.network import (
    Gradients,
    Trajectory,
    forward,
    gradients,
    init_params,
    loss_and_gradients,
    sgd_update,
    train,
)

__all__ = [
    "FC",
    "CrossEntropyLoss",
    "Net",
    "SquareLoss",
    "DivergenceError",
    "FcgradError",
    "finite_difference_gradients",
    "QUANTITIES",
    "Cache",
    "LayerGrads",
    "fc_backward",
    "fc_forward",
    "Gradients",
    "Trajectory",
    "forward",
    "gradients",
    "init_params",
    "loss_and_gradients",
    "sgd_update",
    "train",
]
