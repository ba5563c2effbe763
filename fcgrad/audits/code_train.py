"""The train-step protocol: a network class whose one method runs a whole training step.

Recognised, in this order: ``train_step(X, T)`` (also ``training_step``, ``train_on_batch``, ``train_batch``,
``step(X, T)``); ``fit(X, T, epochs)`` or ``train(X, T, epochs)`` run for one epoch (also ``iterations``,
``num_iterations``, ``n_epochs``, ``n_iter``, ``steps``), the whole batch at once; ``update_mini_batch(batch,
eta)``, the textbook's, with the batch as a list of ``(x, t)`` pairs, one sample each. The learning rate is
passed where the method takes one (``lr``, ``learning_rate``, ``eta``, ``alpha``), else set on the attribute
of that name of the net or its layers. The parameters are found by ``fcgrad.audits.code_params``; the
gradients are read back from the step, ``(before − after) / lr``; the activations from the net's
``forward`` (``predict``, ``feedforward``, ``__call__``) on the whole batch, the loss from the number the step
returns (or the file's ``LOSS``, or the problem's). Only the gradients are exposed, so a mistake is located
at the first wrong one in backward order.
"""

import inspect

import numpy as np

from fcgrad.audits.code_model import Model, declared_activations, declared_loss, match_loss, whole_forward
from fcgrad.audits.code_params import (
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
from fcgrad.audits.code_seen import FED_OWN, LayerSeen, Seen, chain_stepper, read_back
from fcgrad.engine.user_code import call, definition
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.losses import LOSSES

STEP_NAMES = ("train_step", "training_step", "train_on_batch", "train_batch", "step")
FIT_NAMES = ("fit", "train")
PAIRS_NAMES = ("update_mini_batch",)
EPOCH_NAMES = ("epochs", "n_epochs", "num_epochs", "iterations", "num_iterations", "n_iter", "steps", "epoch")
BATCH_NAMES = ("batch_size", "mini_batch_size")
QUIET_NAMES = ("verbose", "print_cost", "print_loss", "show")
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
            if not any(p in EPOCH_NAMES for p in parameters(fn)):
                return None, (
                    f"{name}(...) takes no number of epochs ({', '.join(parameters(fn))}); expected one of "
                    f"{', '.join(EPOCH_NAMES[:4])} to run it for one step"
                )
            return "fit", fn
    for name in PAIRS_NAMES:
        fn = getattr(net, name, None)
        if callable(fn) and len(required(fn)) == 2:
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
        self.loss = None
        self.notes: list[str] = []  # the file's own learning rate, when the audit replaces it

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
            note_own_lr(self.notes, getattr(obj, name), lr, f"{type(obj).__name__}.{name}")
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
        return out

    def _call_step(self, p):
        lay = self.layout
        x, t = lay.give("data", p.x), lay.give("data", p.t)
        fn, name = self.step, self.step.__name__
        lr_name = lr_argument(fn)
        if self.how == "pairs":
            pairs = [(lay.give("data", p.x[:, [k]]), lay.give("data", p.t[:, [k]])) for k in range(p.batch)]
            if lay.samples == "rows":
                pairs = [(a.reshape(-1), b.reshape(-1)) for a, b in pairs]
            return call(name, fn, pairs, p.lr, filename=self.file)
        kwargs = {lr_name: p.lr} if lr_name and lr_name not in required(fn)[:2] else {}
        if self.how == "fit":
            for q in parameters(fn):
                if q in EPOCH_NAMES:
                    kwargs[q] = 1
                elif q in BATCH_NAMES:
                    kwargs[q] = p.batch
                elif q in QUIET_NAMES:
                    kwargs[q] = False
        args = [x, t]
        if lr_name and lr_name in required(fn)[2:]:
            args.append(p.lr)
            kwargs.pop(lr_name, None)
        return call(name, fn, *args, filename=self.file, **kwargs)

    def model(self, p, declared: dict) -> Model:
        acts_said = declared_activations(*declared.get("ACTIVATIONS", (None, "")), len(p.params))
        what = f"{self.forward_fn.__name__}(X)"
        acts = whole_forward(lambda params: self.forward(p, params), p, what, self.file, acts_said)
        said = declared_loss(*declared.get("LOSS", (None, "")))
        y = self.forward(p, p.params)
        self.set_params(p.params, p.lr)
        value = self._call_step(p)
        notes = ()
        read = match_loss(float(value), y, p.t, "", self.file) if _is_number(value) else None
        if said is not None and read is not None and said != read:
            raise FcgradError(
                f"{declared['LOSS'][1]}: LOSS = {said!r} but {self.step.__name__} returns the {read} "
                "loss; expected the loss it computes"
            )
        loss = read or said
        if loss is None:
            loss = p.loss
            notes = (
                f"the loss: {loss}, the problem's ({self.step.__name__} returns no loss value and the file "
                "declares no LOSS)",
            )
        self.loss = loss
        return Model(acts, loss, notes)

    def chain(self, p, params=None) -> tuple[float, Seen, list]:
        params = p.params if params is None else params
        y = self.forward(p, params)
        value = float(LOSSES[self.loss].forward(y, p.t))
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
