"""A module function that makes the network itself and trains it: ``build_model(X, y, nn_hdim, num_passes)``.

The function creates the weights (from its own seed), runs every pass of its training inline and returns the
model, a dict ``{"W1": ..., "b1": ..., "W2": ..., "b2": ...}``. Its constants may sit in a class or at the
module's top (``Config.nn_input_dim``, ``nn_output_dim``, the learning rate ``epsilon`` or ``lr``, the L2
strength ``reg_lambda``). The audit runs it as written: with 0 passes for the weights it starts from (they are
the problem's parameters, so that both sides start where the file does), with 1 pass for the step it takes
(the gradients read back from it, ``(before − after) / lr``), its learning rate set to the problem's, its
regularisation 0, its prints off, the hidden width from the problem; the targets one-hot, or integer labels
where one-hot ones fail. The activations and the loss are read off the values its pass computes; a step that
descends the sum over the samples rather than the mean (no 1/N in any gradient) is one finding, where the
trace sees the 1/N left out, named with its factor N.
"""

import ast
import contextlib
import inspect
import re
import sys
import textwrap
from pathlib import Path

import numpy as np

from fcgrad.audits.code.model import LossName, Model, declared_activations, declared_loss
from fcgrad.audits.code.params import HIDDEN_NAMES, NUMBERED, QUIET_NAMES, REG_NAMES, parameters, required
from fcgrad.audits.code.params import LR_NAMES as RATE_NAMES
from fcgrad.audits.code.problem import BLOG_SIZES
from fcgrad.audits.code.returns import layout_of_arrays
from fcgrad.audits.code.seen import FED_OWN, LayerSeen, Seen, read_back
from fcgrad.audits.code.train import ITERATION_ATTRS
from fcgrad.engine.user_code import call, definition
from fcgrad.manual.errors import FcgradError

BUILD_NAMES = ("build_model", "train_model", "fit_model", "build_and_train", "train_network")
STEPS_NAMES = ITERATION_ATTRS  # its number of passes
X_NAMES, Y_NAMES = ("X", "x", "X_train", "inputs"), ("y", "Y", "t", "T", "y_train", "labels", "targets")
LR_NAMES = (*RATE_NAMES, "epsilon")  # epsilon last: the tutorial's name for it
_IN, _OUT = re.compile(r"(^|_)(input|in)_(dim|size|width)$"), re.compile(r"(^|_)(output|out)_(dim|size|width)$")


def _function(module):
    for name in BUILD_NAMES:
        fn = getattr(module, name, None)
        if not callable(fn) or isinstance(fn, type):
            continue
        names = parameters(fn)
        if len(names) >= 3 and names[0] in X_NAMES and names[1] in Y_NAMES and any(n in STEPS_NAMES for n in names):
            return fn
    return None


def _holders(module) -> list:
    """Where the file keeps its constants: its module-level classes, then the module itself."""
    own = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]
    return [*own, module]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _constant(holders, names, pattern=None) -> tuple[object, str] | None:
    """(holder, attribute) of the first constant named one of ``names`` (or matching ``pattern``)."""
    for holder in holders:
        for key, value in vars(holder).items():
            if _number(value) and (key in names or (pattern is not None and pattern.search(key))):
                return holder, key
    return None


def _words(holder, key: str) -> str:
    return f"{holder.__name__}.{key}" if isinstance(holder, type) else key


class BuildNet:
    protocol = "build"

    def __init__(self, module, file: str, fn, layout, hint: tuple[int, ...]):
        self.module, self.file, self.fn, self.layout = module, file, fn, layout
        self.where = definition(fn) or file
        self.holders = _holders(module)
        self.names = parameters(fn)
        self.steps_name = next(n for n in self.names if n in STEPS_NAMES)
        self.hidden_name = next((n for n in self.names if n in HIDDEN_NAMES), None)
        self.lr = next((c for n in LR_NAMES if (c := _constant(self.holders, (n,)))), None)
        self.regs = [c for n in REG_NAMES if (c := _constant(self.holders, (n,)))]
        self.widths = (_constant(self.holders, (), _IN), _constant(self.holders, (), _OUT))
        self.notes: list[str] = []
        self.labels = False
        self.sizes = self._sizes(hint)
        self.keys: list[tuple[str, str]] = []  # each layer's (weight key, bias key) in the returned model
        self.own_params = None  # the weights the file makes, the blog's layout
        self.layout_from = None
        self.scale = 1.0
        if self.lr is None:
            raise FcgradError(
                f"{self.where}: {fn.__name__} takes no learning rate and the file holds none; expected a constant "
                f"{', '.join(LR_NAMES)} (in a class such as Config, or at the module's top)"
            )

    def _sizes(self, hint: tuple[int, ...]) -> tuple[int, ...]:
        n_in, n_out = (getattr(*c) if c else None for c in self.widths)
        if len(hint) != 3 and self.hidden_name is not None:
            raise FcgradError(f"{self.where}: {self.fn.__name__} makes one hidden layer; expected --sizes IN,H,OUT")
        if tuple(hint) == BLOG_SIZES and n_in is not None and n_out is not None:
            return (int(n_in), hint[1], int(n_out))  # the file's own widths, the default hidden width
        for c, width in zip(self.widths, (hint[0], hint[-1])):
            if c is not None and getattr(*c) != width:
                self.notes.append(f"{_words(*c)} = {getattr(*c)} set to {width}, the problem's width")
        return tuple(hint)

    @contextlib.contextmanager
    def _constants(self, lr: float):
        """The file's constants as the audit runs it: the problem's widths and lr, no regularisation."""
        said = [(c, v) for c, v in zip(self.widths, (self.sizes[0], self.sizes[-1])) if c is not None]
        said += [(self.lr, lr)] + [(c, 0.0) for c in self.regs]
        saved = [(c, getattr(*c)) for c, _ in said]
        try:
            for (holder, key), value in said:
                setattr(holder, key, value)
            yield
        finally:
            for (holder, key), value in saved:
                setattr(holder, key, value)

    def _targets(self, t: np.ndarray):
        return np.argmax(t, axis=0) if self.labels else self.layout.give("data", t)

    def _call(self, x, t, passes: int, lr: float):
        kwargs = {self.steps_name: passes}
        kwargs.update({n: False for n in self.names if n in QUIET_NAMES})
        if self.hidden_name is not None:
            kwargs[self.hidden_name] = self.sizes[1]
        with self._constants(lr):
            state = np.random.get_state()
            try:
                return call(self.fn.__name__, self.fn, x, self._targets(t), filename=self.file, **kwargs)
            finally:
                np.random.set_state(state)

    def _run(self, p, passes: int):
        """The model after ``passes`` passes: one-hot targets, else (on an error) integer labels."""
        x = self.layout.give("data", p.x)
        try:
            return self._call(x, p.t, passes, p.lr)
        except FcgradError:
            if self.labels:
                raise
            self.labels = True
            try:
                out = self._call(x, p.t, passes, p.lr)
            except FcgradError:
                self.labels = False
                raise
            self.notes.append(f"the targets given to {self.fn.__name__} as integer labels (N,): one-hot ones failed")
            return out

    def _read(self, model) -> list[dict]:
        """The model's parameters in the blog's layout, in the order of its keys."""
        if not self.keys:
            found: dict[int, dict[str, str]] = {}
            for key in model if isinstance(model, dict) else ():
                m = NUMBERED.match(str(key))
                if m and isinstance(model[key], np.ndarray):
                    found.setdefault(int(m.group(2)), {})["b" if m.group(1) == "b" else "w"] = key
            if not found or any(set(v) != {"w", "b"} for v in found.values()):
                raise FcgradError(
                    f"{self.where}: {self.fn.__name__} returned {type(model).__name__}; expected the model as a "
                    "dict of W1, b1, W2, b2, ..."
                )
            self.keys = [(found[k]["w"], found[k]["b"]) for k in sorted(found)]
            w, b = (np.asarray(model[k]) for k in self.keys[0])
            shown = layout_of_arrays(w, b, self.layout)
            if shown != self.layout:
                self.layout, self.layout_from = shown, f"the arrays {self.fn.__name__} makes"
        out = []
        for i, ((wk, bk), n_in, n_out) in enumerate(zip(self.keys, self.sizes, self.sizes[1:])):
            layer = {}
            for q, key, shape in (("w", wk, (n_in, n_out)), ("b", bk, (n_out, 1))):
                value = self.layout.read("weight" if q == "w" else "bias", model[key], shape)
                if value is None:
                    raise FcgradError(
                        f"{self.where}: layer {i}'s {key} is {np.shape(model[key])}; expected "
                        f"{self.layout.shape('weight' if q == 'w' else 'bias', shape)}"
                    )
                layer[q] = np.array(value, dtype=np.float64)
            out.append(layer)
        return out

    def start(self, p) -> list[dict]:
        """The weights the file makes itself (0 passes)."""
        if self.own_params is None:
            self.own_params = self._read(self._run(p, 0))
        return self.own_params

    def model(self, p, declared: dict) -> Model:
        from fcgrad.audits.code.trace import recording  # noqa: PLC0415
        from fcgrad.audits.code.trace.inferred import read_forward  # noqa: PLC0415

        start = self.start(p)
        with recording(str(Path(self.file).resolve().parent)) as rec:
            self._run(p, 1)
        acts_said = declared_activations(*declared.get("ACTIVATIONS", (None, "")), len(start))
        read = read_forward(rec.records, start, p.x)
        if acts_said is None and read is None:
            raise FcgradError(
                f"{self.where}: the values {self.fn.__name__} computes match no layers of the library's activations "
                "or of the file's own functions; expected ACTIVATIONS = [...] in the file"
            )
        acts, output = (acts_said, None) if acts_said is not None else read
        read_loss = {"softmax": "cross-entropy", "sigmoid": "bce-logits"}.get(output)
        said = declared_loss(*declared.get("LOSS", (None, "")))
        if said is not None and read_loss is not None and said != read_loss:
            raise FcgradError(
                f"{declared['LOSS'][1]}: LOSS = {said!r} but {self.fn.__name__} ends in a {output}, the {read_loss} "
                "loss; expected the loss it computes"
            )
        loss = read_loss or said or "square"
        named = LossName(loss)  # a step along the sum over the samples is the trace's one finding, named with N
        words = "the activations and the loss read off the values its pass computes"
        if read_loss is None:
            words = f"{words}; the loss: {loss}, {'its LOSS' if said else 'the default'} (no softmax or sigmoid output)"
        lr_words = f"{_words(*self.lr)} = {getattr(*self.lr)} (its learning rate) replaced by the problem's {p.lr:g}"
        regs = [f"{_words(*c)} = {getattr(*c)} set to 0 (the regularisation)" for c in self.regs if getattr(*c) != 0]
        self.notes += [lr_words, *regs]
        return Model(tuple(acts), named, (words,))

    def chain(self, p, params=None) -> tuple[float, Seen, list]:
        from fcgrad.manual.losses import LOSSES  # noqa: PLC0415
        from fcgrad.manual.network import forward  # noqa: PLC0415

        params = p.params if params is None else params
        after = self._read(self._run(p, 1))
        layers = []
        for old, new in zip(params, after):
            values = {}
            for q, g, kind in (("w", "grad_w", "weight"), ("b", "grad_b", "bias")):
                values[g] = read_back(self.layout.give(kind, old[q]), self.layout.give(kind, new[q]), p.lr)
            layers.append(LayerSeen(values, all(np.array_equal(old[q], new[q]) for q in ("w", "b"))))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value = float(LOSSES[p.loss].forward(forward(params, p.x, p.activations)[0], p.t))
        return value, Seen(FED_OWN, None, layers), after

    def stepper(self, p):
        """The file's own passes, one per call: its model after 1, 2, ... passes (read in one run of them all)."""
        from fcgrad.manual.losses import LOSSES  # noqa: PLC0415
        from fcgrad.manual.network import forward  # noqa: PLC0415

        passes: list[list[dict]] = []
        done = [0]

        def run(params):
            if not passes:
                passes.extend(self._every_pass(p, p.steps))
            k = min(done[0], len(passes) - 1)
            done[0] += 1
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                value = float(LOSSES[p.loss].forward(forward(params, p.x, p.activations)[0], p.t))
            return value, passes[k]

        return run

    def _every_pass(self, p, n: int) -> list[list[dict]]:
        """The model after each of ``n`` passes, read where the loop over the passes comes back to its top."""
        line = _loop_line(self.fn, self.steps_name)
        names = [k for pair in self.keys for k in pair]
        seen: list[dict] = []
        code = self.fn.__code__

        def local(frame, event, arg):
            if event == "line" and frame.f_lineno == line:
                arrays = {k: frame.f_locals.get(k) for k in names}
                model = next((v for v in frame.f_locals.values() if isinstance(v, dict) and set(names) <= set(v)), {})
                seen.append({k: np.array(arrays[k] if arrays[k] is not None else model.get(k)) for k in names})
            return local

        def outer(frame, event, arg):
            return local if frame.f_code is code else None

        before = sys.gettrace()
        sys.settrace(outer)
        try:
            final = self._run(p, n)
        finally:
            sys.settrace(before)
        states = [s for s in seen if all(v.dtype != object for v in s.values())][1:]
        if len(states) >= n:
            return [self._read(s) for s in states[: n - 1]] + [self._read(final)]
        return [self._read(self._run(p, k)) for k in range(1, n + 1)]  # no loop seen: each pass count run afresh


def _loop_line(fn, steps_name: str) -> int | None:
    """The line of the ``for`` whose iterable reads the number of passes."""
    try:
        lines, first = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):
        names = [n.id for n in ast.walk(node.iter) if isinstance(n, ast.Name)] if isinstance(node, ast.For) else []
        if steps_name in names:
            return first + node.lineno - 1
    return None


def build_build(module, path: str, layout, hint: tuple[int, ...]) -> BuildNet | None:
    """The driver of a file whose one function makes and trains its network, or None when it has none."""
    fn = _function(module)
    if fn is None or len(required(fn)) > 3:
        return None
    return BuildNet(module, path, fn, layout, hint)
