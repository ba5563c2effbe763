"""The script protocol: a network the file's own ``if __name__ == "__main__":`` block assembles, then trains.

Frameworks and tutorials build their net in a script (``model.add(Dense(8))``, ``net.use(mse, mse_prime)``,
``model.set(loss=..., optimizer=...)``) and train it with one call (``fit``, ``train``, ``train_on_batch``, ...).
The audit runs that block with the first training call of an object of the file's own classes caught before it
trains: the net as the script built it, and the call as the script wrote it. Then:

- the parameters are found wherever the layers hold them (``code_params.script_slots``), the widths read off
  them (or the arrays replaced by those of the problem asked for), the layout read off the biases' shapes;
- the learning rate is set wherever it is held (an argument, the optimizer, a copy of it per array);
  momentum, decay and regularisers are set to 0, and the report's notes say so;
- the training call is made with its own signature: the data by its names, one epoch, the whole batch, the
  printing silenced, every other argument as the script gave it; integer labels where the script passed
  them; samples shaped (N, 1, in) one at a time (online fit), each from the same parameters, averaged;
- the gradients are read back from the update, ``(before − after) / lr``; the activations off the values the
  step computes (``trace.inferred``), the loss off the file's own loss function at the network's output.
"""

import ast
import contextlib
import inspect
import signal
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fcgrad.audits.code.layout import Layout
from fcgrad.audits.code.model import Model, declared_activations, match_loss, summed_loss, whole_forward
from fcgrad.audits.code.params import (
    LR_NAMES,
    QUIET_NAMES,
    get_slots,
    holds_rate,
    note_own_lr,
    parameters,
    reachable,
    required,
    script_slots,
    set_slots,
    slots_sizes,
)
from fcgrad.audits.code.seen import FED_OWN, LayerSeen, Seen, read_back
from fcgrad.audits.code.trace import recording
from fcgrad.audits.code.trace.inferred import read_forward
from fcgrad.audits.code.train import (
    BATCH_NAMES,
    EPOCH_NAMES,
    FIT_NAMES,
    FORWARD_NAMES,
    PAIRS_NAMES,
    STEP_NAMES,
)
from fcgrad.engine.user_code import call, definition, user_error
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.losses import LOSSES
from fcgrad.manual.network import forward

TRAIN_NAMES = (*STEP_NAMES, *FIT_NAMES, *PAIRS_NAMES, "SGD")
PRINT_NAMES = ("print_every", "print_freq", "log_every", "print_interval", "display_step")
# The script runs until its training call: building the net and drawing the data took 0.001 s to 0.003 s in the
# published shapes (measured); a block that runs 20 s without that call is doing something else (training elsewhere).
SCRIPT_SECONDS = 20.0
NEVER_PRINTS = 10**9  # a print_every no epoch of one reaches
HELD_LR_NAMES = (*LR_NAMES, "current_learning_rate")  # an optimizer's rate after its decay
ZEROED = ("momentum", "decay", "weight_decay")  # what makes a step other than plain SGD
REGULARISER_PARTS = ("regularizer", "regularization_strength", "reg_lambda", "lmbda", "l2_lambda")
LOSS_ATTRS = ("loss", "loss_function", "loss_fn", "cost", "criterion")
LOSS_METHODS = ("loss", "calculate", "forward", "__call__", "fn")
OUTPUT_PARTS = ("pred", "output", "out", "hat")  # an argument of the loss that takes the network's output
LABEL_CLASSES = {"softmax": "cross-entropy", "sigmoid": "bce-logits"}  # the loss an output function belongs to


class _Stopped(BaseException):  # not an Exception: a script's `except Exception` lets it through
    """Raised in place of the script's first training call: the object and the call as written."""

    def __init__(self, obj, name: str, args: tuple, kwargs: dict):
        super().__init__(name)
        self.obj, self.name, self.args, self.kwargs = obj, name, args, kwargs


def main_block(path: str) -> list[ast.stmt] | None:
    """The statements of the file's ``if __name__ == "__main__":``, or None when it has none."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        test = node.test if isinstance(node, ast.If) else None
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            sides = [test.left, *test.comparators]
            names = {s.id for s in sides if isinstance(s, ast.Name)}
            values = {s.value for s in sides if isinstance(s, ast.Constant)}
            if names == {"__name__"} and values == {"__main__"}:
                return node.body
    return None


class _TooLong(BaseException):
    """The script ran past ``SCRIPT_SECONDS`` before its training call; ``where``: the file's line it was at."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


@contextlib.contextmanager
def _time_limit(path: str):
    """``_TooLong`` raised in the script after ``SCRIPT_SECONDS`` (the main thread only: elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    mine = str(Path(path).resolve())

    def late(signum, frame):
        at = frame
        while at is not None and str(Path(at.f_code.co_filename).resolve()) != mine:
            at = at.f_back
        raise _TooLong(f"{path}:{at.f_lineno}" if at is not None else path)

    previous = signal.signal(signal.SIGALRM, late)
    signal.setitimer(signal.ITIMER_REAL, SCRIPT_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _user_classes(module, path: str) -> list[type]:
    """The classes the file defines, and those it imports from its own folder (a framework of the user's)."""
    folder = Path(path).resolve().parent

    def users(cls) -> bool:
        if cls.__module__ == module.__name__:
            return True
        file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        return file is not None and Path(file).resolve().parent == folder

    return [v for v in vars(module).values() if isinstance(v, type) and users(v)]


def _interceptor(name: str):
    def caught(self, *args, **kwargs):
        raise _Stopped(self, name, args, kwargs)

    return caught


@contextlib.contextmanager
def _numpy_kept():
    """NumPy's random state, error handling and print options as they were, whatever the script set."""
    state, err, printing = np.random.get_state(), np.geterr(), np.get_printoptions()
    try:
        yield
    finally:
        np.random.set_state(state)
        np.seterr(**err)
        np.set_printoptions(**printing)


def catch_training(module, path: str) -> _Stopped | None:
    """Run the file's ``__main__`` block until its first training call of an object of its own classes (or of
    classes it imports from its folder)."""
    block = main_block(path)
    if not block:
        return None
    patched = []
    for cls in _user_classes(module, path):
        for name in TRAIN_NAMES:
            if callable(getattr(cls, name, None)):
                patched.append((cls, name, vars(cls).get(name)))
                setattr(cls, name, _interceptor(name))
    if not patched:
        return None
    code = compile(ast.Module(body=block, type_ignores=[]), str(path), "exec")
    scope = {**vars(module), "__name__": "__main__"}
    try:
        with _numpy_kept(), _time_limit(path):
            exec(code, scope)  # noqa: S102  (the user's own script, run as `python FILE` would)
    except _TooLong as late:
        raise FcgradError(
            f"{late.where}: the `if __name__ == \"__main__\":` block ran {SCRIPT_SECONDS:g} s without calling a "
            f"training method of the file's own classes ({', '.join(TRAIN_NAMES[:4])}, ...); expected the net built "
            "and trained by one such call, or the protocols' declarations"
        ) from None
    except _Stopped as caught:
        return caught
    except Exception as exc:  # the script's own error, before it trains: said at its line
        raise user_error(f'running the `if __name__ == "__main__":` block of {Path(path).name}', exc, path) from exc
    finally:
        for cls, name, own in patched:
            if own is None:
                delattr(cls, name)
            else:
                setattr(cls, name, own)
    return None


def _read_layout(slots, x) -> Layout | None:
    """The layout the arrays show: samples by row where a bias is (1, out) or (out,), w (in, out) where the
    widths join that way; None when they do not say."""
    shapes = [(s["w"].get().shape, s["b"].get().shape) for s in slots]
    if any(len(w) != 2 for w, _ in shapes):
        return None
    outs = [int(np.prod(b)) for _, b in shapes]
    joins = {
        "in,out": all(w[1] == n for (w, _), n in zip(shapes, outs)),
        "out,in": all(w[0] == n for (w, _), n in zip(shapes, outs)),
    }
    weights = "in,out" if joins["in,out"] else "out,in" if joins["out,in"] else None
    if weights is None:
        return None
    told = [len(b) == 1 or b[0] == 1 for _, b in shapes if int(np.prod(b)) > 1]
    if told:
        return Layout(weights, "rows" if told[0] else "columns")
    n_in = shapes[0][0][0] if weights == "in,out" else shapes[0][0][1]
    x = np.asarray(x)
    if x.ndim >= 2 and x.shape[-1] == n_in:
        return Layout(weights, "rows")
    return Layout(weights, "columns")


@dataclass
class _Call:
    given: dict  # its arguments as the script passed them, by name
    data: tuple[str, str]  # the names of its inputs and targets
    labels: bool  # the script passed integer labels (N,)
    online: bool  # the script passed samples shaped (N, 1, in): one at a time


class ScriptNet:
    protocol = "script"

    def __init__(self, file: str, caught: _Stopped, slots, layout):
        self.file, self.net, self.slots, self.layout = file, caught.obj, slots, layout
        self.where = definition(type(self.net)) or file
        self.step = getattr(self.net, caught.name)
        names = parameters(self.step)
        given = inspect.signature(self.step).bind_partial(*caught.args, **caught.kwargs).arguments
        if len(names) < 2:
            raise FcgradError(
                f"{definition(self.step) or file}: {caught.name}({', '.join(names)}) takes no inputs and targets; "
                f"expected {caught.name}(X, y, ...) as the script calls it"
            )
        x, t = given.get(names[0]), given.get(names[1])
        x, t = np.asarray(x) if x is not None else np.zeros(0), np.asarray(t) if t is not None else np.zeros(0)
        online = x.ndim == 3 and x.shape[1] == 1
        self.call = _Call(dict(given), (names[0], names[1]), t.ndim == 1 and t.dtype.kind in "iu", online)
        self.read_layout = _read_layout(slots, x[:, 0] if online else x)
        self.layout = self.read_layout or layout  # what the arrays show, unless a declaration overrides it (settle)
        self.layout_from = "read off the arrays the file's script builds"
        held = [(o, n) for o in reachable(self.net) for n in HELD_LR_NAMES if _number(getattr(o, n, None))]
        self.lr_holders = [(o, n) for o, n in held if holds_rate(o, n)]
        self.loss_name: str | None = None
        self.acts: tuple[str, ...] = ()
        self.said: list[str] = []  # what the audit changed or chose, for the report's notes
        self.lr_said: list[str] = []  # the file's own learning rate, once, when the problem's replaces it
        self._plain_sgd()

    @property
    def notes(self) -> list[str]:
        return self.lr_said + self.said

    # ---- what the script set up ----

    def _plain_sgd(self) -> None:
        """Momentum, decay and every regulariser set to 0 on the net and what it holds, each said once."""
        for obj in reachable(self.net):
            for name, value in list(vars(obj).items()):
                plain = name in ZEROED or any(part in name.lower() for part in REGULARISER_PARTS)
                if plain and _number(value) and value != 0:
                    setattr(obj, name, 0.0)
                    said = f"{type(obj).__name__}.{name} = {value:g} set to 0: the audit compares plain gradient steps"
                    if said not in self.said:
                        self.said.append(said)

    @property
    def sizes(self) -> tuple[int, ...]:
        return slots_sizes(self.slots, self.layout, self.where)

    def settle(self, declared: Layout | None, problem) -> Layout:
        """The layout (the one declared, else the one the arrays show) and, for a problem asked for, the net's
        arrays replaced by arrays of its widths."""
        self.layout = declared or self.read_layout or self.layout
        if problem is not None:
            self.resize(tuple(problem.sizes))
        return self.layout

    def resize(self, sizes: tuple[int, ...]) -> None:
        """The net's arrays replaced by zeros of ``sizes``' widths (the problem then sets them), when they differ."""
        if tuple(sizes) == self.sizes:
            return
        if len(sizes) != len(self.slots) + 1:
            raise FcgradError(
                f"{self.file}: the script builds {len(self.slots)} layers; expected {len(self.slots) + 1} widths, "
                f"got {'-'.join(map(str, sizes))}"
            )
        built = "-".join(map(str, self.sizes))
        for s, n_in, n_out in zip(self.slots, sizes, sizes[1:]):
            b = s["b"].get()
            like = (1, n_out) if b.ndim == 2 and b.shape[0] == 1 and self.layout.rows else None
            s["w"].set(self.layout.give("weight", np.zeros((n_in, n_out))))
            s["b"].set(self.layout.give("bias", np.zeros((n_out, 1)), like=like))
        self.said.append(
            f"the script builds {built}; its layers' arrays replaced by {'-'.join(map(str, sizes))} ones, as asked"
        )

    def set_params(self, params, lr: float) -> None:
        set_slots(self.slots, params, self.layout)
        for obj, name in self.lr_holders:
            note_own_lr(self.lr_said, getattr(obj, name), lr, f"{type(obj).__name__}.{name}")
            setattr(obj, name, lr)

    # ---- the training call, as the script wrote it ----

    def _data(self, p, j: int | None = None):
        """The problem's inputs and targets in the file's form: its layout, labels, (1, in) samples."""
        x, t = self.layout.give("data", p.x), self.layout.give("data", p.t)
        if self.call.labels:
            t = np.argmax(p.t, axis=0)
        if self.call.online:
            x, t = x.reshape(p.batch, 1, -1), t.reshape(p.batch, 1, -1) if t.ndim > 1 else t
        if j is not None:
            x, t = x[j : j + 1], t[j : j + 1]
        return x, t

    def _call_step(self, p, x, t) -> None:
        values = dict(self.call.given)
        values[self.call.data[0]], values[self.call.data[1]] = x, t
        for q in parameters(self.step):
            if q in EPOCH_NAMES:
                values[q] = 1
            elif q in BATCH_NAMES:
                values[q] = len(x)
            elif q in HELD_LR_NAMES:
                values[q] = p.lr
            elif q in PRINT_NAMES:
                values[q] = NEVER_PRINTS
            elif q in QUIET_NAMES:
                values[q] = False
        try:
            self.step(**values)
        except FcgradError:
            raise
        except Exception as exc:  # the user's code may raise anything: said at the deepest line of their folder
            raise user_error(self.step.__name__, exc, _deepest_file(exc, self.file)) from exc

    def _say_call(self, p) -> None:
        kept = [k for k in self.call.given if k not in self.call.data]
        asked = {q for q in parameters(self.step) if q in (*EPOCH_NAMES, *BATCH_NAMES, *HELD_LR_NAMES, *PRINT_NAMES)}
        said = f"the script's {self.step.__name__}(...) is called once per step"
        if asked:
            said += f", with {', '.join(sorted(asked))} set for one step"
            said += "" if self.call.online else " of the whole batch"
        if kept := [k for k in kept if k not in asked and k not in QUIET_NAMES]:
            said += f"; kept as the script gave them: {', '.join(kept)}"
        if self.call.online:
            said += f"; one sample at a time, each from the same parameters, the N = {p.batch} steps averaged"
        if self.call.labels:
            said += "; the targets as integer labels, as the script passes them"
        self.said.append(said)

    def _grads(self, p, params) -> tuple[list[dict], list[bool], list[dict]]:
        """Each layer's gradients read back from the file's step at ``params`` (the file's layout), whether it
        left w and b as they were, and the parameters its first run left (the blog's layout). Online, each sample
        runs from ``params`` and the gradients are averaged; only the first sample's run is left to the trace,
        so that its statements are judged against that sample's quantities and the update it made."""
        runs = range(p.batch) if self.call.online else [None]
        total, unchanged, first = None, [True] * len(self.slots), None
        for j in runs:
            self.set_params(params, p.lr)
            before = [{q: s[q].get() for q in ("w", "b")} for s in self.slots]
            with _untraced() if j else contextlib.nullcontext():
                self._call_step(p, *self._data(p, j))
            after = [{q: s[q].get() for q in ("w", "b")} for s in self.slots]
            first = first or get_slots(self.slots, self.layout, params)
            for i, (b0, a1) in enumerate(zip(before, after)):
                unchanged[i] = unchanged[i] and all(np.array_equal(b0[q], a1[q]) for q in ("w", "b"))
            g = [{q: read_back(b0[q], a1[q], p.lr) for q in ("w", "b")} for b0, a1 in zip(before, after)]
            total = g if total is None else [{q: t[q] + gi[q] for q in ("w", "b")} for t, gi in zip(total, g)]
        return [{q: v / len(runs) for q, v in layer.items()} for layer in total], unchanged, first

    def _stepped(self, p, params, grads) -> list[dict]:
        """``params`` after one step along the gradients read (the blog's layout)."""
        self.set_params(params, p.lr)
        for s, g in zip(self.slots, grads):
            for q in ("w", "b"):
                s[q].set(s[q].get() - p.lr * g[q])
        return get_slots(self.slots, self.layout, params)

    def _value(self, p, params) -> float:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return float(LOSSES[self.loss_name].forward(forward(params, p.x, self.acts)[0], p.t))

    def chain(self, p, params=None) -> tuple[float, Seen, list]:
        self._classes(p)
        params = p.params if params is None else params
        grads, unchanged, first = self._grads(p, params)
        bias = [self.layout.give("bias", layer["b"]).shape for layer in params]  # (1, out) read as the layout's
        layers = [
            LayerSeen({"grad_w": g["w"], "grad_b": g["b"].reshape(shape)}, u)
            for g, u, shape in zip(grads, unchanged, bias)
        ]
        return self._value(p, params), Seen(FED_OWN, None, layers), first

    def stepper(self, p):
        def run(params):
            grads = self._grads(p, params)[0]
            return self._value(p, params), self._stepped(p, params, grads)

        return run

    # ---- the model it computes ----

    def _classes(self, p) -> None:
        """A file that trains on integer labels can only be given classes: refused otherwise."""
        if self.call.labels and not _one_hot(p.t):
            raise FcgradError(
                f"{self.file}: the script trains on integer labels ({self.call.data[1]}); expected a problem whose "
                "targets are classes (one-hot columns: with --sizes, add --loss cross-entropy), got targets that "
                "are not"
            )

    def model(self, p, declared: dict) -> Model:
        if self.call.labels and not _one_hot(p.t):  # read on classes; the problem is drawn with classes after
            p = replace(p, t=np.eye(p.t.shape[0])[:, np.argmax(p.t, axis=0)])
        self._say_call(p)
        acts = declared_activations(*declared.get("ACTIVATIONS", (None, "")), len(p.params))
        x = p.x[:, :1] if self.call.online else p.x
        with recording(str(Path(self.file).resolve().parent)) as rec:
            self.set_params(p.params, p.lr)
            self._call_step(p, *self._data(p, 0 if self.call.online else None))
        read = read_forward(rec.records, p.params, x)
        said = "the activations read off the values the step computes" if acts is None else "ACTIVATIONS"
        if read is None and acts is None:
            read = self._whole_forward(p), None
            said = f"the activations read off the output of {self._forward_fn().__name__}(X)"
        output = read[1] if read is not None else None
        self.acts = acts or read[0]
        loss, notes = self._loss(p, output)
        self.loss_name = str(loss)
        return Model(self.acts, loss, (said, *notes))

    def _forward_fn(self):
        for name in FORWARD_NAMES:
            fn = getattr(self.net, name, None)
            if callable(fn) and len(required(fn)) == 1:
                return fn
        raise FcgradError(
            f"{definition(self.step) or self.file}: the activations of the net the script builds could not be read "
            "off the values its step computes, and it has no predict(X) (or forward, feedforward); expected "
            "ACTIVATIONS = [...] (one name per layer) in the file"
        )

    def _whole_forward(self, p) -> tuple[str, ...]:
        """The activations that reproduce the net's own forward (``predict``) on the problem's X."""
        fn = self._forward_fn()

        def run(params):
            self.set_params(params, p.lr)
            y = np.asarray(call(fn.__name__, fn, self._data(p)[0], filename=self.file), dtype=np.float64)
            out = self.layout.read("data", y.reshape(p.batch, -1) if self.layout.rows else y, p.t.shape)
            if out is None:
                raise FcgradError(
                    f"{definition(fn) or self.file}: {fn.__name__} returned {y.shape}; expected the output "
                    f"{self.layout.shape('data', p.t.shape)}"
                )
            return out

        return whole_forward(run, p, f"{fn.__name__}(X)", self.file, None)

    def _loss(self, p, output: str | None):
        value = self._file_loss(p, output)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            y = forward(p.params, p.x, self.acts)[0]
        found = None if value is None else match_loss(value, y, p.t, "the loss", self.file)
        if found is None and value is not None and not self.call.online:
            found = summed_loss(value, y, p.t, p.batch, self.file)
        if found is not None and (output is None or str(found) == LABEL_CLASSES[output]):
            return found, ("the loss, off the file's own loss function at the network's output",)
        if output is not None:
            return LABEL_CLASSES[output], (f"the loss: {LABEL_CLASSES[output]}, the one its {output} output takes",)
        return p.loss, (f"the loss: {p.loss}, the problem's (no loss function of the net's reproduces a library one)",)

    def _file_loss(self, p, output: str | None) -> float | None:
        """The file's own loss at the network's output, summed over entries when it gives one per entry."""
        fn = self._loss_function()
        if fn is None:
            return None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            z = forward(p.params, p.x, self.acts)[0]
            y = {"softmax": _softmax, "sigmoid": _sigmoid}.get(output, lambda a: a)(z)
        y_mine = self.layout.give("data", y)
        t_mine = self._data(p)[1]
        names = [q for q in parameters(fn) if q != "self"][:2]
        first_is_output = any(part in names[0].lower() for part in OUTPUT_PARTS) if names else False
        runs = [(y_mine.reshape(p.batch, 1, -1)[j], t_mine[j]) for j in range(p.batch)] if self.call.online else []
        runs = runs or [(y_mine, t_mine)]
        values = []
        for yj, tj in runs:
            args = (yj, tj) if first_is_output else (tj, yj)
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    v = np.asarray(fn(*args), dtype=np.float64)
            except Exception:  # noqa: BLE001  (a function of the file's that is no loss of (y, t): not the loss)
                return None
            values.append(float(np.sum(v)))
        return float(np.mean(values))

    def _loss_function(self):
        for attr in LOSS_ATTRS:
            obj = getattr(self.net, attr, None)
            if obj is None or isinstance(obj, (int, float, np.ndarray)):
                continue
            if inspect.isfunction(obj) or inspect.ismethod(obj):
                return obj
            for name in LOSS_METHODS:
                fn = getattr(obj, name, None)
                if callable(fn) and len(parameters(fn)) >= 2:
                    return fn
        return None


@contextlib.contextmanager
def _untraced():
    """No tracer while the block runs (the recorder of the audit sees one sample's step, not N)."""
    tracer = sys.gettrace()
    sys.settrace(None)
    try:
        yield
    finally:
        sys.settrace(tracer)


def _softmax(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _deepest_file(exc: BaseException, file: str) -> str:
    """The file of the deepest frame ``exc`` passed through in ``file``'s folder (a sibling module's, perhaps)."""
    folder, found, tb = Path(file).resolve().parent, file, exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve().parent == folder:
            found = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return found


def _one_hot(t: np.ndarray) -> bool:
    return t.shape[0] > 1 and np.array_equal(t, np.eye(t.shape[0])[:, np.argmax(t, axis=0)])


def _number(value) -> bool:
    return isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)


def build_script(module, path: str, layout) -> ScriptNet | None:
    """The driver of the net the file's ``__main__`` block builds and trains, or None when it builds none."""
    caught = catch_training(module, path)
    if caught is None:
        return None
    slots = script_slots(caught.obj)
    if not slots:
        return None
    return ScriptNet(path, caught, slots, layout)


__all__ = ["ScriptNet", "build_script", "catch_training", "main_block"]
