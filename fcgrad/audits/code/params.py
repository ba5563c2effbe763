"""Where a user's network object keeps its parameters and learning rate, and how to build it.

Parameters are found, in this order:
- modules with a weight (``w``, ``W``, ``weight`` or ``weights``) and a bias (``b``, ``bias`` or ``biases``)
  array: the list ``net.layers`` (or ``modules``, ``sequence``), else the net's attributes in the order
  ``__init__`` set them;
- the lists ``net.weights`` and ``net.biases`` (the textbook's form; or ``net.W`` and ``net.b``);
- a dict attribute (``net.params``, ``net.parameters``, ...) with ``W1``, ``b1``, ``W2``, ... (the courses' form);
- the net's own attributes ``W1``, ``b1``, ``W2``, ...

The learning rate is an argument named ``lr``, ``learning_rate``, ``eta`` or ``alpha`` where a method takes
one, else an attribute of one of those names on the layers or the net, which the audit sets.
"""

import inspect
import re
from dataclasses import dataclass

import numpy as np

from fcgrad.audits.code.layout import Layout, kind_of
from fcgrad.engine.user_code import call, definition
from fcgrad.manual.errors import FcgradError

WEIGHT_NAMES = ("w", "W", "weight", "weights")
BIAS_NAMES = ("b", "bias", "biases")
LR_NAMES = ("lr", "learning_rate", "eta", "alpha")
MODULE_LISTS = ("layers", "modules", "sequence")
LIST_PAIRS = (("weights", "biases"), ("W", "b"), ("w", "b"), ("Ws", "bs"))  # lists of w and b, one per layer
SIZES_NAMES = ("sizes", "layer_sizes", "layers", "dims", "layer_dims", "layers_dims", "layer_dimensions", "shape")
INPUT_NAMES = ("input_size", "input_dim", "n_in", "in_features", "n_input", "input_num", "n_inputs", "num_inputs")
HIDDEN_NAMES = ("hidden_size", "hidden_dim", "n_hidden", "hidden_num", "num_hidden", "hidden", "nn_hdim", "hdim")
# A regularisation strength the audit sets to 0 (the library's losses carry none), said in the report's notes.
REG_NAMES = (
    "lmbda", "lmbd", "lambd", "lam", "lambda_", "reg", "reg_lambda", "reg_strength", "l2", "l2_reg", "alpha_l2",
    "weight_decay",
)  # fmt: skip
QUIET_NAMES = ("verbose", "print_cost", "print_loss", "show")  # a training call's printing, turned off
OUTPUT_NAMES = (
    "output_size",
    "output_dim",
    "n_out",
    "out_features",
    "n_output",
    "out_num",
    "n_outputs",
    "num_outputs",
    "num_classes",
)
# Two learning rates typed as the same decimal agree to the last bit; 1e-12 relative only tells a number the user
# chose apart from the problem's without calling a rounding a difference.
LR_SAME_REL = 1e-12
NUMBERED = re.compile(r"^([Wwb])(\d+)$")  # the courses' W1, b1, ...


@dataclass
class Slot:
    """One parameter array of the user's, reached from ``root`` by ``path`` afresh each time (a step may
    rebind ``net.weights`` to a new list): each step an attribute name (str) or an item ([key])."""

    root: object
    path: tuple
    words: str  # how the user names it: "net.layers[0].W", "net.params['W1']"

    def _holder(self):
        obj = self.root
        for step in self.path[:-1]:
            obj = obj[step[0]] if isinstance(step, list) else getattr(obj, step)
        return obj

    def get(self) -> np.ndarray:
        holder, last = self._holder(), self.path[-1]
        value = holder[last[0]] if isinstance(last, list) else getattr(holder, last)
        return np.array(value, dtype=np.float64)  # a copy: the user's code may update its array in place

    def set(self, value: np.ndarray) -> None:
        holder, last = self._holder(), self.path[-1]
        if isinstance(last, list):
            holder[last[0]] = value
        else:
            setattr(holder, last, value)


def _array_attr(obj, names) -> str | None:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, np.ndarray) and value.ndim in (1, 2) and value.dtype.kind == "f":
            return name
    return None


def has_params(obj) -> bool:
    return _array_attr(obj, WEIGHT_NAMES) is not None and _array_attr(obj, BIAS_NAMES) is not None


def is_module(obj) -> bool:
    """Something with ``forward(x)`` and ``backward(residual)``: a layer, an activation, or a loss (two inputs)."""
    return callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None))


def required(fn) -> list[str]:
    """The names of the parameters ``fn`` needs (no default, not *args or **kwargs)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in sig.parameters.values() if p.kind in kinds and p.default is inspect.Parameter.empty]


def parameters(fn) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def module_list(net) -> tuple[list, str]:
    """The net's modules in forward order, and how the user names them."""
    for name in MODULE_LISTS:
        value = getattr(net, name, None)
        if isinstance(value, (list, tuple)) and value and all(is_module(m) or has_params(m) for m in value):
            return list(value), f"net.{name}"
    found = [(k, v) for k, v in vars(net).items() if (is_module(v) or has_params(v)) and not isinstance(v, type)]
    return [v for _, v in found], "net." + "/".join(k for k, _ in found)


def layer_slots(obj, words: str) -> dict[str, Slot]:
    w, b = _array_attr(obj, WEIGHT_NAMES), _array_attr(obj, BIAS_NAMES)
    return {"w": Slot(obj, (w,), f"{words}.{w}"), "b": Slot(obj, (b,), f"{words}.{b}")}


def find_slots(net) -> tuple[list[dict[str, Slot]], str] | None:
    """Each layer's ``{"w": Slot, "b": Slot}`` in forward order, and the form found; None when none is."""
    modules, words = module_list(net)
    with_params = [(i, m) for i, m in enumerate(modules) if has_params(m)]
    if with_params:
        return [layer_slots(m, f"{words.split('/')[0]}[{i}]") for i, m in with_params], "layers with w and b"
    for wn, bn in LIST_PAIRS:
        ws, bs = getattr(net, wn, None), getattr(net, bn, None)
        if isinstance(ws, list) and isinstance(bs, list) and ws and len(ws) == len(bs):
            slots = [
                {"w": Slot(net, (wn, [i]), f"net.{wn}[{i}]"), "b": Slot(net, (bn, [i]), f"net.{bn}[{i}]")}
                for i in range(len(ws))
            ]
            return slots, f"lists net.{wn} and net.{bn}"
    for name, value in vars(net).items():
        if isinstance(value, dict):
            slots = _numbered(value, net, (name,), lambda k, name=name: f"net.{name}[{k!r}]")
            if slots:
                return slots, f"a dict net.{name} of W1, b1, ..."
    slots = _numbered(vars(net), net, (), lambda k: f"net.{k}")
    if slots:
        return slots, "attributes W1, b1, ... of the net"
    slots = _zero_biases(net)
    return (slots, "attributes W, w0, V, v0, ... of the net (each weight's bias its name and 0)") if slots else None


def _zero_biases(net) -> list[dict[str, Slot]] | None:
    """Weights held as the net's own attributes, each with its bias named after it with a 0 (``W`` and ``w0``),
    in the order the net set them."""
    out = []
    for key, value in vars(net).items():
        bias = next((k for k in (f"{key}0", f"{key.lower()}0") if k in vars(net)), None)
        if _float_array(value, 2) and bias is not None and _float_array(vars(net)[bias], 1, 2):
            out.append({"w": Slot(net, (key,), f"net.{key}"), "b": Slot(net, (bias,), f"net.{bias}")})
    return out or None


def _float_array(value, *ndims) -> bool:
    return isinstance(value, np.ndarray) and value.ndim in ndims and value.dtype.kind == "f"


def _numbered(mapping: dict, root, prefix: tuple, words) -> list[dict[str, Slot]] | None:
    found: dict[int, dict[str, str]] = {}
    for key, value in mapping.items():
        m = NUMBERED.match(key) if isinstance(key, str) else None
        if m and isinstance(value, np.ndarray):
            found.setdefault(int(m.group(2)), {})["b" if m.group(1) == "b" else "w"] = key
    numbers = sorted(found)
    if not numbers or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return None
    if any(set(found[k]) != {"w", "b"} for k in numbers):
        return None

    def slot(key):  # an item of the dict net.<prefix>, or an attribute of the net itself
        return Slot(root, (*prefix, [key]) if prefix else (key,), words(key))

    return [{q: slot(found[k][q]) for q in ("w", "b")} for k in numbers]


def holds_rate(obj, name: str) -> bool:
    """Whether ``obj.name`` may be a learning rate: ``alpha`` on a layer (an object with a forward) is its own
    constant, a leaky ReLU's or an ELU's slope, never the step size."""
    if name != "alpha":
        return True
    return not any(callable(getattr(obj, m, None)) for m in ("forward", "forward_propagation", "__call__"))


def lr_attributes(*objects) -> list[tuple[object, str]]:
    """Every ``(object, attribute)`` among ``objects`` that holds a learning rate."""
    out = []
    for obj in objects:
        for name in LR_NAMES:
            value = getattr(obj, name, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and holds_rate(obj, name):
                out.append((obj, name))
    return out


def note_own_lr(notes: list[str], own, lr: float, words: str) -> None:
    """Say once that the file's own learning rate is replaced by the problem's (both sides train with one)."""
    said = f"the file's learning rate {words} = {own:g} is replaced by the problem's lr {lr:g} on both sides"
    if not notes and abs(float(own) - lr) > LR_SAME_REL * max(1.0, abs(lr)):
        notes.append(said)


def lr_argument(fn) -> str | None:
    return next((p for p in parameters(fn) if p in LR_NAMES), None)


def construct(cls, sizes: tuple[int, ...], lr: float, file: str):
    """``cls(...)`` with what its ``__init__`` needs: the layer sizes (a list, or one int per width), the lr.

    Arguments with a default keep it (the file's own network), except a learning rate. The global NumPy
    random state is left as it was.
    """
    init = cls.__init__
    needed = required(cls)
    args: dict[str, object] = {}
    rest = []
    for name in needed:
        if name in SIZES_NAMES:
            args[name] = list(sizes)
        elif name in INPUT_NAMES:
            args[name] = sizes[0]
        elif name in OUTPUT_NAMES:
            args[name] = sizes[-1]
        elif name in HIDDEN_NAMES and len(sizes) == 3:
            args[name] = sizes[1]
        elif name in LR_NAMES:
            args[name] = lr
        else:
            rest.append(name)
    positional: list = []
    if len(rest) == 1 and not args:
        positional = [list(sizes)]
    elif rest and len(rest) == len(sizes) and not args:
        positional = list(sizes)
    elif rest:
        where = definition(init) or definition(cls) or file
        raise FcgradError(
            f"{where}: {cls.__name__}() needs {', '.join(needed)}; expected no argument, the layer sizes (one list, "
            f"or one int per width: {', '.join(map(str, sizes))}) or names such as sizes, input_size, lr"
        )
    state = np.random.get_state()
    try:
        return call(
            f"{cls.__name__}({', '.join([*map(repr, positional), *(f'{k}={v!r}' for k, v in args.items())])})",
            cls,
            *positional,
            filename=file,
            **args,
        )
    finally:
        np.random.set_state(state)


def _chain(shapes, flip: bool) -> tuple[int, ...] | None:
    """The widths when every w reads as (in, out) (``flip``: as (out, in)) and consecutive layers join."""
    sizes: list[int] = []
    for w_shape, b_shape in shapes:
        if len(w_shape) != 2:
            return None
        n_in, n_out = (w_shape[1], w_shape[0]) if flip else w_shape
        if (sizes and sizes[-1] != n_in) or int(np.prod(b_shape)) != n_out:
            return None
        sizes = sizes or [n_in]
        sizes.append(n_out)
    return tuple(sizes)


class OtherLayoutError(FcgradError):
    """The parameters join only in ``layout``, not the one assumed: taken where the file declares none."""

    def __init__(self, layout, why: str):
        super().__init__(why)
        self.layout, self.why = layout, why


def slots_sizes(slots: list[dict[str, Slot]], layout, where: str) -> tuple[int, ...]:
    """The network's widths read from its parameters in the declared layout; a wrong declaration is named."""
    shapes = [(s["w"].get().shape, s["b"].get().shape) for s in slots]
    flip = layout.weights == "out,in"
    sizes = _chain(shapes, flip)
    listed = ", ".join(f"{s['w'].words} {w}" for s, (w, _) in zip(slots, shapes))
    if sizes is None:
        other = _chain(shapes, not flip)
        if other:
            raise OtherLayoutError(
                Layout("in,out" if flip else "out,in", layout.samples),
                f"weights {listed} read as {'(in, out)' if flip else '(out, in)'}: each joins its bias and the "
                "next layer only that way",
            )
        hint = (
            (
                f"; they join as {'(in, out)' if flip else '(out, in)'}: declare WEIGHTS = "
                f'"{"in,out" if flip else "out,in"}" in the file or pass --weights'
            )
            if other
            else ""
        )
        raise FcgradError(
            f"{where}: the weights {listed} do not join as {layout.words('weight')} with their biases{hint}"
        )
    for s, (_, b_shape), n_out in zip(slots, shapes, sizes[1:]):
        if b_shape not in layout.accepts("bias", (n_out, 1)):
            rows = layout.samples == "rows"
            hint = (
                ""
                if n_out == 1
                else (
                    f"; a bias {b_shape} is the {'columns' if rows else 'rows'} layout's: declare "
                    f'SAMPLES = "{"columns" if rows else "rows"}" or pass --samples'
                )
            )
            swapped = Layout(layout.weights, "columns" if rows else "rows")
            if n_out != 1 and all(b in swapped.accepts("bias", (n, 1)) for (_, b), n in zip(shapes, sizes[1:])):
                raise OtherLayoutError(
                    swapped, f"samples by {swapped.samples[:-1]}: the biases are {', '.join(str(b) for _, b in shapes)}"
                )
            raise FcgradError(
                f"{where}: {s['b'].words} has shape {b_shape}, expected {layout.shape('bias', (n_out, 1))}"
                f" for samples by {layout.samples[:-1]}{hint}"
            )
    return sizes


def set_slots(slots: list[dict[str, Slot]], params, layout) -> None:
    """Copies of the blog-layout ``params`` into the user's arrays, each in the user's layout and bias shape."""
    for s, p in zip(slots, params):
        s["w"].set(layout.give("weight", p["w"]))
        s["b"].set(layout.give("bias", p["b"], like=s["b"].get().shape))


def get_slots(slots: list[dict[str, Slot]], layout, params) -> list[dict[str, np.ndarray]]:
    """The user's current parameters in the blog's layout (shaped like ``params``); a changed shape is refused."""
    out = []
    for i, (s, p) in enumerate(zip(slots, params)):
        layer = {}
        for q in ("w", "b"):
            mine = s[q].get()
            value = layout.read(kind_of(q), mine, p[q].shape)
            if value is None:
                raise FcgradError(
                    f"{s[q].words}: layer {i}'s {q} became {mine.shape}; expected "
                    f"{layout.shape(kind_of(q), p[q].shape)}, updated in place of the same shape"
                )
            layer[q] = np.array(value, dtype=np.float64)
        out.append(layer)
    return out


SCRIPT_BIAS_NAMES = (*BIAS_NAMES, "w0", "b0")  # a framework's bias beside its weights W
MOST_REACHED = 500  # objects walked from a net: far more than a network's layers, optimizers and losses


def _plain(value) -> bool:
    """An object of the user's with attributes of its own (not a module, class, function or NumPy value)."""
    if isinstance(value, (type, np.ndarray, np.generic, np.random.Generator)) or inspect.ismodule(value):
        return False
    if inspect.isroutine(value) or not hasattr(value, "__dict__"):
        return False
    return type(value).__module__.split(".")[0] not in ("numpy", "builtins", "fcgrad")


def reachable(net) -> list:
    """``net`` and every object of the user's it holds, through attributes, lists, tuples and dicts."""
    seen, out, todo = set(), [], [net]
    while todo and len(out) < MOST_REACHED:
        obj = todo.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            todo.extend(obj)
        elif isinstance(obj, dict):
            todo.extend(obj.values())
        elif _plain(obj):
            out.append(obj)
            todo.extend(v for v in vars(obj).values() if isinstance(v, (list, tuple, dict)) or _plain(v))
    return out


def script_slots(net) -> list[dict[str, Slot]]:
    """Each layer's ``{"w": Slot, "b": Slot}`` of a net a script assembled: the first list attribute of the net
    whose items hold a weight and a bias (``W``/``w0``, ``weights``/``bias``, ``weights``/``biases``), in its
    order; [] when it has none."""
    for name, value in vars(net).items():
        if not isinstance(value, list):
            continue
        found = []
        for i, layer in enumerate(value):
            w, b = _array_attr(layer, WEIGHT_NAMES), _array_attr(layer, SCRIPT_BIAS_NAMES)
            if w is not None and b is not None:
                words = f"net.{name}[{i}]"
                found.append({"w": Slot(layer, (w,), f"{words}.{w}"), "b": Slot(layer, (b,), f"{words}.{b}")})
        if found:
            return found
    return []
