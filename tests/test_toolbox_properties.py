"""Property tests of the toolbox: any spec network hypothesis draws (norms, dropout, L2, any loss) has
manual gradients equal to JAX's, and any optimizer with any hyperparameters in range takes the same
steps as optax when fed the same gradients.

Settings as tests/test_properties.py (derandomized, no deadline: the first call of a shape compiles).
``SPEC_EXAMPLES`` is small because each new shape compiles the JAX side (about a second on 2 idle
cores); the optimizer property runs 5 steps per case through one jitted optax update per optimizer.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import errors
from fcgrad.engine.toolbox import compare_spec_gradients, make_problem
from fcgrad.manual import optimizers
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.losses import LOSSES
from fcgrad.manual.spec import LayerSpec
from fcgrad.reference.optimizers import build

SPEC_EXAMPLES = 8
OPTIMIZER_EXAMPLES = 30


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, print_blob=True)


@st.composite
def spec_problems(draw):
    depth = draw(st.integers(1, 3))
    widths = draw(st.lists(st.integers(2, 6), min_size=depth + 1, max_size=depth + 1))
    layers = []
    for i in range(depth):
        norm = draw(st.sampled_from(["", "batch", "layer"]))
        dropout = draw(st.sampled_from([0.0, 0.25, 0.5]))
        layers.append(LayerSpec(widths[i], widths[i + 1], draw(st.sampled_from(sorted(ACTIVATIONS))), norm, dropout))
    loss = draw(st.sampled_from(sorted(LOSSES)))
    n = draw(st.integers(2, 12))
    l2 = draw(st.sampled_from([0.0, 0.1]))
    seed = draw(st.integers(0, 2**32 - 1))
    return tuple(layers), loss, n, l2, seed


@_settings(SPEC_EXAMPLES)
@given(spec_problems())
@pytest.mark.slow
def test_any_spec_network_has_manual_gradients_equal_to_jax(case):
    spec, loss, n, l2, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((spec[0].n_in, n))
    out = spec[-1].n_out
    one_hot = np.eye(out)[:, rng.integers(0, out, n)]
    t = one_hot if loss in ("cross-entropy", "hinge") else rng.uniform(0, 1, (out, n))
    rows = compare_spec_gradients(make_problem(spec, x, t, loss=loss, l2=l2, seed=seed % 1000))
    bad = [r for r in rows if not r.ok]
    assert not bad, "; ".join(f"layer {r.layer} {r.quantity}: rel {r.rel_err:.1e}" for r in bad)


def _unit(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


HYPER = {
    "momentum": _unit(0.0, 0.99),
    "decay": _unit(0.0, 0.999),
    "b1": _unit(0.0, 0.99),
    "b2": _unit(0.5, 0.9999),
    "eps": _unit(1e-10, 1e-2),
    "eps_root": _unit(0.0, 1e-6),
    "initial_scale": _unit(0.0, 1.0),
    "weight_decay": _unit(0.0, 0.5),
}
_UPDATES = {}


@st.composite
def optimizer_cases(draw):
    name = draw(st.sampled_from(optimizers.OPTIMIZERS))
    hyper = {k: draw(HYPER[k]) for k in optimizers.DEFAULTS[name]}
    lr = draw(_unit(1e-4, 1.0))
    return optimizers.make_optimizer(name, lr, **hyper), draw(st.integers(0, 2**32 - 1))


@_settings(OPTIMIZER_EXAMPLES)
@given(optimizer_cases())
def test_any_optimizer_setting_takes_optax_steps_on_the_same_gradients(case):
    opt, seed = case
    rng = np.random.default_rng(seed)
    params = [{"w": rng.standard_normal((3, 2)), "b": rng.standard_normal((2, 1))}]
    with jax.enable_x64(True):
        hyper = {k: jnp.asarray(v) for k, v in opt.hyper.items()}
        if opt.name not in _UPDATES:  # hyperparameters are traced: one compile per optimizer
            _UPDATES[opt.name] = jax.jit(lambda g, s, p, lr, h, name=opt.name: build(name, lr, h).update(g, s, p))
        state_r = build(opt.name, opt.lr, hyper).init(jax.tree.map(jnp.asarray, params))
        state_m = optimizers.init_state(opt, params)
        for _ in range(5):
            grads = [{k: rng.standard_normal(v.shape) for k, v in params[0].items()}]
            new_m, state_m = optimizers.update(opt, grads, state_m, params)
            u, state_r = _UPDATES[opt.name](grads, state_r, params, jnp.asarray(opt.lr), hyper)
            new_r = jax.tree.map(np.asarray, optax.apply_updates(params, u))
            for key in params[0]:
                max_abs, rel = errors(new_m[0][key], new_r[0][key])
                assert rel <= tol.GRAD_REL_TOL_F64, f"{opt.describe()} {key}: rel {rel:.1e}"
            params = new_m
