"""The classic mistakes of a hand-written optimizer, named from the first step where the toolbox check fails.

At that step both sides started from the same parameters and state (every earlier step agreed), so
each entry replays the step from manual's own inputs (parameters, gradients and optimizer state
before the step) with the wrong rule it stands for, and names the mistake when manual's update
``Δ = p_new − p`` equals that prediction to ``UPDATE_REL_TOL``. An entry whose prediction is within
``DISTINCT_FACTOR × UPDATE_REL_TOL`` of the right update (computed by ``manual.optimizers.update``
from the same inputs) cannot tell the mistake from correct code on these numbers and stays silent.

Entries: Adam without bias correction; L2 added to the loss where AdamW's decoupled weight decay
was meant; momentum with the learning rate applied twice.

``diagnose_layers`` does the same for the gradients of a spec network: each batch norm and dropout
layer's manual backward (as ``manual.network`` calls it) runs alone on the reference's upstream
gradient, and when its result differs from ``jax.vjp`` of the reference's own forward of that stage,
the catalogue of ``fcgrad.diagnosis.catalogue`` names it (batch norm without the paths through μ and σ²,
dropout without 1/keep, dropout's mask not reused).
"""

from functools import partial
from typing import NamedTuple

import jax
import numpy as np

from fcgrad.diagnosis.catalogue import DISTINCT_FACTOR, Context, Diagnosis, _rel, diagnose
from fcgrad.manual import network, optimizers
from fcgrad.manual.spec import init_running
from fcgrad.reference.model import ACTIVATIONS, BN_EPS, normalise, spec_loss
from fcgrad.reference.precision import x64_for

Tree = list[dict[str, np.ndarray]]

# A prediction replays the step's own operations, so it differs from manual's update only by the rounding
# of p_new − p: about 1e-16·|p|/|Δ|. Measured on the planted mistakes of tests/test_diagnosis_toolbox.py
# (lr 0.01 and 0.3, first failing step 0 or 3): rel ≤ 3.4e-15; a step 1e-6 of |p| would carry ~1e-10.
# 1e-8 leaves 100× over that. The other planted mistakes there (flipped update, momentum without lr, AdamW's
# decay without lr) miss every entry's prediction by rel ≥ 0.28 (measured over 5 random steps each).
UPDATE_REL_TOL = 1e-8


class StepRecord(NamedTuple):
    """Manual's side of one optimizer step: what it was given and what it produced."""

    step: int  # 0-based index in the schedule
    params: Tree  # before the step
    grads: Tree  # the gradients the step used
    state: dict  # the optimizer state before the step
    new_params: Tree  # after the step


def _delta(new: Tree, old: Tree) -> Tree:
    return [{k: np.asarray(n[k], np.float64) - np.asarray(o[k], np.float64) for k in n} for n, o in zip(new, old)]


def _adam_without_bias_correction(opt: optimizers.Optimizer, rec: StepRecord):
    if opt.name not in ("adam", "adamw"):
        return None
    t = rec.state["count"] + 1
    b1, b2 = opt.hyper["b1"], opt.hyper["b2"]
    # b^k underflows to 0 at this count, so both corrections 1 − b^k are exactly 1
    never = {**rec.state, "count": 10**6}
    new, _ = optimizers.update(opt, rec.grads, never, rec.params)
    factor = np.sqrt(1 - b2**t) / (1 - b1**t)
    words = (
        f"Adam without bias correction: at step t = {t} the right update is √(1 − b2^t)/(1 − b1^t) = {factor:.4g} "
        f"× manual's; divide m by 1 − b1^t and ν by 1 − b2^t"
    )
    return "adam_without_bias_correction", words, new


def _l2_instead_of_decoupled_decay(opt: optimizers.Optimizer, rec: StepRecord):
    if opt.name != "adamw" or opt.hyper["weight_decay"] == 0:
        return None
    wd = opt.hyper["weight_decay"]
    coupled = [{k: g[k] + wd * p[k] for k in g} for g, p in zip(rec.grads, rec.params)]  # λ·p through the moments
    adam = optimizers.Optimizer("adam", opt.lr, {k: v for k, v in opt.hyper.items() if k != "weight_decay"})
    new, _ = optimizers.update(adam, coupled, rec.state, rec.params)
    words = (
        f"L2 added to the loss where AdamW's decoupled weight decay was meant: manual ran Adam on g + {wd:g}·p; "
        f"AdamW adds {wd:g}·p after the adaptive scaling, times −lr"
    )
    return "l2_instead_of_decoupled_weight_decay", words, new


def _momentum_lr_twice(opt: optimizers.Optimizer, rec: StepRecord):
    if opt.name not in ("momentum", "nesterov"):
        return None
    right, _ = optimizers.update(opt, rec.grads, rec.state, rec.params)
    new = [{k: p[k] + opt.lr * (r[k] - p[k]) for k in p} for p, r in zip(rec.params, right)]  # Δ = lr × right Δ
    words = f"{opt.name} with the learning rate applied twice: manual's update is lr = {opt.lr:g} × optax's"
    return "momentum_lr_applied_twice", words, new


OPTIMIZER_CATALOGUE = {
    "adam_without_bias_correction": _adam_without_bias_correction,
    "l2_instead_of_decoupled_weight_decay": _l2_instead_of_decoupled_decay,
    "momentum_lr_applied_twice": _momentum_lr_twice,
}


def diagnose_step(opt: optimizers.Optimizer, rec: StepRecord, keys) -> dict[tuple[int, str], list[Diagnosis]]:
    """For each (layer, parameter key) in ``keys``: the entries manual's update at ``rec.step`` matches."""
    right, _ = optimizers.update(opt, rec.grads, rec.state, rec.params)
    d_right, d_manual = _delta(right, rec.params), _delta(rec.new_params, rec.params)
    found: dict[tuple[int, str], list[Diagnosis]] = {}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for entry in OPTIMIZER_CATALOGUE.values():
            hit = entry(opt, rec)
            if hit is None:
                continue
            name, words, predicted = hit
            d_pred = _delta(predicted, rec.params)
            for i, key in keys:
                m, pred, ok = d_manual[i][key], d_pred[i][key], d_right[i][key]
                if not (np.all(np.isfinite(m)) and np.all(np.isfinite(pred))):
                    continue
                if _rel(pred, ok) <= DISTINCT_FACTOR * UPDATE_REL_TOL:
                    continue  # the wrong rule gives the right update here
                res = _rel(m, pred)
                if res <= UPDATE_REL_TOL:
                    msg = f"looks like {words} (step {rec.step}, update Δ{key} matches to {res:.0e})"
                    found.setdefault((i, key), []).append(Diagnosis(name, msg, res))
    return {k: sorted(v, key=lambda d: d.residual) for k, v in found.items()}


# The reference's pullbacks below are compiled programs defined once, so that a network diagnosed again (another
# step, another planted mistake) reuses what was compiled for its shapes; run op by op, every primitive of the
# forward and the backward would be compiled on its own.


@partial(jax.jit, static_argnums=0)
def _vjp(fn, at, cotangent):
    """``cotangent`` pulled back through ``fn`` (a registry function: its identity is the cache key) at ``at``."""
    return jax.vjp(fn, at)[1](cotangent)[0]


@jax.jit
def _dropout_vjp(a, mask, rate, cotangent):
    """∂L/∂a of inverted dropout ``a ⊙ mask / (1 − rate)``, by jax.vjp."""
    return jax.vjp(lambda a: a * mask / (1.0 - rate), a)[1](cotangent)[0]


@jax.jit
def _batchnorm_vjp(z, gamma, beta, cotangent):
    """∂L/∂z of training-mode batch norm over the N columns, by jax.vjp."""
    return jax.vjp(lambda z: normalise(z, gamma, beta, 1, BN_EPS)[0], z)[1](cotangent)[0]


@partial(jax.jit, static_argnames=("spec", "loss_name"))
def _rest_grad(y, params, t, masks, running, spec, loss_name):
    """∂L/∂y of the layers ``spec`` (with their params, masks, running averages) and the loss, at their input y."""
    return jax.grad(lambda y: spec_loss(params, y, t, masks, running, 0.0, spec, loss_name)[0])(y)


def _upstream(p, params, i: int, y_i, masks, running) -> np.ndarray:
    """The reference's ∂L/∂y of layer i: jax.grad of the rest of the network and the loss at its output y_i
    (L2 of the layers above does not depend on y_i)."""
    above = slice(i + 1, None)
    return np.asarray(_rest_grad(y_i, params[above], p.t, masks[above], running[above], tuple(p.spec[above]), p.loss))


def diagnose_layers(p, params, masks) -> dict[tuple[int, str], list[Diagnosis]]:
    """Names for the batch norm and dropout backwards of ``p``'s network that differ from the reference's.

    Keys: ``(layer, "dropout residual_x")`` and ``(layer, "batchnorm residual_x")``. ``masks`` are the
    dropout masks the gradients were compared with; the forward is manual's (training mode).
    """
    dt = np.dtype(p.dtype)
    running = init_running(p.spec, dt)
    y, caches, _ = network.spec_forward(params, p.x, p.spec, masks, running)
    n = p.x.shape[1]
    found: dict[tuple[int, str], list[Diagnosis]] = {}

    def judge(key, manual, ref, ctx):
        # a layer whose backward agrees with the reference gets no name: the catalogue says nothing of correct arrays
        if names := diagnose(manual, ref, ctx):
            found[key] = names

    with x64_for(p.dtype):
        for i, layer in enumerate(p.spec):
            if not (layer.dropout or layer.norm == "batch"):
                continue
            c = caches[i]
            y_i = caches[i + 1].fc.x if i + 1 < len(p.spec) else y  # (out, N) this layer's output
            upstream = _upstream(p, params, i, y_i, masks, running)  # (out, N) ∂L/∂y
            if layer.dropout:
                mask, keep = c.dropout
                ref = np.asarray(_dropout_vjp(c.a, mask, layer.dropout, upstream))  # (out, N) ∂L/∂a
                ctx = Context(quantity="residual_x", n=n, keep=keep, mask=mask, upstream=upstream)
                judge((i, "dropout residual_x"), network.dropout_backward(upstream, c.dropout), ref, ctx)
                upstream = ref
            if layer.norm == "batch":
                residual_n = np.asarray(_vjp(ACTIVATIONS[layer.activation], c.n, upstream))  # ∂L/∂n
                g, b = params[i]["gamma"], params[i]["beta"]
                ref = np.asarray(_batchnorm_vjp(c.fc.z, g, b, residual_n))  # (out, N) ∂L/∂z
                ctx = Context(quantity="residual_x", n=n, x=c.fc.z, gamma=g, upstream=residual_n)
                manual = network.batchnorm_backward(residual_n, c.norm).residual_x
                judge((i, "batchnorm residual_x"), manual, ref, ctx)
    return found


__all__ = ["OPTIMIZER_CATALOGUE", "UPDATE_REL_TOL", "StepRecord", "diagnose_layers", "diagnose_step"]
