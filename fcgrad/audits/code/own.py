"""An activation only the file computes: its own function, differentiated by JAX, or by finite differences.

The library's activations are tried first. Where none of them reproduces what a layer computes after
``z = wᵀx + b``, the file's own elementwise functions are (its module-level functions of one array, and
those of the modules beside it that it imports; a layered class's activation object, its ``forward``).
The one that reproduces the layer's output is the truth for that layer, by construction: it joins the
library's activations for the length of the audit, under its own name, so that manual's forward and
backward and JAX's model both run it.

Its derivative comes from one of the two oracles the rest of fcgrad trusts:

- **JAX** where the function can be traced: its module's ``np`` pointed at ``jax.numpy`` (NumPy for what
  ``jax.numpy`` lacks), its values checked against the file's own to ``TRACED_REL_TOL``; JAX's model then
  runs the traced function, and ``f'(z)`` is its forward-mode derivative;
- **central finite differences** of the file's own function in float64 where it cannot (an in-place write,
  a value in Python control flow): ``f'(z)`` per entry, Richardson-extrapolated, its step shrunk where a
  kink lies within it; JAX's model calls the file's function back, with that derivative.
"""

import ast
import contextlib
import inspect
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.engine.user_code import definition
from fcgrad.manual.activations import ACTIVATIONS, Activation
from fcgrad.manual.losses import LOSSES, Loss
from fcgrad.reference import model as reference_model

LIBRARY = tuple(ACTIVATIONS)  # the library's own, tried before any of the file's
LIBRARY_LOSSES = tuple(LOSSES)

# The traced function's values against the file's: the same formula in jax.numpy rounds differently by a few
# ulps (measured ≤ 2e-16 on the fixtures); 1e-12 lets those through and no other formula.
TRACED_REL_TOL = 1e-12
# Finite differences of an elementwise f in float64: central differences at h and h/2 combined (Richardson),
# error O(h⁴·f⁽⁵⁾) + O(ε/h). With h = 1e-3·max(1, |z|) both are below 1e-12 for the smooth activations
# (measured ≤ 3e-13 against the exact slopes of tanh, softplus, ELU away from 0); a kink within the step
# (ReLU-like at 0) makes the estimates at h and at h/7 disagree, and the step there is shrunk tenfold, at most
# FD_SHRINKS times (a z within 1e-9 of a kink keeps a one-sided-looking slope, as everywhere in fcgrad).
FD_STEP = 1e-3
FD_AGREE_REL = 1e-9  # the two step sizes' estimates agree to this where no kink lies within them
FD_SHRINKS = 6
PROBE_SHAPE = (3, 5)  # the array a candidate is tried on before it may join: an activation keeps its shape


class _JaxNumpy(types.ModuleType):
    """The file's ``np`` while JAX traces its function: jax.numpy, and NumPy for what jax.numpy lacks."""

    def __getattr__(self, name):
        return getattr(jnp, name) if hasattr(jnp, name) else getattr(np, name)


_JNP = _JaxNumpy("numpy")


def _traced_globals(g: dict, memo: dict) -> dict:
    """A copy of a module's globals with NumPy replaced by ``_JNP``, and its own functions rebuilt on the copy."""
    if id(g) in memo:
        return memo[id(g)]
    out = dict(g)
    memo[id(g)] = out
    for k, v in g.items():
        if v is np:
            out[k] = _JNP
        elif isinstance(v, types.FunctionType) and _is_users(v):
            out[k] = _rebuilt(v, memo)
        elif isinstance(v, types.ModuleType) and _is_users(v):
            sibling = types.ModuleType(v.__name__)
            sibling.__dict__.update(_traced_globals(vars(v), memo))
            out[k] = sibling
    return out


def _rebuilt(fn: types.FunctionType, memo: dict) -> types.FunctionType:
    g = _traced_globals(fn.__globals__, memo)
    made = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    made.__kwdefaults__ = fn.__kwdefaults__
    return made


def traced(fn):
    """``fn`` (a function or bound method of the user's, or an ``Applied``) with its NumPy calls going to
    jax.numpy."""
    if isinstance(fn, Applied):
        return fn.traced()
    if inspect.ismethod(fn):
        return types.MethodType(_rebuilt(fn.__func__, {}), fn.__self__)
    return _rebuilt(fn, {})


def _first(y):
    """An activation's value where a helper returns it with its cache, ``(A, cache)``: the array."""
    return y[0] if isinstance(y, tuple | list) and y and hasattr(y[0], "shape") else y


class Applied:
    """A function of the file's, or a layer object's ``forward``, as an activation ``z -> y``: its value, the first
    of a tuple it returns (``(A, cache)``), or what the object stores in ``output`` when it returns nothing
    (``forward(inputs, training)`` setting ``self.output``); ``extra``: the arguments after z (a training flag)."""

    def __init__(self, fn, extra: tuple = (), name: str | None = None):
        self.fn, self.extra = fn, extra
        self.__name__ = name or getattr(fn, "__name__", "activation")

    def _run(self, fn, z):
        out = _first(fn(z, *self.extra))
        owner = getattr(fn, "__self__", None)
        return getattr(owner, "output", None) if out is None and owner is not None else out

    def __call__(self, z):
        return self._run(self.fn, z)

    def traced(self):
        fn = traced(self.fn)
        return lambda z: self._run(fn, z)


_USER_FOLDERS: list[Path] = []


def _is_users(obj) -> bool:
    if isinstance(obj, type):  # a class of a module run from a file: known by its functions' code
        codes = [getattr(v, "__code__", None) for v in vars(obj).values()]
        files = {c.co_filename for c in codes if c is not None}
        return any(Path(f).resolve().parent in _USER_FOLDERS for f in files)
    try:
        file = inspect.getsourcefile(obj) if not isinstance(obj, types.ModuleType) else getattr(obj, "__file__", None)
    except TypeError:
        return False
    return bool(file) and Path(file).resolve().parent in _USER_FOLDERS


def fd_slope(f, z: np.ndarray) -> np.ndarray:
    """f'(z) entry by entry for an elementwise ``f`` (NumPy in, NumPy out), by central differences in float64."""
    z = np.asarray(z, np.float64)

    def central(h):
        return (np.asarray(f(z + h), np.float64) - np.asarray(f(z - h), np.float64)) / (2 * h)

    def richardson(h):
        return (4 * central(h / 2) - central(h)) / 3

    h = FD_STEP * np.maximum(1.0, np.abs(z))
    slope = richardson(h)
    for _ in range(FD_SHRINKS):
        other = richardson(h / 7)
        off = np.abs(slope - other) > FD_AGREE_REL * np.maximum(1.0, np.abs(slope))
        if not off.any():
            break
        h = np.where(off, h / 10, h)
        slope = np.where(off, richardson(h), slope)
    return slope


@dataclass(frozen=True)
class Own:
    """One of the file's functions, joined to the library's activations as ``name``."""

    name: str
    where: str  # file:line of its definition
    how: str  # "JAX" or "finite differences": what gives its derivative

    @property
    def note(self) -> str:
        file, _, line = self.where.rpartition(":")
        where = f"{Path(file).name}:{line}" if file else self.where
        return f"{self.name}: the file's own function ({where}), its derivative by {self.how}"


def _as_array(fn, z) -> np.ndarray | None:
    try:
        with np.errstate(all="ignore"):
            y = fn(np.array(z))
    except Exception:  # noqa: BLE001 - a function that cannot take an array is no activation
        return None
    y = np.asarray(y) if isinstance(y, np.ndarray | np.generic) else None
    return y.astype(np.float64) if y is not None and y.shape == np.shape(z) and y.dtype.kind == "f" else None


def elementwise(fn) -> bool:
    """``fn`` takes an array to one of its shape, entry by entry (a softmax or a normalisation does not)."""
    z = np.random.default_rng(7).standard_normal(PROBE_SHAPE) * 2
    y = _as_array(fn, z)
    if y is None or not np.all(np.isfinite(y)):
        return False
    part = _as_array(fn, z[:1, :2].copy())
    flipped = _as_array(fn, np.ascontiguousarray(z.T))
    tol = 1e-15 * max(1.0, float(np.max(np.abs(y))))
    return (
        part is not None
        and flipped is not None
        and float(np.max(np.abs(part - y[:1, :2]))) <= tol
        and float(np.max(np.abs(flipped.T - y))) <= tol
    )


class OwnFunctions:
    """The file's candidate functions, joined to the registries when first asked for, taken out at the end."""

    def __init__(self, functions, losses: list[tuple[str, object, str]] = ()):
        self._candidates = functions  # [(name, fn, where)], or a function that lists them
        self._joined: list[Own] | None = None
        self._loss_candidates = list(losses)  # (name, fn, where): fn(y, t) or fn(t, y), the file's layout
        self.losses: list[Own] = []  # the file's own losses joined to the library's
        self.layout = None  # the file's layout, once known: a loss of its own takes its arrays as it holds them

    def offer_loss(self, name: str, fn, where: str) -> None:
        """One more candidate loss (the net's loss object's forward), tried before the module's functions."""
        self._loss_candidates.insert(0, (name, fn, where))

    def loss(self, value: float, y: np.ndarray, t: np.ndarray) -> str | None:
        """The name of the file's own loss whose value at (y, t) (blog layout) is ``value``, joined; or None."""
        for o in self.losses:
            with np.errstate(all="ignore"):
                if _same(float(LOSSES[o.name].forward(y, t)), value):
                    return o.name
        if self.layout is None:
            return None
        for name, fn, where in self._loss_candidates:
            joined = _join_loss(name, fn, where, self.layout, value, y, t)
            if joined is not None:
                self.losses.append(joined)
                return joined.name
        return None

    def names(self) -> tuple[str, ...]:
        if self._joined is None:
            if callable(self._candidates):  # read when first needed: the layer classes are made to be tried
                self._candidates = self._candidates()
            self._joined = [own for c in self._candidates if (own := _join(*c)) is not None]
        return tuple(o.name for o in self._joined)

    def notes(self, used) -> list[str]:
        return [o.note for o in [*(self._joined or ()), *self.losses] if o.name in used]

    def add(self, name: str, fn, where: str) -> str | None:
        """One more candidate (a layer's activation object), joined at once; its name, or None."""
        self.names()
        own = _join(name, fn, where)
        if own is not None:
            self._joined.append(own)
        return None if own is None else own.name

    def leave(self) -> None:
        for o in self._joined or ():
            ACTIVATIONS.pop(o.name, None)
            reference_model.ACTIVATIONS.pop(o.name, None)
        for o in self.losses:
            LOSSES.pop(o.name, None)
            reference_model.LOSSES.pop(o.name, None)
        if self._joined or self.losses:
            jax.clear_caches()  # compiled models keyed by these names must not outlive them


_CURRENT: list[OwnFunctions] = []


def _unique(name: str) -> str:
    if name not in ACTIVATIONS:
        return name
    k = 2
    while f"{name} ({k})" in ACTIVATIONS:
        k += 1
    return f"{name} ({k})" if name not in LIBRARY else f"{name} (the file's)"


def _join(name: str, fn, where: str) -> Own | None:
    """``fn`` joined to the library's activations when it is elementwise and no library activation already."""
    if not elementwise(fn):
        return None
    z = np.random.default_rng(11).standard_normal(PROBE_SHAPE) * 3
    y = _as_array(fn, z)
    for lib in LIBRARY:
        with np.errstate(all="ignore"):
            if np.allclose(ACTIVATIONS[lib].forward(z), y, rtol=TRACED_REL_TOL, atol=TRACED_REL_TOL):
                return None  # the library's own under another name: the library's is the one used
    name = _unique(name)
    fn_jax = _traceable(fn, z, y)

    def forward(z):
        with np.errstate(all="ignore"):
            return np.asarray(fn(np.array(z, np.float64)), np.float64)

    if fn_jax is not None:
        slope_of = jax.jit(lambda z: jax.jvp(fn_jax, (z,), (jnp.ones_like(z),))[1])

        def slope(z):
            with jax.enable_x64(True):
                return np.asarray(slope_of(jnp.asarray(z, jnp.float64)), np.float64)

        ACTIVATIONS[name] = Activation(name, forward, lambda residual_y, z, y: residual_y * slope(z))
        reference_model.ACTIVATIONS[name] = fn_jax
        return Own(name, where, "JAX")

    def slope_np(z):
        return fd_slope(forward, z)

    ACTIVATIONS[name] = Activation(name, forward, lambda residual_y, z, y: residual_y * slope_np(z))
    reference_model.ACTIVATIONS[name] = _called_back(forward, slope_np)
    return Own(name, where, "finite differences")


def _traceable(fn, z: np.ndarray, y: np.ndarray):
    """The traced ``fn`` when JAX can run it and it computes the file's values; None otherwise."""
    try:
        fn_jax = traced(fn)
        with jax.enable_x64(True), np.errstate(all="ignore"):
            got = np.asarray(jax.jit(fn_jax)(jnp.asarray(z, jnp.float64)), np.float64)
    except Exception:  # noqa: BLE001 - in-place writes, values in control flow: finite differences instead
        return None
    scale = max(1.0, float(np.max(np.abs(y))))
    if got.shape != y.shape or float(np.max(np.abs(got - y))) > TRACED_REL_TOL * scale:
        return None
    return fn_jax


def _called_back(forward, slope):
    """A JAX function that calls the file's NumPy function back, its derivative the finite differences'."""

    def host(f):
        return lambda z: np.asarray(f(np.asarray(z)), np.asarray(z).dtype)

    @jax.custom_jvp
    def f(z):
        return jax.pure_callback(host(forward), jax.ShapeDtypeStruct(z.shape, z.dtype), z)

    @f.defjvp
    def f_jvp(primals, tangents):
        (z,), (dz,) = primals, tangents
        s = jax.pure_callback(host(slope), jax.ShapeDtypeStruct(z.shape, z.dtype), z)
        return f(z), s * dz

    return f


# ---- losses ----

LOSS_MATCH_REL = 1e-9  # the file's loss value against its own function's: the same formula, rounded alike or nearly


def _same(a: float, b: float) -> bool:
    return np.isfinite(a) and abs(a - b) <= LOSS_MATCH_REL * max(1.0, abs(b))


def _scalar(v) -> float | None:
    try:
        a = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        return None
    return float(a) if a.size == 1 else None


def _join_loss(name: str, fn, where: str, layout, value: float, y: np.ndarray, t: np.ndarray) -> Own | None:
    """``fn`` joined to the library's losses where, handed the file's (y, t) in one order or the other, it computes
    ``value``; its gradient by JAX on its traced code, or by central differences over each entry of y."""
    rows = layout.rows

    def user(a):  # the blog's (out, N) as the file holds it
        return a.T if rows else a

    for swap in (False, True):
        def call(yb, tb, f=fn, swap=swap):
            args = (user(tb), user(yb)) if swap else (user(yb), user(tb))
            return f(*[np.array(a, np.float64) for a in args])

        try:
            with np.errstate(all="ignore"):
                got = _scalar(call(y, t))
        except Exception:  # noqa: BLE001 - a function of two arrays that is no loss of these
            continue
        if got is None or not _same(got, value):
            continue
        name = name if name not in LOSSES else f"{name} (the file's)"

        def forward(yb, tb, call=call):
            with np.errstate(all="ignore"):
                return np.float64(_scalar(call(yb, tb)))

        fn_jax = _traceable_loss(fn, swap, rows, y, t, got)
        if fn_jax is not None:
            grad_of = jax.jit(jax.grad(fn_jax))

            def backward(yb, tb, grad_of=grad_of):
                with jax.enable_x64(True):
                    return np.asarray(grad_of(jnp.asarray(yb, jnp.float64), jnp.asarray(tb, jnp.float64)), np.float64)

            LOSSES[name] = Loss(name, forward, backward)
            reference_model.LOSSES[name] = fn_jax
            return Own(name, where, "JAX")

        def backward_fd(yb, tb, forward=forward):
            return fd_gradient(lambda v: float(forward(v, tb)), np.asarray(yb, np.float64))

        LOSSES[name] = Loss(name, forward, backward_fd)
        reference_model.LOSSES[name] = _loss_called_back(forward, backward_fd)
        return Own(name, where, "finite differences")
    return None


def _traceable_loss(fn, swap: bool, rows: bool, y, t, value: float):
    try:
        traced_fn = traced(fn)

        def fn_jax(yb, tb):
            a, b = (yb.T, tb.T) if rows else (yb, tb)
            return jnp.reshape(traced_fn(*((b, a) if swap else (a, b))), ())

        with jax.enable_x64(True), np.errstate(all="ignore"):
            got = float(jax.jit(fn_jax)(jnp.asarray(y, jnp.float64), jnp.asarray(t, jnp.float64)))
            jax.grad(fn_jax)(jnp.asarray(y, jnp.float64), jnp.asarray(t, jnp.float64))
    except Exception:  # noqa: BLE001 - in-place writes, values in control flow: finite differences instead
        return None
    return fn_jax if _same(got, value) and abs(got - value) <= TRACED_REL_TOL * max(1.0, abs(value)) else None


def fd_gradient(f, y: np.ndarray) -> np.ndarray:
    """∂f/∂y entry by entry for a scalar ``f`` of an array, by the same central differences as ``fd_slope``."""
    out = np.empty_like(y)
    for idx in np.ndindex(*y.shape):
        def along(v, idx=idx):
            moved = y.copy()
            moved[idx] = v
            return f(moved)

        out[idx] = fd_slope(along, np.asarray(y[idx]))  # one entry moved: a 0-d z
    return out


def _loss_called_back(forward, gradient):
    """A JAX loss that calls the file's back, its gradient in y the finite differences' (none in the targets)."""

    def host(f, shape):
        return lambda yb, tb: np.asarray(f(np.asarray(yb), np.asarray(tb)), np.float64).reshape(shape)

    @jax.custom_jvp
    def f(y, t):
        return jax.pure_callback(host(forward, ()), jax.ShapeDtypeStruct((), y.dtype), y, t)

    @f.defjvp
    def f_jvp(primals, tangents):
        (y, t), (dy, _) = primals, tangents
        g = jax.pure_callback(host(gradient, y.shape), jax.ShapeDtypeStruct(y.shape, y.dtype), y, t)
        return f(y, t), jnp.sum(g * dy)

    return f


def own_loss(value: float, y, t) -> str | None:
    """The file's own loss with ``value`` at (y, t) (blog layout), joined for the audit; None outside one."""
    current_ = current()
    return current_.loss(value, np.asarray(y, np.float64), np.asarray(t, np.float64)) if current_ else None


def _where(fn) -> str:
    """``path:line`` of the file's definition of ``fn`` (a layer object's: its class's ``forward``)."""
    fn = fn.fn if isinstance(fn, Applied) else fn
    return definition(getattr(fn, "__func__", fn)) or getattr(fn, "__qualname__", "?")


# What an activation's or a loss's body never does; a function that does is not called to be tried (the probe
# must not train, print, plot, read or write files of the user's).
NOT_PLAIN_NODES = (ast.For, ast.While, ast.AsyncFor, ast.With, ast.AsyncWith, ast.Import, ast.ImportFrom, ast.Global)
NOT_PLAIN_CALLS = {"print", "open", "input", "exec", "eval", "save", "savez", "load", "loadtxt", "savetxt", "show",
                   "plot", "figure", "savefig", "dump", "write", "system", "sleep", "fit", "train"}  # fmt: skip


def plain(fn) -> bool:
    """Whether ``fn``'s own body is a plain formula: no loop, no ``with``, no import, no call that reads, writes,
    prints, plots or trains; a function whose source cannot be read is not."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, NOT_PLAIN_NODES):
            return False
        if isinstance(node, ast.Call):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if called in NOT_PLAIN_CALLS:
                return False
    return True


def module_functions(module, arity: int = 1) -> list[tuple[str, object, str]]:
    """The module's functions of ``arity`` array arguments (1: activations, 2: losses of (y, t) in either order),
    and those of the user's modules it imports."""
    seen, out = set(), []
    values = list(vars(module).values())
    values += [f for m in values if isinstance(m, types.ModuleType) and _is_users(m) for f in vars(m).values()]
    for v in values:
        if not isinstance(v, types.FunctionType) or id(v) in seen or not _is_users(v):
            continue
        seen.add(id(v))
        try:
            params = inspect.signature(v).parameters.values()
        except (TypeError, ValueError):
            continue
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        required = [q for q in params if q.default is q.empty and q.kind in positional]
        if len(required) == arity and plain(v):
            out.append((v.__name__, Applied(v) if arity == 1 else v, _where(v)))
    return out + (_layer_objects(module) if arity == 1 else [])


def _layer_objects(module) -> list[tuple[str, object, str]]:
    """The file's classes with a ``forward(inputs[, training])`` that can be made with no argument (an activation
    layer's class): each as an activation, its ``forward`` on an instance of its own."""
    out = []
    for v in list(vars(module).values()):
        if not isinstance(v, type) or not _is_users(v) or not callable(getattr(v, "forward", None)):
            continue
        if not plain(v.forward) or ("__init__" in vars(v) and not plain(v.__init__)):
            continue
        try:
            params = list(inspect.signature(v.forward).parameters.values())[1:]
            positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            required = [q for q in params if q.default is q.empty and q.kind in positional]
            if len(required) not in (1, 2):
                continue
            instance = v()
        except Exception:  # noqa: BLE001 - a class that needs its sizes, or whose forward cannot be read, is no activation
            continue
        extra = (True,) if len(required) == 2 else ()  # the training flag, where forward takes one
        out.append((v.__name__, Applied(instance.forward, extra, v.__name__), _where(v.forward)))
    return out


@contextlib.contextmanager
def offered(module, path: str):
    """The file's functions offered as activations for the length of an audit."""
    folder = Path(path).resolve().parent
    _USER_FOLDERS.append(folder)
    own = OwnFunctions(lambda: module_functions(module), module_functions(module, 2))
    _CURRENT.append(own)
    try:
        yield own
    finally:
        _CURRENT.remove(own)
        own.leave()
        _USER_FOLDERS.remove(folder)


def current() -> OwnFunctions | None:
    return _CURRENT[-1] if _CURRENT else None


def own_names() -> tuple[str, ...]:
    """The file's functions that joined as activations (joining them on first call); () outside an audit."""
    own = current()
    return own.names() if own is not None else ()
