"""The pieces of a term-by-term check: the ``g`` and ``v`` a user's backward sees, one term's comparison,
and the catalogue's context read off the forward's values."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from fcgrad.diagnosis.catalogue import Context
from fcgrad.engine.compare import errors
from fcgrad.manual.activations import ACTIVATIONS

# Recognising an activation from the forward's values (y = f(z) for every entry): both come from the same
# float64 NumPy forward, so they agree to a few ulps; 1e-12 allows that and no other function.
ACTIVATION_MATCH_TOL = 1e-12


@dataclass(frozen=True)
class PassResult:
    """One term in one pass: None fields when the backward did not compute it."""

    max_abs_err: float
    rel_err: float
    ok: bool
    note: str = ""  # a wrong shape, a non-finite value


class Values(Mapping):
    """The forward's inputs, parameters and tapped values, read-only: ``v["h"]`` or ``v.h``."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self._arrays = {}
        for k, a in arrays.items():
            a = np.array(a)
            a.flags.writeable = False
            self._arrays[k] = a

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._arrays[name]
        except KeyError:
            raise KeyError(f"v[{name!r}]: no input, parameter or tap of that name; there are {sorted(self)}") from None

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(exc.args[0]) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


class Grads:
    """The ``g`` a backward fills: ``g[name] = ∂L/∂name`` once, or ``g.add(name, part)`` for each part.

    Isolated (``truth`` given): reading a term JAX knows returns JAX's value. It records the
    order terms are first written and, for each, the terms read since the previous write.
    """

    def __init__(self, truth: dict[str, np.ndarray] | None = None):
        self._truth = truth
        self._own: dict[str, np.ndarray] = {}
        self.order: list[str] = []
        self.deps: dict[str, set[str]] = {}
        self._reads: set[str] = set()

    def _store(self, name: str, value) -> None:
        if not isinstance(name, str):
            raise TypeError(f"g: expected a term name (str) as the key, got {name!r}")
        a = np.array(value, dtype=np.float64)
        self._own[name] = self._own[name] + a if name in self._own else a
        if name not in self.order:
            self.order.append(name)
        self.deps.setdefault(name, set()).update(self._reads - {name})
        self._reads = set()

    def __setitem__(self, name: str, value) -> None:
        if name in self._own:
            raise KeyError(
                f"g[{name!r}] written twice: for a term used in several places, add each part with "
                f"g.add({name!r}, part) (g[...] += reads the term back)"
            )
        self._store(name, value)

    def add(self, name: str, part) -> None:
        """Add one part of ∂L/∂name (a term the forward uses in several places)."""
        self._store(name, part)

    def __getitem__(self, name: str) -> np.ndarray:
        self._reads.add(name)
        if self._truth is not None and name in self._truth:
            return self._truth[name].copy()
        if name not in self._own:
            raise KeyError(f"g[{name!r}] read before the backward wrote it")
        return self._own[name].copy()

    def __contains__(self, name) -> bool:
        return name in self._own

    def written(self, name: str) -> np.ndarray | None:
        """The user's own value of ``name``, or None."""
        return self._own.get(name)


def compare_term(manual, truth: np.ndarray, rtol: float, atol: float):
    """A ``PassResult`` for one term (None when it was not computed)."""
    if manual is None:
        return None
    if manual.shape != truth.shape:
        return PassResult(float("nan"), float("nan"), False, f"shape {manual.shape}, expected {truth.shape}")
    if not np.all(np.isfinite(manual)):
        return PassResult(float("nan"), float("nan"), False, "not finite")
    max_abs, rel = errors(manual, truth)
    return PassResult(max_abs, rel, bool(rel <= rtol or max_abs <= atol))


def _activation_of(z: np.ndarray, y: np.ndarray) -> str | None:
    """The activation f with y = f(z) entry by entry, if one of the library's is."""
    for name in ("sigmoid", "tanh", "relu"):
        f = ACTIVATIONS[name].forward(z)
        if np.max(np.abs(f - y), initial=0.0) <= ACTIVATION_MATCH_TOL * max(1.0, float(np.max(np.abs(y)))):
            return name
    return None


def term_context(name: str, deps: set[str], values: Mapping, truth: dict, n: int | None) -> Context:
    """What the catalogue can know about a term from the terms its formula read.

    One upstream term U with U = f(term) for a known activation f: the term is a residual_z
    (z = the term, y = U, upstream = JAX's ∂L/∂U). A term shaped (k, 1) read from one (k, M)
    term is a bias-like sum of that term (its residual_z).
    """
    ctx = dict(n=n)
    if len(deps) == 1:
        (up,) = deps
        if up in values and name in values and values[up].shape == values[name].shape:
            act = _activation_of(values[name], values[up])
            if act is not None:
                ctx.update(quantity="residual_z", z=values[name], y=values[up], upstream=truth.get(up), activation=act)
        t, u = truth.get(name), truth.get(up)
        if t is not None and u is not None and t.ndim == 2 and t.shape[1] == 1 and u.shape[0] == t.shape[0]:
            ctx.update(residual_z=u)
    return Context(**ctx)
