"""A whole hand-written derivation checked term by term against JAX, with the first wrong term found.

The user writes the forward once, against the array API (``xp = x.__array_namespace__()``,
as ``manual/`` is), and marks each intermediate with a named tap::

    def forward(tap, x, t, w1, b1, w2, b2):            # keyword inputs; returns the loss (0-d)
        z1 = tap("z1", w1.T @ x + b1)                  # (H, N)
        y1 = tap("y1", xp.tanh(z1))
        ...

and a NumPy backward that fills ``g`` with ∂L/∂(term) for each tapped name and each parameter,
reading what it needs from ``v`` (every input, parameter and tapped value of the forward, by
name: ``v["z1"]`` or ``v.z1``) and the upstream terms from ``g``::

    def backward(g, v):
        g["z1"] = g["y1"] * (1 - v.y1**2)
        g["w1"] = v.x @ g["z1"].T
        g.add("x", ...)                                # a term used in several places: add each part

The check runs the forward on NumPy (the values the backward reads) and under JAX with a zero
added at every tap (∂L/∂tap is then ∂L/∂term: the trick ``reference/`` uses), and the backward twice:

- end to end: reads of ``g`` return the user's own values, as in their code;
- isolated: each read of a term JAX knows returns JAX's value, so a term is computed from
  correct inputs and is wrong by its own formula only.

A term wrong in isolation is an **origin**; one wrong only end to end is **inherited**, from the
origins among the terms it reads (directly or through others). The catalogue
(``fcgrad.diagnosis.catalogue``) runs on each origin, told which layer quantity the term is
(``fcgrad.derivation.terms.Structure``: a z, a grad_w, a grad_b, a residual sent down) and the
user's layout (``weights="out,in"``, ``samples="rows"``), in which it speaks. An exception in the
backward is a failure of its own, reported with the user's file and line. Everything in float64.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.derivation.summary import DerivationHtml
from fcgrad.derivation.terms import Grads, PassResult, Structure, Values, compare_term, term_context
from fcgrad.diagnosis.catalogue import Diagnosis, diagnose
from fcgrad.diagnosis.layout import Layout, layout
from fcgrad.engine.user_code import call, source_file, user_error
from fcgrad.manual.errors import FcgradError
from fcgrad.reference.precision import to_jax

__tracebackhide__ = True  # pytest shows the user's test and the message, not these frames

# A correct float64 derivation differs from jax.grad by rounding only. Measured on the batch-norm MLP of
# examples/ (every term, both passes, N = 4 to 64): rel ≤ 1.2e-15. A wrong formula gives rel ≥ 1e-3.
# 1e-10, the bound the layer helper uses, leaves 1e5× above the one and 1e7× below the other.
DERIVATION_REL_TOL = 1e-10
# For terms whose true value is zero or nearly so, where rel compares rounding to rounding: b1 of the
# batch-norm MLP (the mean subtraction cancels it) measured max|Δ| ≤ 5.3e-17 with O(1) inputs; 1e-13 is
# 2000× above that and 1e10× below an O(1) wrong term.
DERIVATION_ABS_TOL = 1e-13


@dataclass(frozen=True)
class TermRow:
    name: str
    shape: tuple[int, ...]  # JAX's (the term's) shape
    end_to_end: PassResult | None
    isolated: PassResult | None
    verdict: str  # "ok", "origin", "inherited", "wrong", "missing" (a parameter), "not computed" (a tap)
    inherits_from: tuple[str, ...] = ()
    diagnoses: tuple[Diagnosis, ...] = ()


@dataclass
class DerivationReport(DerivationHtml):
    rows: list[TermRow]  # in the order the backward computed them, then terms it never computed
    unchecked: list[str]  # names the backward wrote that are neither a tap nor a parameter
    crashes: dict[str, str] = field(default_factory=dict)  # pass -> "FILE:LINE: ... raised ..."
    rtol: float = DERIVATION_REL_TOL
    atol: float = DERIVATION_ABS_TOL
    layout: Layout = field(default_factory=Layout)

    @property
    def ok(self) -> bool:
        return not self.crashes and all(r.verdict in ("ok", "not computed") for r in self.rows)

    @property
    def origins(self) -> list[TermRow]:
        return [r for r in self.rows if r.verdict == "origin"]


def _as_arrays(kind: str, mapping) -> dict[str, np.ndarray]:
    if not isinstance(mapping, Mapping) or not mapping:
        raise FcgradError(f"{kind}: expected a dict of name -> array, got {type(mapping).__name__}")
    out = {}
    for name, value in mapping.items():
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise FcgradError(f"{kind}[{name!r}]: expected a numeric array, got dtype {a.dtype}")
        if a.dtype.kind == "f":
            a = a.astype(np.float64)
            if not np.all(np.isfinite(a)):
                raise FcgradError(f"{kind}[{name!r}]: expected finite values, got NaN or Inf")
        out[name] = a
    return out


def _call(what: str, fn, *args, **kwargs):
    """``call`` (the user's line on an exception), raised from here: pytest hides this frame, so the user
    sees their test and the one line, not the engine's frames in between."""
    try:
        return call(what, fn, *args, **kwargs)
    except FcgradError as exc:
        raise FcgradError(str(exc)) from None


def _numpy_forward(forward, inputs: dict) -> tuple[float, dict[str, np.ndarray]]:
    taps: dict[str, np.ndarray] = {}

    def tap(name, value):
        if not isinstance(name, str) or name in taps or name in inputs:
            used = "a tap" if name in taps else "an input"
            raise FcgradError(f"tap({name!r}): each tap needs a new name; {name!r} is already {used}")
        taps[name] = np.array(value, dtype=np.float64)
        return value

    loss = _call("forward (on NumPy)", forward, tap, **{k: v.copy() for k, v in inputs.items()})
    if np.ndim(loss) != 0:
        raise FcgradError(f"forward: expected it to return the loss, a 0-d value, got shape {np.shape(loss)}")
    return float(loss), taps


def _jax_truth(forward, params: dict, data: dict, taps: dict) -> dict[str, np.ndarray]:
    """∂L/∂(every tap and parameter) by jax.grad, with zeros added at the taps."""

    def loss(p, zeros, d):
        return forward(lambda name, value: value + zeros[name], **p, **d)

    with jax.enable_x64(True):
        as_j = lambda m: {k: to_jax(v) for k, v in m.items()}  # noqa: E731
        zeros = {k: jnp.zeros(v.shape, jnp.float64) for k, v in taps.items()}
        try:
            gp, gt = _call("forward (under JAX)", jax.grad(loss, argnums=(0, 1)), as_j(params), zeros, as_j(data))
        except FcgradError as exc:
            if "Tracer" not in str(exc):
                raise
            raise FcgradError(
                f"{exc} (write the forward against the array API: xp = x.__array_namespace__())"
            ) from None
        return {**{k: np.asarray(v) for k, v in gt.items()}, **{k: np.asarray(v) for k, v in gp.items()}}


def _run_backward(backward, values: Values, truth: dict, isolated: bool) -> tuple[Grads, str | None]:
    g = Grads(truth if isolated else None)
    try:
        backward(g, values)
    except FcgradError:
        raise
    except Exception as exc:  # the user's code: reported with its line, the terms written so far still compared
        return g, str(user_error("backward", exc, source_file(backward)))
    return g, None


def _closure(name: str, deps: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), list(deps.get(name, ()))
    while todo:
        d = todo.pop()
        if d not in seen:
            seen.add(d)
            todo.extend(deps.get(d, ()))
    return seen


def check_derivation(
    forward: Callable,
    backward: Callable,
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    n: int | None = None,
    rtol: float = DERIVATION_REL_TOL,
    atol: float = DERIVATION_ABS_TOL,
    weights: str = "in,out",
    samples: str = "columns",
) -> DerivationReport:
    """Compare every term of ``backward`` with JAX's, end to end and isolated; see the module docstring.

    Arguments:
        forward: ``forward(tap, **params, **data) -> loss`` (0-d), written against the array API
            (``xp = x.__array_namespace__()``); ``tap("name", value)`` names an intermediate and returns it.
        backward: ``backward(g, v)``: fills ``g["name"] = ∂L/∂name`` for each tap and parameter (``g.add``
            for a term with several parts), reading the forward's values from ``v`` (``v.x``, ``v["z1"]``).
        params: name -> array, the inputs the loss is differentiated by (each needs its ``g[name]``).
        data: name -> array, the other inputs (x, targets).
        n: the batch size for the catalogue's 1/N (default: the sample axis of the first 2-D data array).
        rtol, atol: a term passes when ``rel ≤ rtol`` or ``max|Δ| ≤ atol`` (defaults 1e-10, 1e-13).
        weights: ``"in,out"`` (default, w (in, out)) or ``"out,in"`` (w (out, in)).
        samples: ``"columns"`` (default, x (D, N)) or ``"rows"`` (x (N, D), biases (out,) or (1, out)).

    Returns a ``DerivationReport`` (``.ok``, ``.rows``, ``.origins``, ``.crashes``); in a notebook it shows
    as a table. ``FcgradError`` (one line) for inputs it cannot run.

    Example::

        def forward(tap, x, t, w, b):
            xp = x.__array_namespace__()
            z = tap("z", w.T @ x + b)  # (out, N)
            return xp.sum((z - t) ** 2) / x.shape[1] / 2

        def backward(g, v):
            g["z"] = (v.z - v.t) / v.x.shape[1]  # (out, N)
            g["w"] = v.x @ g["z"].T  # (in, out)
            g["b"] = g["z"].sum(axis=1, keepdims=True)  # (out, 1)

        report = check_derivation(forward, backward, {"w": w, "b": b}, {"x": x, "t": t})
    """
    view = layout(weights, samples)
    params, data = _as_arrays("params", params), _as_arrays("data", data)
    clash = sorted(set(params) & set(data))
    if clash:
        raise FcgradError(f"params and data: expected different names, got {clash} in both")
    if n is None:
        n = next((a.shape[view.sample_axis] for a in data.values() if a.ndim == 2), None)
    _, taps = _numpy_forward(forward, {**params, **data})
    truth = _jax_truth(forward, params, data, taps)
    values = Values({**params, **data, **taps})
    runs = {name: _run_backward(backward, values, truth, name == "isolated") for name in ("end_to_end", "isolated")}
    e2e, iso = runs["end_to_end"][0], runs["isolated"][0]
    crashes = {name: msg for name, (_, msg) in runs.items() if msg}
    order = list(dict.fromkeys([k for k in e2e.order if k in truth] + [k for k in iso.order if k in truth]))
    order += [k for k in [*reversed(taps), *params] if k not in order]
    results = {}
    for name in order:
        a = compare_term(e2e.written(name), truth[name], rtol, atol)
        b = compare_term(iso.written(name), truth[name], rtol, atol)
        results[name] = (a, b)
    origins = {k for k, (_, b) in results.items() if b is not None and not b.ok}
    structure = Structure(values, truth, set(params), view) if origins else None
    rows = []
    for name in order:
        a, b = results[name]
        diagnoses: tuple[Diagnosis, ...] = ()
        inherits: tuple[str, ...] = ()
        if a is None and b is None:
            verdict = "missing" if name in params else "not computed"
        elif b is not None and not b.ok:
            verdict = "origin"
            ctx = term_context(name, structure, n)
            diagnoses = tuple(diagnose(iso.written(name), truth[name], ctx))
        elif a is not None and not a.ok:
            verdict = "inherited" if b is not None else "wrong"  # "wrong": the isolated pass never reached it
            upstream = _closure(name, e2e.deps) & origins
            earlier = [k for k in order[: order.index(name)] if k in origins]
            inherits = tuple(k for k in order if k in (upstream or set(earlier)))
        else:
            verdict = "ok"
        rows.append(TermRow(name, truth[name].shape, a, b, verdict, inherits, diagnoses))
    unchecked = [k for k in e2e.order if k not in truth]
    return DerivationReport(rows, unchecked, crashes, rtol, atol, view)


__all__ = ["DerivationReport", "PassResult", "TermRow", "check_derivation", "DERIVATION_REL_TOL"]
