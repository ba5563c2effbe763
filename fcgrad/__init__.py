"""fcgrad: backpropagation through fully connected layers, derived by hand and proved against JAX.

The public entry point. Two sides and the checks between them:

- ``fcgrad.manual``: the hand-derived matrix backprop in NumPy (``manual/`` in the repository);
- ``fcgrad.reference``: the same model in JAX, differentiated by ``jax.grad`` (``reference/``);
- ``fcgrad.check_run(fcgrad.describe(spec="4-8-3", optimizer="adam"))``: any run the command can check,
  from one description (the command's options by name), with its ``RunReport`` (``.as_json()``: the JSON);
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
import os

# fcgrad is the only import name. Installed, manual/, reference/ and benchmarks/ sit inside this folder;
# in a checkout run without installing (PYTHONPATH=.), they sit beside it, and this finds them there.
_here = os.path.dirname(os.path.abspath(__file__))
_checkout = os.path.dirname(_here)
if not os.path.isdir(os.path.join(_here, "manual")) and os.path.isfile(os.path.join(_checkout, "manual", "layer.py")):
    __path__.append(_checkout)  # noqa: F821 (a package's own __path__)

from fcgrad._version import version as _version  # noqa: E402
from fcgrad.manual.errors import DivergenceError, FcgradError  # noqa: E402

__version__ = _version()

# public name -> (module, attribute), imported on first use (these modules import JAX)
_LAZY = {
    "describe": ("fcgrad.engine.description", "describe"),
    "RunDescription": ("fcgrad.engine.description", "RunDescription"),
    "Data": ("fcgrad.engine.description", "Data"),
    "check_run": ("fcgrad.engine.check_run", "check_run"),
    "RunReport": ("fcgrad.engine.report", "RunReport"),
    "check": ("fcgrad.engine.run", "check"),
    "CheckReport": ("fcgrad.engine.run", "CheckReport"),
    "audit": ("fcgrad.audits.blog", "audit"),
    "AuditReport": ("fcgrad.audits.blog", "AuditReport"),
    "BlogDepartures": ("fcgrad.manual.blog_code", "BlogDepartures"),
    "Problem": ("fcgrad.engine.problems", "Problem"),
    "example": ("fcgrad.engine.problems", "example"),
    "random_problem": ("fcgrad.engine.problems", "random_problem"),
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
