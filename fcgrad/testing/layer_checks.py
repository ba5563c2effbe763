"""What ``assert_backward_matches`` checks beyond the three gradients: ``residual_z``, and the suspect line.

- ``residual_z``: when the backward returns it, it is compared with JAX's ∂L/∂z, obtained by
  widening the bias: ``b`` (out, 1) is replaced by its copy broadcast to (out, N), one bias per
  sample, and ∂L/∂(that wide b) is ∂L/∂z for a layer z = wᵀx + b. The catalogue
  (``fcgrad.diagnosis.catalogue``) names a wrong one when it can (σ' written as y, tanh' as 1 − y, ...).
- the suspect: when ``grad_w``, ``grad_b`` and ``residual_x`` all fail, the three share one
  input, ``residual_z``; the failure says so.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.derivation.terms import _activation_of
from fcgrad.diagnosis.catalogue import Context, diagnose
from fcgrad.testing import backward as t

LAYER_GRADIENTS = ("grad_w", "grad_b", "residual_x")
SUSPECT = (
    "grad_w, grad_b and residual_x are all wrong: they share residual_z = residual_y ⊙ f'(z), which is the "
    "suspect (return it as residual_z and the check compares it too)"
)
_FAILED_NAME = re.compile(r"^  (\w+)(?: +max\|Δ\| | \(∂L/∂)", re.MULTILINE)


def failing_names(message: str) -> set[str]:
    """The gradient names an ``assert_backward_matches`` failure lists."""
    return set(_FAILED_NAME.findall(message))


def _wide_bias_pullback(forward, names: list[str], bias: str):
    """jit-compiled (other inputs, wide bias (out, N), residual_y) -> (y, ∂L/∂wide bias): one compile per call."""

    def pull(others, wide, residual_y):
        y, vjp = jax.vjp(lambda bw: forward(**dict(zip(names, others)), **{bias: bw}), wide)
        return y, vjp(residual_y)[0]

    return jax.jit(pull)


def residual_z_reference(pullback, inputs: dict, residual_y: np.ndarray, bias: str = "b"):
    """(y, JAX's ∂L/∂z through a widened bias), or None when the forward does not take ``bias`` as (out, 1)."""
    b = inputs.get(bias)
    if b is None or b.ndim != 2 or b.shape[1] != 1 or residual_y.ndim != 2 or b.shape[0] != residual_y.shape[0]:
        return None
    with jax.enable_x64(True):
        others = [jnp.asarray(v, jnp.float64) for k, v in inputs.items() if k != bias]
        wide = jnp.asarray(np.repeat(b, residual_y.shape[1], axis=1), jnp.float64)  # (out, N)
        try:
            y, grad = pullback(others, wide, jnp.asarray(residual_y, jnp.float64))
        except Exception:  # a forward that cannot take a wide bias: residual_z is not compared
            return None
        if y.shape != residual_y.shape:
            return None
        return np.asarray(y), np.asarray(grad)


def _context(inputs: dict, residual_y: np.ndarray, y) -> Context:
    x, w, b = (inputs.get(k) for k in ("x", "w", "b"))
    if x is None or w is None or b is None:
        return Context(quantity="residual_z", upstream=residual_y)
    z = w.T @ x + b  # (out, in)·(in, N) + (out, 1) -> (out, N)
    y = np.asarray(y, np.float64)
    act = _activation_of(z, y) if z.shape == y.shape else None
    return Context(quantity="residual_z", n=x.shape[1], x=x, z=z, y=y, w=w, upstream=residual_y, activation=act)


def _check_residual_z(forward, backward, shapes, *, seed, rtol, atol, n_trials, transform, upstream):
    names = [k for k in shapes if k != "b"]
    pullback = _wide_bias_pullback(forward, names, "b")
    check = None
    for trial in range(n_trials):
        rng = np.random.default_rng(seed + trial)
        inputs = t._draw_inputs(shapes, transform or {}, rng)
        with jax.enable_x64(True):
            y_shape = jax.eval_shape(forward, **{k: jnp.asarray(v, jnp.float64) for k, v in inputs.items()}).shape
        residual_y = rng.standard_normal(y_shape)  # drawn after the inputs, as the base helper draws it
        out = t._as_mapping(backward(**{upstream: residual_y.copy()}, **{k: v.copy() for k, v in inputs.items()}))
        if "residual_z" not in out:
            return None
        got = residual_z_reference(pullback, inputs, residual_y)
        if got is None:
            return None
        y, ref = got
        check, message = t._compare_one("residual_z", "z", out, ref, residual_y.shape, rtol, atol, trial)
        if message is not None:
            names = [str(d) for d in diagnose(np.asarray(out["residual_z"]), ref, _context(inputs, residual_y, y))]
            raise AssertionError(
                f"backward does not match JAX autodiff of forward (trial {trial}, seed {seed + trial}, float64, "
                f"inputs {shapes}):\n  {message}" + "".join(f"\n    {n}" for n in names)
            )
    return check


def wider(base):
    """``base`` (the three-gradient check) plus residual_z and the suspect line; the same signature."""

    @functools.wraps(base)
    def assert_backward_matches(forward, backward, shapes, **options):
        try:
            checks = base(forward, backward, shapes, **options)
        except AssertionError as exc:
            if set(LAYER_GRADIENTS) <= failing_names(str(exc)):
                raise AssertionError(f"{exc}\n  {SUSPECT}") from None
            raise
        clean, _ = t._check_call(
            shapes, options.get("wrt"), options.get("transform"), options.get("upstream", "residual_y"), 1
        )
        _check_residual_z(  # raises on a mismatch; the returned list stays the gradients named by wrt
            forward,
            backward,
            clean,
            seed=options.get("seed", 0),
            rtol=options.get("rtol", t.BACKWARD_REL_TOL),
            atol=options.get("atol", t.BACKWARD_ABS_TOL),
            n_trials=options.get("n_trials", t.BACKWARD_TRIALS),
            transform=options.get("transform"),
            upstream=options.get("upstream", "residual_y"),
        )
        return checks

    return assert_backward_matches
