"""Property tests: for any network hypothesis draws, the manual gradients match JAX and keep the blog's layout.

A drawn case: depth 1-5 layers, widths 1-32 (inputs, hidden and outputs), batch 1-64, one
activation per layer, square or cross-entropy loss, and a 32-bit seed from which NumPy draws
float64 weights, biases, inputs and targets. For every layer and every quantity
(residual_z, grad_w, grad_b, residual_x) manual.gradients must match reference.gradients
within crosscheck's float64 tolerance, and every array must have the blog's shape.

Settings (``property_settings``):
- ``max_examples=40`` for the JAX comparison: each case with new shapes or activations
  compiles the reference once (0.2-1 s on a 2-core CPU), so 40 cases take 20-30 s on an idle
  2-core machine (45 s measured while other jobs shared it).
  The shape property needs no JAX and runs 200 cases in about a second.
- ``deadline=None``: the first call for a shape includes JAX's compilation, so per-case
  times vary tenfold; a deadline would flag compiles, not slow code.
- ``derandomize=True``: CI tests the same cases on every run (reproducible failures; no
  ``.hypothesis/`` database is written). ``print_blob=True`` prints a reproduction blob.
- no health check is suppressed: the strategies are cheap and no fixture is used.
Set ``FCGRAD_PROPERTY_EXPLORE=1`` to search new random cases instead (10× the examples,
not derandomized, failures saved in ``.hypothesis/``, which git ignores); 400 such cases passed
when this file was written.
"""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcgrad import manual, reference
from fcgrad.engine import tolerances
from fcgrad.engine.compare import errors

EXPLORE = os.environ.get("FCGRAD_PROPERTY_EXPLORE") == "1"
JAX_EXAMPLES = 40  # 20-30 s on 2 idle CPU cores (see the module docstring)
SHAPE_EXAMPLES = 200  # NumPy only, milliseconds each
ACTIVATION_NAMES = sorted(manual.activations.ACTIVATIONS)
LOSS_NAMES = sorted(manual.losses.LOSSES)


def property_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples * (10 if EXPLORE else 1),
        deadline=None,
        derandomize=not EXPLORE,
        print_blob=True,
    )


@st.composite
def networks(draw):
    """(sizes, batch, activations, loss, seed) of a random network and problem."""
    depth = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, 32), min_size=depth + 1, max_size=depth + 1))
    batch = draw(st.integers(1, 64))
    activations = draw(st.lists(st.sampled_from(ACTIVATION_NAMES), min_size=depth, max_size=depth))
    loss = draw(st.sampled_from(LOSS_NAMES))
    seed = draw(st.integers(0, 2**32 - 1))
    return sizes, batch, activations, loss, seed


def problem(sizes, batch, loss, seed):
    """float64 params (random biases too), inputs x (in, N) and targets t (out, N) from one NumPy seed."""
    rng = np.random.default_rng(seed)
    params = manual.init_params(sizes, seed=seed)
    for p in params:
        p["b"] = 0.5 * rng.standard_normal(p["b"].shape)  # (out, 1); init_params starts them at 0
    x = rng.standard_normal((sizes[0], batch))  # (in, N)
    if loss == "cross-entropy":
        t = np.eye(sizes[-1])[:, rng.integers(sizes[-1], size=batch)]  # (out, N), one-hot columns
    else:
        t = rng.standard_normal((sizes[-1], batch))  # (out, N)
    return params, x, t


def blog_layout(n_in, n_out, batch):
    """Each quantity's shape in the blog's layout for a layer (in -> out) and a batch of N."""
    return {
        "residual_z": (n_out, batch),
        "grad_w": (n_in, n_out),
        "grad_b": (n_out, 1),
        "residual_x": (n_in, batch),
    }


@settings(property_settings(JAX_EXAMPLES))
@given(networks())
@pytest.mark.slow
def test_manual_gradients_match_jax_for_any_network(case):
    sizes, batch, activations, loss, seed = case
    params, x, t = problem(sizes, batch, loss, seed)
    m = manual.gradients(params, x, t, activations=activations, loss=loss)
    r = reference.gradients(params, x, t, activations=activations, loss=loss, dtype="float64")
    limit = tolerances.GRAD_REL_TOL_F64
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        for quantity, shape in blog_layout(n_in, n_out, batch).items():
            a = getattr(m.layers[i], quantity)  # manual
            ref = r["layers"][i][quantity]  # JAX
            where = f"layer {i} {quantity}"
            assert a.shape == ref.shape == shape, f"{where}: manual {a.shape}, JAX {ref.shape}, blog layout {shape}"
            max_abs, rel = errors(a, ref)
            assert rel <= limit, f"{where}: max|Δ| {max_abs:.1e} rel {rel:.1e} > {limit:.0e}"
    max_abs, rel = errors(m.residual_y, r["residual_y"])
    assert rel <= limit, f"residual_y: max|Δ| {max_abs:.1e} rel {rel:.1e} > {limit:.0e}"


@settings(property_settings(SHAPE_EXAMPLES))
@given(networks())
def test_every_manual_quantity_has_the_seed_layout(case):
    sizes, batch, activations, loss, seed = case
    params, x, t = problem(sizes, batch, loss, seed)
    g = manual.gradients(params, x, t, activations=activations, loss=loss)
    assert g.y.shape == g.residual_y.shape == (sizes[-1], batch)
    assert len(g.layers) == len(sizes) - 1
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        for quantity, shape in blog_layout(n_in, n_out, batch).items():
            got = getattr(g.layers[i], quantity)
            assert got.shape == shape and got.dtype == np.float64, f"layer {i} {quantity}: {got.shape} {got.dtype}"
