"""Training steps of the reference model; every gradient from jax.grad, every optimizer step from optax or plain SGD.

The blog's net: full-batch SGD, one jitted step or a whole run as one lax.scan. ``trainable`` is static
here: a tuple with one ``(train_w, train_b)`` pair of bools per layer. A spec network: one optax step
(``reference.optimizers``) on a batch, L2, dropout masks and batch norm's running averages included.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.reference.grads import activation_names
from fcgrad.reference.model import loss, spec_loss
from fcgrad.reference.optimizers import apply_updates, build, state_moments
from fcgrad.reference.precision import as_jax, x64_for


def sgd_step(params, x, t, lr, activations, loss_name, trainable):
    """Loss at ``params`` and the parameters after one update; every gradient from the same ``params``."""
    value, grads = jax.value_and_grad(loss)(params, x, t, activations, loss_name)
    new = [
        {
            "w": p["w"] - lr * g["w"] if train_w else p["w"],
            "b": p["b"] - lr * g["b"] if train_b else p["b"],
        }
        for p, g, (train_w, train_b) in zip(params, grads, trainable)
    ]
    return value, new


jit_step = jax.jit(sgd_step, static_argnames=("activations", "loss_name", "trainable"))


@partial(jax.jit, static_argnames=("activations", "loss_name", "trainable", "steps", "record_params"))
def scan_train(params, x, t, lr, activations, loss_name, trainable, steps, record_params=True):
    """``steps`` SGD steps in one compiled loop: (losses (steps,), history or None, final params)."""

    def body(p, _):
        value, new = sgd_step(p, x, t, lr, activations, loss_name, trainable)
        return new, (value, new if record_params else None)

    final, (losses, history) = jax.lax.scan(body, params, None, length=steps)
    if record_params:  # entry 0 is the initial parameters, entry k+1 those after step k
        history = jax.tree.map(lambda p0, h: jnp.concatenate([p0[None], h]), params, history)
    return losses, history, final


def static_trainable(trainable, n_layers: int) -> tuple[tuple[bool, bool], ...]:
    """``[{"w": bool, "b": bool}, ...]`` or None (train everything) -> the static form above."""
    if trainable is None:
        return ((True, True),) * n_layers
    return tuple((bool(m["w"]), bool(m["b"])) for m in trainable)


def train(
    params,
    x,
    t,
    *,
    activations,
    loss="square",
    lr=0.1,
    steps=10_000,
    trainable=None,
    record_params=True,
    dtype="float64",
):
    """Same contract as ``manual.train``, as NumPy arrays: ``{"losses", "params", "final"}``.

    ``params`` in the result is, per layer, ``{"w": (steps+1, in, out), "b": (steps+1, out, 1)}``
    with entry 0 the initial parameters (None when ``record_params`` is False).
    """
    activations = activation_names(activations, len(params))
    with x64_for(dtype):
        jparams, jx, jt = as_jax(params, x, t, dtype)
        losses, history, final = scan_train(
            jparams,
            jx,
            jt,
            lr,
            activations,
            loss,
            static_trainable(trainable, len(params)),
            int(steps),
            record_params,
        )
        to_np = lambda tree: jax.tree.map(np.asarray, tree)  # noqa: E731
        return {
            "losses": np.asarray(losses),
            "params": to_np(history) if record_params else None,
            "final": to_np(final),
        }


def spec_step(params, opt_state, running, x, t, masks, lr, hyper, l2, spec, loss_name, opt_name, branches=None):
    """One step of a spec network: the loss and gradients at ``params``, then optax's update."""
    (value, new_running), grads = jax.value_and_grad(spec_loss, has_aux=True)(
        params, x, t, masks, running, l2, spec, loss_name, branches
    )
    updates, opt_state = build(opt_name, lr, hyper).update(grads, opt_state, params)
    return apply_updates(params, updates), opt_state, new_running, value


@partial(jax.jit, static_argnames=("spec", "loss_name", "opt_name"))
def jit_spec_step(params, opt_state, running, x, t, masks, lr, hyper, l2, spec, loss_name, opt_name):
    """One compiled ``spec_step``, reused for any number of steps of one batch size.

    Returns (params, opt state, running) after the step, the loss before it, and the optimizer's moments.
    """
    params, opt_state, running, value = spec_step(
        params, opt_state, running, x, t, masks, lr, hyper, l2, spec, loss_name, opt_name
    )
    return params, opt_state, running, value, state_moments(opt_name, opt_state)


@partial(jax.jit, static_argnames=("spec", "loss_name", "opt_name"))
def jit_spec_step_on_branches(params, opt_state, running, x, t, masks, branches, lr, hyper, l2, spec, loss_name,
                              opt_name):  # fmt: skip
    """``jit_spec_step`` with each ReLU layer's side of the kink fixed entry by entry (``model.layer_forward``)."""
    params, opt_state, running, value = spec_step(
        params, opt_state, running, x, t, masks, lr, hyper, l2, spec, loss_name, opt_name, branches
    )
    return params, opt_state, running, value, state_moments(opt_name, opt_state)


def init_opt_state(opt_name: str, lr, hyper, params):
    return build(opt_name, lr, hyper).init(params)
