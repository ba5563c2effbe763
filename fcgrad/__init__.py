"""fcgrad: backpropagation through fully connected layers, derived by hand and proved against JAX.

The public entry point. Two sides and the checks between them:

- ``fcgrad.manual``: the hand-derived matrix backprop in NumPy (the ``manual`` package);
- ``fcgrad.reference``: the same model in JAX, differentiated by ``jax.grad`` (``reference``);
- ``fcgrad.check(problem)``: gradients, finite differences and whole training runs, compared;
- ``fcgrad.audit(problem)``: where the blog's published code departs from its own math;
- ``fcgrad.testing.assert_backward_matches``: the pytest helper for your own layer's backward;
- ``fcgrad.example(name)``, ``fcgrad.random_problem(sizes, ...)``, ``fcgrad.Problem``: what to check.

    >>> import fcgrad
    >>> fcgrad.check(fcgrad.example("and").with_options(steps=10)).ok
    True

Bad input raises ``fcgrad.FcgradError`` (a ValueError) with a one-line message. Everything
that needs JAX is loaded on first use, so ``import fcgrad`` itself is quick.
"""

import importlib

from fcgrad._shadowing import assert_not_shadowed

assert_not_shadowed()  # before anything below imports manual, reference or crosscheck

from fcgrad._version import version as _version  # noqa: E402
from manual.errors import DivergenceError, FcgradError  # noqa: E402

__version__ = _version()

# public name -> (module, attribute), imported on first use (these modules import JAX)
_LAZY = {
    "check": ("crosscheck.run", "check"),
    "CheckReport": ("crosscheck.run", "CheckReport"),
    "audit": ("crosscheck.audit", "audit"),
    "AuditReport": ("crosscheck.audit", "AuditReport"),
    "BlogDepartures": ("manual.blog_code", "BlogDepartures"),
    "Problem": ("crosscheck.problems", "Problem"),
    "example": ("crosscheck.problems", "example"),
    "random_problem": ("crosscheck.problems", "random_problem"),
}
_SUBMODULES = ("manual", "reference", "testing")

__all__ = ["__version__", "FcgradError", "DivergenceError", *_LAZY, *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"fcgrad.{name}")
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fcgrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
