"""The network as JAX forward formulas only; every derivative comes from jax.grad.

Same layout as the blog: ``x`` (in, N), ``w`` (in, out), ``b`` (out, 1),
``z = wᵀ·x + b``. Parameters: ``[{"w": ..., "b": ...}, ...]``.
"""

import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,  # lax.logistic: no overflow for large |z|
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "identity": lambda z: z,
}


def square_loss(y, t):
    """L = Σ (y − t)² / N / 2."""
    return jnp.sum((y - t) ** 2) / y.shape[1] / 2


def cross_entropy_loss(y, t):
    """L = −Σ t ⊙ log softmax(y) / N, softmax over the rows of each column."""
    return -jnp.sum(t * jax.nn.log_softmax(y, axis=0)) / y.shape[1]


def hinge_loss(y, t):
    """Multiclass hinge: Σ max(0, y_j − y_class + 1) over wrong classes j, / N; relu' = 0 at a kink."""
    margins = y - jnp.sum(t * y, axis=0, keepdims=True) + 1.0
    return jnp.sum(jax.nn.relu(margins) * (1 - t)) / y.shape[1]


def bce_logits_loss(y, t):
    """Binary cross-entropy from logits: Σ (softplus(y) − y·t) / N."""
    return jnp.sum(jax.nn.softplus(y) - y * t) / y.shape[1]


def mae_loss(y, t):
    """Σ |y − t| / N, with |d| written relu(d) + relu(−d) so that its derivative at d = 0 is 0."""
    d = y - t
    return jnp.sum(jax.nn.relu(d) + jax.nn.relu(-d)) / y.shape[1]


LOSSES = {
    "square": square_loss,
    "cross-entropy": cross_entropy_loss,
    "hinge": hinge_loss,
    "bce-logits": bce_logits_loss,
    "mae": mae_loss,
}


def forward(params, x, activations, taps=None):
    """``x`` (in, N) -> output (out, N).

    ``taps``, when given, are zeros added to every layer's input and linear part
    (``taps["x"][i]`` (in, N), ``taps["z"][i]`` (out, N)) and to the output
    (``taps["y"]``): the gradient of the loss with respect to a tap is the
    residual of the quantity it is added to.
    """
    for i, (layer, act) in enumerate(zip(params, activations)):
        if taps is not None:
            x = x + taps["x"][i]
        z = layer["w"].T @ x + layer["b"]
        if taps is not None:
            z = z + taps["z"][i]
        x = ACTIVATIONS[act](z)
    if taps is not None:
        x = x + taps["y"]
    return x


def loss(params, x, t, activations, loss_name, taps=None):
    return LOSSES[loss_name](forward(params, x, activations, taps), t)
