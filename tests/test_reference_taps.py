"""The taps of the reference's one forward give a spec network's residuals, as they give the plain net's.

Zeros added to each layer's input x, linear part z and the output y: jax.grad with respect to a tap is the
residual of what it is added to. On a spec network (layer norm, dropout, a no-bias layer) the blog's
relations must then hold layer by layer, all from the one forward and jax.grad alone:
grad_w = x · residual_zᵀ, grad_b = Σ residual_z over the columns, and residual_x of layer 0 = ∂L/∂X.
"""

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.reference.grads import zero_taps
from fcgrad.reference.model import LOSSES, Layer, forward_with_running, spec_loss
from fcgrad.reference.precision import x64_for

# The relations are exact in real arithmetic; both sides are float64 sums of at most N·width products
# of the same values, taken in different orders: a few units of float64 roundoff (2.2e-16) each.
RELATION_REL_TOL = 1e-12

SPEC = (Layer("tanh", norm="layer"), Layer("relu", dropout=0.25), Layer("identity"))
WIDTHS = (3, 5, 4, 2)
N = 6


def _network(rng):
    params = []
    for i, (n_in, n_out) in enumerate(zip(WIDTHS, WIDTHS[1:])):
        layer = {"w": jnp.asarray(rng.normal(size=(n_in, n_out)) / np.sqrt(n_in))}
        if i != 1:  # layer 1 has no bias: its z is wᵀ·x alone
            layer["b"] = jnp.asarray(rng.normal(size=(n_out, 1)))
        if SPEC[i].norm:
            layer["gamma"] = jnp.asarray(1 + 0.1 * rng.normal(size=(n_out, 1)))
            layer["beta"] = jnp.asarray(0.1 * rng.normal(size=(n_out, 1)))
        params.append(layer)
    x = jnp.asarray(rng.normal(size=(WIDTHS[0], N)))
    t = jnp.asarray(np.eye(WIDTHS[-1])[:, rng.integers(0, WIDTHS[-1], N)])
    masks = [None, jnp.asarray((rng.random((WIDTHS[2], N)) > SPEC[1].dropout).astype(float)), None]
    return params, x, t, masks


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), 1e-300))


@jax.jit
def _through_the_taps(params, x, t, masks):
    """Everything the relations need, in one compiled call: the losses, ∂L/∂params, ∂L/∂X, ∂L/∂taps, each x_i."""

    def tapped_loss(p, x_, taps):
        y, _ = forward_with_running(p, x_, SPEC, masks=masks, taps=taps)
        return LOSSES["cross-entropy"](y, t)

    taps = zero_taps(params, x)
    value, (grads, grad_x, residuals) = jax.value_and_grad(tapped_loss, argnums=(0, 1, 2))(params, x, taps)
    own, _ = spec_loss(params, x, t, masks, None, 0.0, SPEC, "cross-entropy")
    inputs = [forward_with_running(params[:i], x, SPEC[:i], masks=masks[:i])[0] for i in range(len(SPEC))]
    return value, own, grads, grad_x, residuals, inputs


def test_the_taps_give_a_spec_networks_residuals():
    with x64_for("float64"):
        out = _through_the_taps(*_network(np.random.default_rng(7)))
        value, own, grads, grad_x, residuals, inputs = jax.tree.map(np.asarray, out)
    assert abs(value - own) <= RELATION_REL_TOL * abs(own)  # zero taps change nothing (L2 off)
    for i, x_i in enumerate(inputs):  # x_i (in, N): layer i's input
        residual_z = residuals["z"][i]  # (out, N)
        assert _rel(x_i @ residual_z.T, grads[i]["w"]) <= RELATION_REL_TOL, f"layer {i} grad_w"
        if "b" in grads[i]:
            grad_b = residual_z.sum(axis=1, keepdims=True)  # (out, 1)
            assert _rel(grad_b, grads[i]["b"]) <= RELATION_REL_TOL, f"layer {i} grad_b"
    assert _rel(residuals["x"][0], grad_x) <= RELATION_REL_TOL
