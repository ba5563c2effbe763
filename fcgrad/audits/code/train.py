"""The train-step protocol: a network class whose one method runs a whole training step.

Recognised, in this order: ``train_step(X, T)`` (also ``training_step``, ``train_on_batch``, ``train_batch``,
``step(X, T)``); ``fit(X, T, epochs)`` or ``train(X, T, epochs)`` run for one epoch (also ``iterations``,
``num_iterations``, ``n_epochs``, ``n_iter``, ``steps``), the whole batch at once; ``update_mini_batch(batch,
eta)``, the textbook's, with the batch as a list of ``(x, t)`` pairs, one sample each. The learning rate is
passed where the method takes one (``lr``, ``learning_rate``, ``eta``, ``alpha``), else set on the attribute
of that name of the net or its layers. The parameters are found by ``fcgrad.audits.code.params``; the
gradients are read back from the step, ``(before − after) / lr``; the activations from the net's
``forward`` (``predict``, ``feedforward``, ``__call__``) on the whole batch, the loss from the number the step
returns (or the file's ``LOSS``, or the problem's). Only the gradients are exposed, so a mistake is located
at the first wrong one in backward order.
"""

import contextlib
import inspect

import numpy as np

from fcgrad.audits.code.model import (
    Model,
    declared_activations,
    declared_loss,
    logits,
    loss_value,
    match_loss,
    summed_loss,
    whole_forward,
)
from fcgrad.audits.code.params import (
    LR_NAMES,
    QUIET_NAMES,
    REG_NAMES,
    find_slots,
    get_slots,
    lr_argument,
    lr_attributes,
    module_list,
    note_own_lr,
    parameters,
    required,
    set_slots,
    slots_sizes,
)
from fcgrad.audits.code.seen import FED_OWN, LayerSeen, Seen, chain_stepper, read_back
from fcgrad.engine.user_code import call, definition
from fcgrad.manual.errors import FcgradError

LOSS_METHODS = ("total_cost", "cost", "compute_cost", "loss", "compute_loss", "calculate_loss", "get_loss")
LOSS_OBJECTS = ("loss", "loss_function", "loss_fn", "cost", "criterion", "objective")  # a loss the net holds
STEP_NAMES = ("train_step", "training_step", "train_on_batch", "train_batch", "step")
FIT_NAMES = ("fit", "train")
PAIRS_NAMES = ("update_mini_batch",)
EPOCH_NAMES = ("epochs", "n_epochs", "num_epochs", "iterations", "num_iterations", "n_iter", "steps", "epoch")
ITERATION_ATTRS = (*EPOCH_NAMES, "n_iterations", "num_iters", "n_iters", "max_iter", "num_passes")  # on the net
BATCH_NAMES = ("batch_size", "mini_batch_size")
TRAIN_SIZE_NAMES = ("n", "n_train", "n_samples", "num_samples", "m")  # the training set's size: the batch's here
FORWARD_NAMES = ("forward", "predict", "feedforward", "__call__")


def find_step(net) -> tuple[str, object] | tuple[None, str]:
    """(how it is called, the bound method), or (None, why none fits)."""
    for name in STEP_NAMES:
        fn = getattr(net, name, None)
        if callable(fn) and 2 <= len(required(fn)) <= 3:
            return "step", fn
    for name in FIT_NAMES:
        fn = getattr(net, name, None)
        if callable(fn) and len(required(fn)) >= 2:
            held = any(isinstance(getattr(net, a, None), int) for a in ITERATION_ATTRS)  # the net's own count
            if not held and not any(p in EPOCH_NAMES for p in parameters(fn)):
                return None, (
                    f"{name}(...) takes no number of epochs ({', '.join(parameters(fn))}); expected one of "
                    f"{', '.join(EPOCH_NAMES[:4])} to run it for one step"
                )
            return "fit", fn
    for name in PAIRS_NAMES:
        fn = getattr(net, name, None)
        if callable(fn) and len(required(fn)) >= 2 and not _unknown(fn, 2):
            return "pairs", fn
    return None, "no train_step(X, T), fit(X, T, epochs) or update_mini_batch(batch, eta)"


def find_forward(net):
    for name in FORWARD_NAMES:
        fn = getattr(net, name, None)
        if callable(fn) and len(required(fn)) == 1:
            return fn
    return None


class TrainStepNet:
    protocol = "train_step"

    def __init__(self, file: str, net, slots, how: str, step, forward, layout):
        self.file, self.net, self.slots, self.how, self.step, self.forward_fn = file, net, slots, how, step, forward
        self.layout = layout
        self.where = definition(type(net)) or file
        self.output = None  # "softmax": the file's forward ends in the probabilities its cross-entropy takes
        self.model_read: Model | None = None
        self.lr_notes: list[str] = []  # the file's own learning rate, when the audit replaces it
        self.said: list[str] = list(vars(net).get("_fcgrad_said", []))  # what the audit gave the training call

    @property
    def notes(self) -> list[str]:
        return self.lr_notes + self.said

    @property
    def sizes(self) -> tuple[int, ...]:
        return slots_sizes(self.slots, self.layout, self.where)

    def set_params(self, params, lr: float) -> None:
        set_slots(self.slots, params, self.layout)
        if lr_argument(self.step):
            return
        modules = module_list(self.net)[0]
        found = lr_attributes(self.net, *modules)
        if not found:
            raise FcgradError(
                f"{definition(self.step) or self.where}: {self.step.__name__} takes no learning rate and the net "
                "holds none; expected an argument or attribute lr (or learning_rate, eta, alpha)"
            )
        for obj, name in found:
            note_own_lr(self.lr_notes, getattr(obj, name), lr, f"{type(obj).__name__}.{name}")
            setattr(obj, name, lr)

    def forward(self, p, params) -> np.ndarray:
        """The file's forward at ``params`` on the problem's X, in the blog's layout."""
        lay = self.layout
        self.set_params(params, p.lr)
        y = call(f"{self.forward_fn.__name__}", self.forward_fn, lay.give("data", p.x), filename=self.file)
        out = lay.read("data", np.asarray(y, dtype=np.float64), p.t.shape)
        if out is None:
            raise FcgradError(
                f"{definition(self.forward_fn) or self.file}: {self.forward_fn.__name__} returned "
                f"{np.shape(y)}; expected the output {lay.shape('data', p.t.shape)}"
            )
        return logits(out, self.output)

    def _call_step(self, p):
        return call_step(self.how, self.step, p, self.layout, self.file, self.said)

    def model(self, p, declared: dict) -> Model:
        acts_said = declared_activations(*declared.get("ACTIVATIONS", (None, "")), len(p.params))
        what = f"{self.forward_fn.__name__}(X)"
        acts = whole_forward(lambda params: self.forward(p, params), p, what, self.file, acts_said)
        self.output = getattr(acts, "output", None)
        said = declared_loss(*declared.get("LOSS", (None, "")))
        y = self.forward(p, p.params)  # logits, where the forward ends in probabilities
        self.set_params(p.params, p.lr)
        value = self._call_step(p)
        notes = []
        whence = f"the value {self.step.__name__} returns"
        if not _is_number(value):
            value, whence = self._own_loss(p)
        read = None
        if value is not None:
            read = match_loss(float(value), y, p.t, "", self.file) or summed_loss(float(value), y, p.t, p.batch, "")
            if read is not None:
                notes.append(f"the loss: {read}, read off {whence}")
        if said is not None and read is not None and said != read:
            raise FcgradError(
                f"{declared['LOSS'][1]}: LOSS = {said!r} but {whence} is the {read} loss; expected the loss it computes"
            )
        loss = read or said
        if loss is None and self.output == "softmax":
            loss = "cross-entropy"
            notes.append(f"the loss: cross-entropy, the one a softmax output implies ({what} ends in a softmax)")
        if loss is None:
            loss = p.loss
            notes.append(
                f"the loss: {loss}, the problem's ({self.step.__name__} returns no loss value, the net has no loss "
                "the audit could call and the file declares no LOSS)"
            )
        self.model_read = Model(tuple(acts), loss, tuple(notes))  # a sigmoid under binary cross-entropy folded
        return self.model_read

    def _own_loss(self, p) -> tuple[float | None, str]:
        """The loss the file computes for the problem's batch at its parameters, by a method of the net or a loss
        object it holds, and where it was read; (None, "") when it has none the audit can call."""
        lay, net = self.layout, self.net
        y = self.forward(p, p.params)
        mine = lay.give("data", np.exp(y) if self.output == "softmax" else y)  # the probabilities it computes
        t = lay.give("data", p.t)
        for name in LOSS_METHODS:
            fn = getattr(net, name, None)
            if inspect.ismethod(fn) and fn is not self.step and not _unknown(fn, 1 if self.how == "pairs" else 2):
                with contextlib.suppress(FcgradError):
                    value = call_step(self.how, fn, p, lay, self.file, [])
                    if _is_number(value) and np.isfinite(float(value)):
                        return float(value), f"{type(net).__name__}.{name}"
        for name in LOSS_OBJECTS:
            obj = getattr(net, name, None)
            fn = getattr(obj, "loss", None) if not callable(obj) or isinstance(obj, type) else obj
            if obj is None or inspect.ismethod(obj) or not callable(fn):
                continue
            for a, b in ((t, mine), (mine, t)):
                with contextlib.suppress(Exception), np.errstate(all="ignore"):
                    value = np.asarray(fn(a, b), dtype=np.float64)
                    total = float(np.sum(value))  # one value per entry, no reduction of its own: their sum
                    if np.isfinite(total):
                        return total, f"{type(net).__name__}.{name}, summed over every entry"
        return None, ""

    def chain(self, p, params=None) -> tuple[float, Seen, list]:
        params = p.params if params is None else params
        y = self.forward(p, params)
        value = loss_value(self.model_read, y, p.t)
        self.set_params(params, p.lr)
        before = [{q: s[q].get() for q in ("w", "b")} for s in self.slots]
        self._call_step(p)
        after = get_slots(self.slots, self.layout, params)
        layers = []
        for s, b0 in zip(self.slots, before):
            a1 = {q: s[q].get() for q in ("w", "b")}
            values = {"grad_w": read_back(b0["w"], a1["w"], p.lr), "grad_b": read_back(b0["b"], a1["b"], p.lr)}
            layers.append(LayerSeen(values, all(np.array_equal(b0[q], a1[q]) for q in ("w", "b"))))
        return value, Seen(FED_OWN, None, layers), after

    def stepper(self, p):
        return chain_stepper(self, p)


def created_by_training(net, layout, sizes: tuple[int, ...], lr: float, file: str):
    """A net whose training makes its parameters (``fit`` sizing them from the data): one step of it on a problem
    of ``sizes`` makes them; then every method that made them (one whose name says it initialises) keeps them as
    they are, so that each step starts from the parameters the audit sets. (slots, form), or None."""
    how, step = find_step(net)
    if how is None:
        return None
    said: list[str] = []
    for name in ITERATION_ATTRS:
        if isinstance(getattr(net, name, None), int) and not isinstance(getattr(net, name), bool):
            setattr(net, name, 1)
            said.append(f"{type(net).__name__}.{name}: 1, one step each time the audit calls {step.__name__}")
    for obj, name in lr_attributes(net):
        setattr(obj, name, lr)
    from fcgrad.engine.problems import random_problem  # noqa: PLC0415

    p = random_problem(list(sizes), batch=8, seed=0).with_options(lr=lr)
    with np.errstate(all="ignore"):
        call_step(how, step, p, layout, file, [])
    found = find_slots(net)
    if found is None:
        return None
    kept = [
        name
        for name, fn in inspect.getmembers(type(net), inspect.isfunction)
        if "init" in name.lower() and not name.startswith("__")
    ]
    for name in kept:
        setattr(net, name, lambda *args, **kwargs: None)
    if kept:
        said.append(
            f"the parameters {step.__name__} makes ({', '.join(f'{type(net).__name__}.{k}' for k in kept)}): made "
            "once, then kept, so that each step starts from the problem's"
        )
    net.__dict__.setdefault("_fcgrad_said", []).extend(said)
    return found


def _unknown(fn, data: int) -> list[str]:
    """The arguments ``fn`` needs after its ``data`` ones that the audit has no value for."""
    known = (*LR_NAMES, *EPOCH_NAMES, *BATCH_NAMES, *QUIET_NAMES, *REG_NAMES, *TRAIN_SIZE_NAMES)
    return [q for q in required(fn)[data:] if q not in known]


def _extras(fn, data: int, p, said: list[str]) -> dict:
    """Keyword arguments for every parameter of ``fn`` after its ``data`` ones that the audit has a value for."""
    defaults = {k: v.default for k, v in inspect.signature(fn).parameters.items()}
    out = {}
    for q in parameters(fn)[data:]:
        if q in LR_NAMES:
            out[q] = p.lr
        elif q in EPOCH_NAMES:
            out[q] = 1
        elif q in BATCH_NAMES:
            out[q] = p.batch
        elif q in QUIET_NAMES:
            out[q] = False
        elif q in TRAIN_SIZE_NAMES:
            out[q] = p.batch
            _say(said, f"{fn.__name__}'s {q}: N = {p.batch}, the size of the audit's training set")
        elif q in REG_NAMES:
            out[q] = 0.0
            if defaults.get(q) is inspect.Parameter.empty or defaults.get(q):
                _say(said, f"{fn.__name__}'s {q}: 0, no regularisation (the library's losses carry none)")
    return out


def _say(said: list[str], words: str) -> None:
    if words not in said:
        said.append(words)


def call_step(how: str, fn, p, layout, file: str, said: list[str]):
    """One step of the file's own training call, each argument by its name: the data (pairs of columns for
    ``update_mini_batch``), the learning rate, one epoch over one batch of all N, no printing, no regularisation."""
    lay = layout
    if how == "pairs":
        pairs = [(lay.give("data", p.x[:, [k]]), lay.give("data", p.t[:, [k]])) for k in range(p.batch)]
        if lay.samples == "rows":
            pairs = [(a.reshape(-1), b.reshape(-1)) for a, b in pairs]
        args = [pairs]
    else:
        args = [lay.give("data", p.x), lay.give("data", p.t)]
    return call(fn.__name__, fn, *args, filename=file, **_extras(fn, len(args), p, said))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) or (
        isinstance(value, np.ndarray) and value.size == 1
    )


def build_train_step(net, slots, layout, file: str) -> tuple[TrainStepNet | None, str | None]:
    how, step = find_step(net)
    if how is None:
        return None, step
    forward = find_forward(net)
    if forward is None:
        return None, "no forward(X) (or predict, feedforward) to read its activations from"
    if inspect.ismethod(step) and step.__func__ is getattr(forward, "__func__", None):
        return None, "its step and its forward are one method"
    return TrainStepNet(file, net, slots, how, step, forward, layout), None
