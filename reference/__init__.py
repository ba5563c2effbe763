"""The same network in JAX, differentiated by jax.grad. Never imports manual."""

from fcgrad.reference.grads import gradients, value_and_grads
from fcgrad.reference.model import ACTIVATIONS, LOSSES, forward, loss
from fcgrad.reference.precision import as_jax, x64_for
from fcgrad.reference.train import jit_step, scan_train, sgd_step, static_trainable, train

__all__ = [
    "gradients",
    "value_and_grads",
    "ACTIVATIONS",
    "LOSSES",
    "forward",
    "loss",
    "as_jax",
    "x64_for",
    "jit_step",
    "scan_train",
    "sgd_step",
    "static_trainable",
    "train",
]
