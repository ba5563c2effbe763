"""A pytest helper: check your own layer's hand-written backward against JAX autodiff of its forward.

Usage, in your own test file::

    from fcgrad.testing import assert_backward_matches

    def forward(x, w, b):                      # jax.numpy in, y out
        return jnp.tanh(w.T @ x + b)

    def backward(residual_y, x, w, b):         # NumPy in, named gradients out
        y = np.tanh(w.T @ x + b)               # (out, N)
        residual_z = residual_y * (1 - y * y)  # (out, N)
        return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T,
                "grad_b": residual_z.sum(axis=1, keepdims=True)}

    def test_my_layer():
        assert_backward_matches(forward, backward, {"x": (3, 5), "w": (3, 2), "b": (2, 1)})

How it checks, for each of ``n_trials`` seeded draws (float64, ``jax.enable_x64`` on only
inside the call):

1. every input named in ``shapes`` is drawn from N(0, 1) (then passed through
   ``transform[name]`` if given, e.g. ``np.exp`` for an input that must be positive);
2. ``y = forward(**inputs)`` on JAX arrays, and the upstream gradient ``residual_y = ∂L/∂y``
   is drawn from N(0, 1) with ``y``'s shape;
3. the reference gradients are ``jax.vjp(forward, *inputs)`` applied to ``residual_y``
   (jit-compiled once per call, so ``forward`` must be traceable: no Python branches on values);
4. ``backward(residual_y=..., **inputs)`` is called by keyword on NumPy copies and must
   return a mapping (or a NamedTuple) of gradients (``upstream="dout"`` renames the first
   keyword; both signatures are checked before any work);
5. each gradient is compared: ``rel = ‖manual − JAX‖ / ‖JAX‖`` (Frobenius, as
   ``fcgrad.engine.compare.errors``) must be ≤ ``rtol``, or ``max |manual − JAX|`` ≤ ``atol``
   (for gradients that are zero or nearly so).

Gradient names: by default the input ``x`` gets ``residual_x`` and every other input ``p``
gets ``grad_p`` (the blog's names: ``residual_x``, ``grad_w``, ``grad_b``). Pass
``wrt={"gradient name": "input name", ...}`` to choose other names or to check only some
inputs. When the backward also returns ``residual_z`` (∂L/∂z of a layer ``z = wᵀ·x + b``), it is
compared with JAX's too, on a row of its own (``fcgrad/testing/layer_checks.py``); other extra
keys are ignored.

Layouts: ``weights="out,in"`` for a ``w`` shaped (out, in) (``z = w·x + b``), ``samples="rows"``
for x shaped (N, in) with a bias (out,) (a (1, out) bias works too, and a (1, out) gradient is
accepted for an (out,) bias). Gradients are compared in the layout they come in; the index of the
largest difference and the catalogue's messages speak in it.

One forward for both sides: the helper calls ``forward`` on JAX arrays only, so a forward
written against the array API (``xp = x.__array_namespace__()``, as ``manual/`` is) also
runs on NumPy arrays, and your backward may call it to recompute what it needs.

On a mismatch it raises ``AssertionError`` naming every wrong gradient with its max |Δ|,
relative error, tolerance and the index of the largest difference (manual and JAX values
there), the classic mistake it looks like when the catalogue (``fcgrad.diagnosis.catalogue``) knows
it (a wrong shape too: transposed, keepdims lost), and ``residual_z`` as the suspect when
``grad_w``, ``grad_b`` and ``residual_x`` all fail with no name and residual_z was not returned.
Then the line of your backward where it went wrong: the backward runs once more while every assignment
of its file is recorded, and the first wrong value computed from right ones is given as
``line N of FILE: statement  (`target`)`` with the catalogue's name for it
(``fcgrad/testing/backward_trace.py``); a backward that passes is never traced.
A missing gradient, a wrong shape or a non-finite value fail the same way. A backward returning
float32 arrays is compared at a float32 tolerance (rtol 1e-4), and its checks say so. Mistakes
in the call itself raise ``FcgradError``: an unknown input in ``wrt``, a bad shape, a negative
or NaN rtol/atol, a forward whose output is not finite at the drawn inputs, a forward that calls
NumPy on JAX's traced arrays, a layout that is neither of the two. Every frame of the helper is
hidden from pytest's traceback (``__tracebackhide__``): a failure shows your test and the message.
"""

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.diagnosis.layout import Layout, layout
from fcgrad.engine.compare import errors, worst_index
from fcgrad.manual.errors import FcgradError
from fcgrad.testing import backward_trace, layer_checks

__tracebackhide__ = True  # pytest shows the user's test and the message, not these frames

# A correct float64 backward differs from jax.vjp only by rounding. Measured with this helper's N(0, 1)
# inputs: rel ≤ 5e-13 for the library's layer (tanh' = 1 − y² from a saturated y loses digits),
# ≤ 2e-14 for the softplus layer of examples/ and ≤ 7e-13 for its layer normalisation with D ≥ 3.
# A wrong term gives rel ≥ 1e-2. 1e-10 sits 150× above the worst of those and 1e8× below a wrong term.
BACKWARD_REL_TOL = 1e-10
# For gradients that are zero or nearly so, where rel measures rounding against a tiny norm: layer
# normalisation over D = 2 features has a true residual_x of order ε/v ≈ 1e-5; there rel reached
# 3e-11 while max|Δ| stayed ≤ 2e-13. N(0, 1) inputs give O(1) gradients, so 1e-11 (50× above that)
# is still 1e9× below a wrong term's error; lower it if your gradients are small by design.
BACKWARD_ABS_TOL = 1e-11
# A backward that returns float32 (or float16) arrays cannot reach a float64 tolerance: it is compared at
# rtol 1e-4 instead, as fcgrad.engine.tolerances.GRAD_REL_TOL_F32 (float32 sums of K ≤ 1024 terms in another
# order differ by up to K·u ≈ 6e-5), and every such check says so in its note; a wrong term gives rel ≥ 1e-2.
BACKWARD_REL_TOL_F32 = 1e-4
# Independent draws per call: one is enough for a wrong term, three guard against a lucky draw
# (a term that vanishes for one input) at a cost of milliseconds for layer-sized inputs.
BACKWARD_TRIALS = 3


@dataclass(frozen=True)
class GradientCheck:
    """One compared gradient, the worst of the trials; ``str()`` gives a one-line report."""

    name: str  # the gradient's name, e.g. "grad_w"
    input: str  # the input it differentiates, e.g. "w"
    max_abs_err: float  # max |manual − JAX|
    rel_err: float  # ‖manual − JAX‖ / ‖JAX‖
    rtol: float
    atol: float
    ok: bool
    trial: int  # which draw gave these numbers (0-based; its seed is seed + trial)
    note: str = ""  # e.g. that a float32 result was compared at a float32 tolerance

    def __str__(self) -> str:
        note = f"  [{self.note}]" if self.note else ""
        return (
            f"{self.name:<12} max|Δ| {self.max_abs_err:.1e}  rel {self.rel_err:.1e}  "
            f"(rtol {self.rtol:.0e}, atol {self.atol:.0e})  {'ok' if self.ok else 'MISMATCH'}{note}"
        )


def default_wrt(names) -> dict[str, str]:
    """The blog's names: ``x`` -> ``residual_x``, any other input ``p`` -> ``grad_p``."""
    return {("residual_x" if n == "x" else f"grad_{n}"): n for n in names}


def _check_tolerance(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise FcgradError(f"{name}: expected a non-negative number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise FcgradError(f"{name}: expected a finite non-negative number, got {value!r}")
    return float(value)


def _check_call(shapes, wrt, transform, upstream, n_trials):
    if not isinstance(shapes, Mapping) or not shapes:
        raise FcgradError(f"shapes: expected a dict of input name -> shape, e.g. {{'x': (3, 5)}}, got {shapes!r}")
    clean = {}
    for name, shape in shapes.items():
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape):
            raise FcgradError(f"shapes[{name!r}]: expected a tuple of positive integers, got {shapes[name]!r}")
        clean[name] = tuple(int(s) for s in shape)
    wrt = default_wrt(clean) if wrt is None else dict(wrt)
    unknown = {g: n for g, n in wrt.items() if n not in clean}
    if unknown:
        raise FcgradError(f"wrt: {unknown} name inputs that are not in shapes; expected inputs among {list(clean)}")
    if not wrt:
        raise FcgradError("wrt: expected at least one gradient to check, got none")
    bad = [n for n in (transform or {}) if n not in clean]
    if bad:
        raise FcgradError(f"transform: {bad} are not inputs; expected names among {list(clean)}")
    if upstream in clean:
        raise FcgradError(f"upstream: {upstream!r} is also an input name; pick a different name for ∂L/∂y")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise FcgradError(f"n_trials: expected a positive integer, got {n_trials!r}")
    return clean, wrt


def _check_signature(role: str, fn, names: list[str], hint: str) -> None:
    """``fn`` must accept ``names`` as keywords; a clear error instead of Python's TypeError mid-check."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: let the call itself decide
        return
    try:
        signature.bind(**dict.fromkeys(names))
    except TypeError as e:
        raise FcgradError(
            f"{role}: expected it to take the keywords {names}, but its signature is {signature} ({e}){hint}"
        ) from None


def _draw_inputs(shapes, transform, rng) -> dict[str, np.ndarray]:
    inputs = {}
    for name, shape in shapes.items():
        a = rng.standard_normal(shape)
        if name in transform:
            a = np.asarray(transform[name](a), dtype=np.float64)
            if a.shape != shape:
                raise FcgradError(f"transform[{name!r}]: expected to keep the shape {shape}, got {a.shape}")
        inputs[name] = a
    return inputs


def _pullback(forward, names: list[str]):
    """jit-compiled (inputs, residual_y) -> ∂L/∂inputs by jax.vjp: one compile per call, reused by every trial."""
    as_positional = lambda *a: forward(**dict(zip(names, a)))
    return as_positional, jax.jit(lambda args, residual_y: jax.vjp(as_positional, *args)[1](residual_y))


_NOT_TRACEABLE = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)


def _traced(what: str, fn, *args):
    """``fn(*args)``, with JAX's tracing errors turned into one line saying what the forward must do."""
    try:
        return fn(*args)
    except _NOT_TRACEABLE as e:
        raise FcgradError(
            f"forward: it must be written with jax.numpy (or the array API: xp = x.__array_namespace__()), "
            f"not NumPy or Python branches on values, since JAX traces it; {what} failed with "
            f"{type(e).__name__}"
        ) from None


def _reference(forward, pullback, inputs, rng, trial):
    """(residual_y, {input name: ∂L/∂input}) from jax.vjp of ``forward`` at ``inputs``."""
    names = list(inputs)
    with jax.enable_x64(True):
        args = [jnp.asarray(inputs[n], jnp.float64) for n in names]
        y = _traced("tracing it", jax.eval_shape, forward, *args)
        if not isinstance(y, jax.ShapeDtypeStruct):
            raise FcgradError(f"forward: expected it to return one array y, got {type(y).__name__}")
        if y.dtype != jnp.float64:
            raise FcgradError(
                f"forward: expected a float64 output (the check runs in float64 and casts nothing), got {y.dtype}"
            )
        y_value = np.asarray(_traced("running it", jax.jit(forward), *args))
        if not np.all(np.isfinite(y_value)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(y_value))[0])
            raise FcgradError(
                f"forward: its output y is not finite ({float(y_value[bad])} at index {bad}) at the random inputs "
                f"of trial {trial}: nothing can be compared there; transform={{...}} can keep inputs in its domain"
            )
        # a random, non-uniform ∂L/∂y: a backward that ignores residual_y (or uses it wrongly) cannot match
        residual_y = rng.standard_normal(y.shape)
        grads = _traced("differentiating it", pullback, args, jnp.asarray(residual_y, jnp.float64))
        return residual_y, {n: np.asarray(g, dtype=np.float64) for n, g in zip(names, grads)}


def _as_mapping(out) -> Mapping:
    if hasattr(out, "_asdict"):
        return out._asdict()
    if isinstance(out, Mapping):
        return out
    raise AssertionError(
        f"backward: expected a dict of named gradients (e.g. {{'grad_w': ...}}), got {type(out).__name__}"
    )


def _where(a, r) -> str:
    idx = worst_index(a, r)
    return f"largest difference at index {idx}: manual {float(a[idx]):.10g}, JAX {float(r[idx]):.10g}"


def _compare_one(
    gname, iname, manual_out, ref, shape, rtol, atol, trial, view: Layout | None = None
) -> tuple[GradientCheck | None, str | None]:
    """The check of one gradient in one trial, or a failure message when it cannot be compared."""
    if gname not in manual_out:
        return None, (
            f"{gname} (∂L/∂{iname}): missing from the backward's result; it returned {sorted(manual_out)}"
            " (rename the key, or pass wrt={gradient name: input name} to say which key belongs to which input)"
        )
    raw = np.asarray(manual_out[gname])
    note = ""
    if raw.dtype.kind == "f" and raw.dtype.itemsize < 8:
        rtol = max(rtol, BACKWARD_REL_TOL_F32)
        note = f"backward returned {raw.dtype}: compared at the float32 tolerance rtol {rtol:.0e}"
    a = np.asarray(raw, dtype=np.float64)
    if a.shape != shape and view is not None and iname == "b" and view.bias_shape_ok(a.shape, shape):
        a = a.reshape(shape)  # a (1, out) bias gradient for an (out,) bias, by row
    if a.shape != shape:
        return None, f"{gname} (∂L/∂{iname}): expected shape {shape} (the shape of {iname}), got {a.shape}"
    if not np.all(np.isfinite(a)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        return None, f"{gname} (∂L/∂{iname}): the manual gradient is not finite: {float(a[bad])} at index {bad}"
    max_abs, rel = errors(a, ref)
    check = GradientCheck(gname, iname, max_abs, rel, rtol, atol, bool(rel <= rtol or max_abs <= atol), trial, note)
    if check.ok:
        return check, None
    return check, f"{check}\n    {_where(a, ref)}"


def _layout_words(view: Layout) -> str:
    return "" if view.is_blog else f", {view}"


def assert_backward_matches(
    forward: Callable[..., jax.Array],
    backward: Callable[..., Mapping[str, np.ndarray]],
    shapes: Mapping[str, tuple[int, ...]],
    *,
    wrt: Mapping[str, str] | None = None,
    seed: int = 0,
    rtol: float = BACKWARD_REL_TOL,
    atol: float = BACKWARD_ABS_TOL,
    n_trials: int = BACKWARD_TRIALS,
    transform: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    upstream: str = "residual_y",
    weights: str = "in,out",
    samples: str = "columns",
) -> list[GradientCheck]:
    """Assert that ``backward`` computes the gradients JAX derives from ``forward``; name what is wrong.

    Arguments:
        forward: ``forward(**inputs) -> y``, written with jax.numpy (or the array API), traceable by JAX.
        backward: ``backward(residual_y=..., **inputs) -> {gradient name: array}`` in NumPy, each gradient
            shaped like its input; a ``residual_z`` it returns is compared too, on a row of its own.
        shapes: input name -> shape, e.g. ``{"x": (3, 5), "w": (3, 2), "b": (2, 1)}``.
        wrt: gradient name -> input name (default: ``x`` -> ``residual_x``, any ``p`` -> ``grad_p``).
        seed: trial ``k`` draws its inputs and ∂L/∂y from ``numpy.random.default_rng(seed + k)``.
        rtol, atol: a gradient passes when ``rel ≤ rtol`` or ``max|Δ| ≤ atol`` (defaults
            ``BACKWARD_REL_TOL`` 1e-10, ``BACKWARD_ABS_TOL`` 1e-11).
        n_trials: independent draws (default 3).
        transform: input name -> function applied to its N(0, 1) draw (e.g. ``np.exp`` for a positive input).
        upstream: the keyword under which ``backward`` receives ∂L/∂y (default ``"residual_y"``).
        weights: ``"in,out"`` (default: w (in, out), z = wᵀ·x + b) or ``"out,in"`` (w (out, in), z = w·x + b).
        samples: ``"columns"`` (default: x (in, N), b (out, 1)) or ``"rows"`` (x (N, in), b (out,)).

    Returns one ``GradientCheck`` per gradient named by ``wrt`` (the worst trial's); raises
    ``AssertionError`` listing every gradient that does not match, each with the catalogue's name
    for it when it has one, then the line of ``backward`` where it went wrong when a trace finds it,
    and ``FcgradError`` (one line) for a call it cannot run.

    Example, a PyTorch-shaped layer (x (N, in), w (out, in), y = tanh(x·wᵀ + b))::

        def forward(x, w, b):
            return jnp.tanh(x @ w.T + b)

        def backward(residual_y, x, w, b):
            residual_z = residual_y * (1 - np.tanh(x @ w.T + b) ** 2)  # (N, out)
            return {"residual_x": residual_z @ w, "grad_w": residual_z.T @ x, "grad_b": residual_z.sum(axis=0)}

        assert_backward_matches(forward, backward, {"x": (8, 3), "w": (2, 3), "b": (2,)},
                                weights="out,in", samples="rows")
    """
    view = layout(weights, samples)
    rtol, atol = _check_tolerance("rtol", rtol), _check_tolerance("atol", atol)
    shapes, wrt = _check_call(shapes, wrt, transform, upstream, n_trials)
    _check_layout(shapes, view)
    _check_signature("forward", forward, list(shapes), "")
    hint = "; if its ∂L/∂y argument has another name, pass upstream='that name'"
    _check_signature("backward", backward, [upstream, *shapes], hint)
    positional_forward, pullback = _pullback(forward, list(shapes))
    wide = None  # compiled on first need: a returned residual_z, or a failure to name
    worst: dict[str, GradientCheck] = {}
    for trial in range(n_trials):
        rng = np.random.default_rng(seed + trial)
        inputs = _draw_inputs(shapes, transform or {}, rng)
        residual_y, ref = _reference(positional_forward, pullback, inputs, rng, trial)
        for iname in dict.fromkeys(wrt.values()):
            if not np.all(np.isfinite(ref[iname])):
                raise FcgradError(
                    f"JAX's gradient for {iname!r} is not finite at the random inputs of trial {trial} (seed "
                    f"{seed + trial}): is the forward defined there? transform={{...}} can keep inputs in its domain"
                )
        copies = {n: a.copy() for n, a in inputs.items()}
        manual_out = _as_mapping(backward(**{upstream: residual_y.copy()}, **copies))
        rows: dict[str, tuple[GradientCheck | None, str | None, str, np.ndarray]] = {}
        for gname, iname in wrt.items():
            check, message = _compare_one(gname, iname, manual_out, ref[iname], shapes[iname], rtol, atol, trial, view)
            rows[gname] = (check, message, iname, ref[iname])
            if check is not None and (gname not in worst or not check.rel_err <= worst[gname].rel_err):
                worst[gname] = check
        jax_side = {"grad_w": ref.get("w")}
        if "residual_z" in manual_out and "residual_z" not in wrt or any(m for _, m, _, _ in rows.values()):
            if wide is None:
                wide = layer_checks.wide_bias_pullback(forward, [k for k in shapes if k != "b"])
            got = layer_checks.residual_z_reference(wide, inputs, residual_y, view)
            if got is not None:
                jax_side.update(y=got[0], residual_z=got[1])
                if "residual_z" in manual_out and "residual_z" not in wrt:
                    z_shape = got[1].shape
                    check, message = _compare_one("residual_z", "z", manual_out, got[1], z_shape, rtol, atol, trial)
                    rows["residual_z"] = (check, message, "z", got[1])
        failures = {g: row for g, row in rows.items() if row[1] is not None}
        if failures:
            where = (inputs, residual_y, view, jax_side)
            again = (backward, upstream, {g: (i, ref[i]) for g, i in wrt.items()})
            trial_words = f"trial {trial}, seed {seed + trial}"
            raise AssertionError(_failure(failures, manual_out, where, trial_words, shapes, again))
    return [worst[g] for g in wrt]


def _failure(failures, manual_out, where, trial: str, shapes, again) -> str:
    """The failure message: every failing row, each with the catalogue's name, the suspect line, then the
    lines of the backward where it went wrong (``fcgrad/testing/backward_trace.py``)."""
    inputs, residual_y, view, jax_side = where
    context = layer_checks.layer_context(inputs, residual_y, view, jax_side)
    lines, named, diagnoses = [], {}, {}
    for gname, (_, message, iname, ref) in failures.items():
        found = layer_checks.diagnoses_of(gname, iname, manual_out[gname], ref, context) if gname in manual_out else []
        diagnoses[gname], named[gname] = tuple(found), [d.message for d in found]
        lines.append(message + "".join(f"\n    {n}" for n in named[gname][:1]))
    suspect = layer_checks.suspect_line(dict.fromkeys(failures, True), named, "residual_z" in manual_out)
    if suspect:
        lines.append(suspect)
    lines += _lines_traced(again, where, context, failures, manual_out, diagnoses)
    return (
        f"backward does not match JAX autodiff of forward ({trial}, float64{_layout_words(view)}, inputs {shapes}):"
        "\n  " + "\n  ".join(lines)
    )


def _lines_traced(again, where, context, failures, manual_out, diagnoses) -> list[str]:
    """The backward run once more under the recorder: the lines where the failing gradients went wrong."""
    backward, upstream, gradients = again
    inputs, residual_y, _, jax_side = where
    if jax_side.get("residual_z") is not None:
        gradients = {**gradients, "residual_z": ("z", jax_side["residual_z"])}
    known = backward_trace.layer_known(inputs, upstream, residual_y, gradients, context, jax_side)
    names = {g: (failures[g][2], failures[g][3]) for g in failures}
    if "residual_z" in gradients:
        names.setdefault("residual_z", gradients["residual_z"])
    namer = backward_trace.layer_namer(names, context)
    kwargs = {upstream: residual_y, **inputs}
    failing = [g for g in failures if g in manual_out]
    return backward_trace.lines_of_failure(backward, kwargs, manual_out, failing, known, namer, diagnoses)


def _check_layout(shapes: dict, view: Layout) -> None:
    """x, w and b of a layer must chain in the declared layout; a one-line hint when another layout fits."""
    if not {"x", "w", "b"} <= set(shapes):
        return
    fits = [v for v in _LAYOUTS if _chains(shapes, v)]
    if fits and view not in fits:
        other = fits[0]
        raise FcgradError(
            f"shapes: x {shapes['x']}, w {shapes['w']} and b {shapes['b']} do not make a layer with {view}; they do "
            f"with {other}: pass weights={other.weights!r}, samples={other.samples!r}"
        )


def _chains(shapes: dict, view: Layout) -> bool:
    x, w, b = (shapes[k] for k in ("x", "w", "b"))
    if len(x) != 2 or len(w) != 2:
        return False
    n_in = x[1] if view.rows else x[0]
    w_in, w_out = (w[0], w[1]) if view.weights == "in,out" else (w[1], w[0])
    bias = {(w_out,), (1, w_out)} if view.rows else {(w_out, 1)}
    return n_in == w_in and tuple(b) in bias


_LAYOUTS = [Layout(w, s) for w in ("in,out", "out,in") for s in ("columns", "rows")]
