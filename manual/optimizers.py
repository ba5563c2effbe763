"""Optimizers written by hand, following optax 0.2.8's update rules operation by operation.

Parameters, gradients and every moment are a list of dicts of arrays (``[{"w": (in, out),
"b": (out, 1), ...}, ...]``, any keys); an update maps each array on its own. With ``g`` the
gradient, ``p`` the parameter and ``lr`` the learning rate, one step is ``p ← p + u`` with:

- ``sgd``:      ``u = −lr·g``
- ``momentum``: ``m ← g + μ·m``; ``u = −lr·m``  (optax ``trace``: the gradient is not damped by 1 − μ)
- ``nesterov``: ``m ← g + μ·m``; ``u = −lr·(g + μ·m)`` with the new ``m``
- ``rmsprop``:  ``ν ← (1 − ρ)·g² + ρ·ν`` from ``ν₀ = initial_scale``; ``u = −lr·g / √(ν + eps)``
  (eps inside the root, no bias correction)
- ``adam``:     ``m ← (1 − β₁)·g + β₁·m``, ``ν ← (1 − β₂)·g² + β₂·ν``, ``k ← k + 1``;
  ``m̂ = m / (1 − β₁ᵏ)``, ``ν̂ = ν / (1 − β₂ᵏ)``; ``u = −lr·m̂ / (√(ν̂ + eps_root) + eps)``
- ``adamw``:    adam's ``m̂ / (√(ν̂ + eps_root) + eps)`` plus ``weight_decay·p`` (the parameter before
  the step), the sum times ``−lr``: the decay is scaled by the learning rate, not by the adaptive step.

Defaults are optax's (momentum 0.9 for ``momentum`` and ``nesterov``, where optax has none).
"""

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from fcgrad.manual.errors import FcgradError

Tree = list[dict[str, np.ndarray]]

# optax 0.2.8's defaults (optax.sgd, rmsprop, adam, adamw); momentum 0.9 where optax.sgd has None
DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9},
    "rmsprop": {"decay": 0.9, "eps": 1e-8, "initial_scale": 0.0},
    "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0},
    "adamw": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0, "weight_decay": 1e-4},
}
OPTIMIZERS = tuple(DEFAULTS)
# allowed range of each hyperparameter: (low, high, low included, high included)
_RANGES = {
    "momentum": (0.0, 1.0, True, False),
    "decay": (0.0, 1.0, True, False),
    "b1": (0.0, 1.0, True, False),
    "b2": (0.0, 1.0, True, False),
    "eps": (0.0, math.inf, False, False),
    "eps_root": (0.0, math.inf, True, False),
    "initial_scale": (0.0, math.inf, True, False),
    "weight_decay": (0.0, math.inf, True, False),
}


class Optimizer(NamedTuple):
    """An optimizer's name, learning rate and every other hyperparameter (all explicit)."""

    name: str
    lr: float
    hyper: Mapping[str, float]

    def describe(self) -> str:
        extra = "".join(f", {k} {v:g}" for k, v in self.hyper.items())
        return f"{self.name} (lr {self.lr:g}{extra})"


def _check_number(name: str, value, low: float, high: float, low_in: bool, high_in: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise FcgradError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    above = v >= low if low_in else v > low
    below = v <= high if high_in else v < high
    if not (math.isfinite(v) and above and below):
        interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
        raise FcgradError(f"{name}: expected a finite number in {interval}, got {value!r}")
    return v


def make_optimizer(name: str, lr: float = 0.1, **hyper: float) -> Optimizer:
    """Check ``name`` and every hyperparameter; the ones not given take optax's defaults."""
    if name not in DEFAULTS:
        raise FcgradError(f"optimizer: expected one of {list(OPTIMIZERS)}, got {name!r}")
    unknown = sorted(set(hyper) - set(DEFAULTS[name]))
    if unknown:
        raise FcgradError(f"{name}: unknown hyperparameter(s) {unknown}; expected some of {list(DEFAULTS[name])}")
    lr = _check_number("learning rate", lr, 0.0, math.inf, False, False)
    values = {k: _check_number(f"{name} {k}", hyper.get(k, v), *_RANGES[k]) for k, v in DEFAULTS[name].items()}
    return Optimizer(name, lr, values)


def _map(fn, *trees: Tree) -> Tree:
    """Apply ``fn`` to matching arrays of trees with the same layers and keys."""
    return [{k: fn(*(t[i][k] for t in trees)) for k in trees[0][i]} for i in range(len(trees[0]))]


def _full_like(tree: Tree, value: float) -> Tree:
    return _map(lambda a: np.full_like(a, value), tree)


def init_state(opt: Optimizer, params: Tree) -> dict:
    """The optimizer's state before the first step, as optax's ``init``: zero moments, count 0."""
    if opt.name in ("momentum", "nesterov"):
        return {"trace": _full_like(params, 0.0)}
    if opt.name == "rmsprop":
        return {"nu": _full_like(params, opt.hyper["initial_scale"])}
    if opt.name in ("adam", "adamw"):
        return {"count": 0, "mu": _full_like(params, 0.0), "nu": _full_like(params, 0.0)}
    return {}


def _trace(opt: Optimizer, grads: Tree, state: dict) -> tuple[Tree, dict]:
    mu = opt.hyper["momentum"]
    trace = _map(lambda g, m: g + mu * m, grads, state["trace"])  # m ← g + μ·m
    if opt.name == "nesterov":
        return _map(lambda g, m: g + mu * m, grads, trace), {"trace": trace}  # g + μ·(new m)
    return trace, {"trace": trace}


def _rms(opt: Optimizer, grads: Tree, state: dict) -> tuple[Tree, dict]:
    decay, eps = opt.hyper["decay"], opt.hyper["eps"]
    nu = _map(lambda g, v: (1 - decay) * g**2 + decay * v, grads, state["nu"])
    return _map(lambda g, v: (1 / np.sqrt(v + eps)) * g, grads, nu), {"nu": nu}  # eps inside the root


def _adam(opt: Optimizer, grads: Tree, state: dict) -> tuple[Tree, dict]:
    b1, b2, eps, eps_root = (opt.hyper[k] for k in ("b1", "b2", "eps", "eps_root"))
    mu = _map(lambda g, m: (1 - b1) * g + b1 * m, grads, state["mu"])
    nu = _map(lambda g, v: (1 - b2) * g**2 + b2 * v, grads, state["nu"])
    count = state["count"] + 1
    c1, c2 = 1 - b1**count, 1 - b2**count  # bias corrections, k counted from 1
    direction = _map(lambda m, v: (m / c1) / (np.sqrt(v / c2 + eps_root) + eps), mu, nu)
    return direction, {"count": count, "mu": mu, "nu": nu}


def update(opt: Optimizer, grads: Tree, state: dict, params: Tree) -> tuple[Tree, dict]:
    """One step: ``(new params, new state)``; nothing given is modified."""
    if opt.name in ("momentum", "nesterov"):
        direction, state = _trace(opt, grads, state)
    elif opt.name == "rmsprop":
        direction, state = _rms(opt, grads, state)
    elif opt.name in ("adam", "adamw"):
        direction, state = _adam(opt, grads, state)
    else:
        direction = grads
    if opt.name == "adamw":
        wd = opt.hyper["weight_decay"]
        direction = _map(lambda d, p: d + wd * p, direction, params)  # decoupled: added after the scaling
    lr = opt.lr
    return _map(lambda p, d: p + (-lr) * d, params, direction), state
