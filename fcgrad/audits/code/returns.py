"""A network class whose loss method returns its gradients: ``loss(X, y=None, reg) -> (loss, grads)``.

The courses' classifier keeps its parameters in a dict (``net.params`` of ``W1``, ``b1``, ...; any form
``fcgrad.audits.code.params`` finds) and computes, in one method (``loss``, ``loss_and_grads``,
``compute_loss``, ``forward_backward``), the class scores when no targets are given, else the loss and a dict of
gradients keyed as the parameters are (``W1`` or ``dW1``). The audit runs that method as written: the targets
one-hot, or as integer labels where the file indexes them (tried when one-hot fails, said in the notes); a
regularisation strength (``reg``, ``lmbda``, ...) 0, said; the activations read off the scores, the loss off
the value it returns. The gradients are the ones it returns, applied by the audit as plain gradient descent;
its own ``train`` loop is not run. Where the file declares no layout, the parameters' shapes say it: w (in, out)
or (out, in) from the first w and its bias, samples by row when that bias is (n,) or (1, n).
"""

import numpy as np

from fcgrad.audits.code.layout import kind_of
from fcgrad.audits.code.model import Model, declared_activations, declared_loss, match_loss, whole_forward
from fcgrad.audits.code.params import REG_NAMES, find_slots, parameters, required, set_slots, slots_sizes
from fcgrad.audits.code.seen import FED_OWN, LayerSeen, Seen, chain_stepper
from fcgrad.engine.user_code import call, definition
from fcgrad.manual.errors import FcgradError

METHOD_NAMES = ("loss", "loss_and_grads", "loss_and_gradients", "compute_loss", "forward_backward")
TARGET_NAMES = ("y", "Y", "t", "T", "targets", "labels", "y_true")


def _method(net):
    """The loss method: one of METHOD_NAMES taking X and targets that may be left out (it then gives the scores)."""
    for name in METHOD_NAMES:
        fn = getattr(net, name, None)
        if not callable(fn) or isinstance(fn, type):
            continue
        names = parameters(fn)
        target = next((n for n in names if n in TARGET_NAMES), None)
        if target is not None and len(required(fn)) == 1 and names.index(target) == 1:
            return fn, target
    return None, None


def _key(slot) -> str:
    last = slot.path[-1]
    return str(last[0] if isinstance(last, list) else last)


class ReturnsNet:
    protocol = "loss_grads"

    def __init__(self, file: str, net, slots, method, target: str, layout):
        self.file, self.net, self.slots, self.method, self.target = file, net, slots, method, target
        self.where = definition(method) or definition(type(net)) or file
        self.layout = layout_of_arrays(slots[0]["w"].get(), slots[0]["b"].get(), layout)
        self.layout_from = None if self.layout == layout else f"the arrays in {slots[0]['w'].words} and its bias"
        self.labels = False  # the targets go in as integer labels
        self.notes: list[str] = []
        self.extra = {n: 0.0 for n in parameters(method) if n in REG_NAMES}
        for n in self.extra:
            default = _default(method, n)
            self.notes.append(f"{method.__name__}'s {n} (the regularisation strength; its default {default}) set to 0")

    @property
    def sizes(self) -> tuple[int, ...]:
        return slots_sizes(self.slots, self.layout, self.where)

    def _targets(self, t: np.ndarray):
        if self.labels:
            return np.argmax(t, axis=0)  # (N,) one class per sample
        return self.layout.give("data", t)

    def _run(self, params, p, t=None):
        set_slots(self.slots, params, self.layout)
        kwargs = dict(self.extra)
        if t is not None:
            kwargs[self.target] = self._targets(t)
        return call(self.method.__name__, self.method, self.layout.give("data", p.x), filename=self.file, **kwargs)

    def _scores(self, params, p) -> np.ndarray:
        y = self._run(params, p)
        out = self.layout.read("data", np.asarray(y, dtype=np.float64), p.t.shape)
        if out is None:
            raise FcgradError(
                f"{self.where}: {self.method.__name__}(X) returned {np.shape(y)}; expected the scores "
                f"{self.layout.shape('data', p.t.shape)}"
            )
        return out

    def _with_targets(self, params, p):
        """(loss, grads) of the method with the problem's targets: one-hot, else (on an error) integer labels."""
        try:
            return self._run(params, p, p.t)
        except FcgradError:
            if self.labels:
                raise
            self.labels = True
            try:
                out = self._run(params, p, p.t)
            except FcgradError:
                self.labels = False
                raise
            self.notes.append(
                f"the targets given to {self.method.__name__} as integer labels (N,): one-hot ones failed there"
            )
            return out

    def model(self, p, declared: dict) -> Model:
        acts_said = declared_activations(*declared.get("ACTIVATIONS", (None, "")), len(p.params))
        what = f"{self.method.__name__}(X)"
        acts = whole_forward(lambda params: self._scores(params, p), p, what, self.file, acts_said)
        said = declared_loss(*declared.get("LOSS", (None, "")))
        out = self._with_targets(p.params, p)
        value = _loss_of(out, self.where, self.method.__name__)
        y = self._scores(p.params, p)
        t = np.eye(p.t.shape[0])[:, np.argmax(p.t, axis=0)] if self.labels else p.t  # what the file was given
        read = match_loss(value, y, t, "", self.file)
        if said is not None and read is not None and said != read:
            raise FcgradError(
                f"{declared['LOSS'][1]}: LOSS = {said!r} but {self.method.__name__} returns the {read} loss; "
                "expected the loss it computes"
            )
        loss = read or said or p.loss
        notes = () if (read or said) else (f"the loss: {loss}, the problem's (no loss value matched, no LOSS)",)
        return Model(acts, loss, notes)

    def chain(self, p, params=None) -> tuple[float, Seen, list]:
        params = p.params if params is None else params
        if self.labels and not np.array_equal(p.t, np.eye(p.t.shape[0])[:, np.argmax(p.t, axis=0)]):
            raise FcgradError(f"{self.where}: the file takes integer labels; expected a problem of one-hot classes")
        out = self._with_targets(params, p)
        value = _loss_of(out, self.where, self.method.__name__)
        grads = out[1]
        layers, new = [], []
        for s, old in zip(self.slots, params):
            values, layer = {}, {}
            for q, g in (("w", "grad_w"), ("b", "grad_b")):
                key = _key(s[q])
                got = grads.get(key, grads.get(f"d{key}")) if isinstance(grads, dict) else None
                if got is None:
                    raise FcgradError(
                        f"{self.where}: {self.method.__name__}'s gradients: expected {key!r} (or 'd{key}') for "
                        f"{s[q].words}, got {sorted(grads) if isinstance(grads, dict) else type(grads).__name__}"
                    )
                values[g] = np.asarray(got, dtype=np.float64)
                read = self.layout.read(kind_of(q), values[g], old[q].shape)
                grad = np.full(old[q].shape, np.nan) if read is None else read  # another shape: cannot be applied
                layer[q] = old[q] - p.lr * grad
            layers.append(LayerSeen(values))
            new.append(layer)
        return value, Seen(FED_OWN, None, layers), new

    def stepper(self, p):
        return chain_stepper(self, p)


def _loss_of(out, where: str, name: str) -> float:
    if not isinstance(out, tuple) or len(out) != 2 or np.size(out[0]) != 1:
        raise FcgradError(f"{where}: {name}(X, y) returned {type(out).__name__}; expected (loss, grads)")
    return float(np.asarray(out[0]))


def _default(fn, name: str):
    import inspect  # noqa: PLC0415

    return inspect.signature(fn).parameters[name].default


def layout_of_arrays(w: np.ndarray, b: np.ndarray, layout):
    """The layout a first w and its bias show: w (in, out) when the bias has w's second width, (out, in) when
    its first; samples by row for a bias (n,) or (1, n). ``layout`` where they cannot tell (a square w)."""
    if w.ndim != 2 or w.shape[0] == w.shape[1] or b.size not in w.shape:
        return layout
    weights = "in,out" if b.size == w.shape[1] else "out,in"
    samples = "columns" if b.shape == (b.size, 1) and b.size > 1 else ("rows" if b.size > 1 else layout.samples)
    return type(layout)(weights, samples)


def build_returns(net, layout, file: str) -> ReturnsNet | None:
    """The driver of a net whose loss method returns (loss, grads), or None when the net is not one."""
    method, target = _method(net)
    found = find_slots(net) if method is not None else None
    if found is None:
        return None
    return ReturnsNet(file, net, found[0], method, target, layout)
