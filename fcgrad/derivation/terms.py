"""The pieces of a term-by-term check: the ``g`` and ``v`` a user's backward sees, one term's comparison,
and the catalogue's context read off the forward's values."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from fcgrad.diagnosis.catalogue import SIGNATURE_REL_TOL, Context, activation_of
from fcgrad.diagnosis.layout import Layout
from fcgrad.engine.compare import errors

__tracebackhide__ = True  # pytest shows the user's test and the message, not these frames


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


def _close(a, b) -> bool:
    """Whether a layer's formula (grad_w = x·δᵀ, grad_b = Σ δ, residual_x = w·δ), recomputed in NumPy from JAX's
    δ and the forward's float64 values, is JAX's own term: a formula applied to the reference's numbers, told to
    the catalogue's own tolerance (``SIGNATURE_REL_TOL``; measured rel ≤ 2e-15 on the examples)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.size == b.size and errors(a.reshape(b.shape), b)[1] <= SIGNATURE_REL_TOL


class Structure:
    """The layer a term belongs to, read off the correct numbers: which formula of a layer holds for it.

    The catalogue's own pieces, not copies: its ``activation_of`` reads f off y = f(z), its tolerance tells a
    formula, and what it is told (``Context``) is what ``diagnose`` reads.

    ``values``: the forward's inputs, parameters and taps; ``truth``: JAX's ∂L/∂(each term). A tap Z
    is a layer's z when some tap Y = f(Z) for a library activation; a term is its grad_w when
    truth = x·∂L/∂zᵀ (in the user's layout) for some value x, its grad_b when truth sums ∂L/∂z over
    the samples, its residual_x when truth = w·∂L/∂z for some 2-D parameter w.
    """

    def __init__(self, values: Mapping, truth: dict, params: set[str], view: Layout):
        self.values, self.truth, self.params, self.view = values, truth, params, view
        self.layers = []  # (z name, y name, activation)
        for z in truth:
            for y in values:
                if y != z and z in values and values[y].shape == values[z].shape and values[z].ndim == 2:
                    act = activation_of(values[z], values[y])
                    if act is not None and y in truth:
                        self.layers.append((z, y, act))

    def _data(self, a):
        return self.view.to_blog("data", a)

    def _grad_w(self, x, d):
        return self.view.from_blog("weight", self._data(x) @ self._data(d).T)

    def _residual_x(self, w, d):
        return self.view.from_blog("data", self.view.to_blog("weight", w) @ self._data(d))

    def _deltas(self):
        """(name, ∂L/∂term) of every 2-D term shaped like data: the candidates for a layer's residual_z."""
        return [(k, v) for k, v in self.truth.items() if v.ndim == 2 and k not in self.params]

    def _layer_of(self, d: str) -> dict:
        for z, y, act in self.layers:
            if z == d:
                v, t = self.values, self.truth
                return dict(z=v[z], y=v[y], upstream=t[y], activation=act)
        return {}

    def context(self, name: str, n: int | None) -> Context:
        """The catalogue's context of one term, in the user's layout; only n and the layout when no role fits."""
        base = dict(n=n, layout=self.view)
        for z, y, act in self.layers:
            if name == z:
                v, t = self.values, self.truth
                return Context(quantity="residual_z", z=v[z], y=v[y], upstream=t[y], activation=act, **base)
        for d, delta in self._deltas():
            if d != name:
                found = (
                    self._as_grad_w(name, d, delta)
                    or self._as_grad_b(name, delta)
                    or self._as_residual_x(name, d, delta)
                )
                if found is not None:
                    return Context(**found, **base)
        return Context(**base)

    def _as_grad_w(self, name: str, d: str, delta) -> dict | None:
        target = self.truth[name]
        if name not in self.params or target.ndim != 2:
            return None
        shape = self.view.to_blog("weight", target).shape  # (in, out)
        for x, xv in self.values.items():
            if x == name or xv.ndim != 2 or self._data(xv).shape != (shape[0], self._data(delta).shape[1]):
                continue
            if _close(self._grad_w(xv, delta), target):
                others = tuple(
                    (f"{k}", a) for k, a in self.values.items() if k not in (x, name) and a.shape == xv.shape
                )
                layer = self._layer_of(d)
                found = dict(quantity="grad_w", x=xv, w=self.values[name], residual_z=delta, grad_w=target)
                return {**found, "others": others, **layer}
        return None

    def _as_grad_b(self, name: str, delta) -> dict | None:
        target = self.truth[name]
        if name not in self.params or self._data(delta).shape[0] != target.size or target.size < 2:
            return None
        if _close(self._data(delta).sum(axis=1), target.reshape(-1)):
            return dict(quantity="grad_b", residual_z=delta)
        return None

    def _as_residual_x(self, name: str, d: str, delta) -> dict | None:
        target = self.truth[name]
        if name in self.params or target.ndim != 2:
            return None
        for w in self.params:
            wv = self.values[w]
            if wv.ndim != 2 or self.view.to_blog("weight", wv).shape != (
                self._data(target).shape[0],
                self._data(delta).shape[0],
            ):
                continue
            if _close(self._residual_x(wv, delta), target):
                layer = self._layer_of(d)
                found = dict(quantity="residual_x", w=wv, residual_z=delta)
                return {**found, **{k: layer[k] for k in ("upstream", "activation") if k in layer}}
        return None


def term_context(name: str, structure: Structure, n: int | None) -> Context:
    """What the catalogue can know about a term: the layer it belongs to, read off the correct numbers.

    The structure does not depend on what the user's formula read, so a term that reads the wrong
    upstream (∂L/∂y where residual_z belongs) is placed all the same.
    """
    return structure.context(name, n)
