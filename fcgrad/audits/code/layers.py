"""The layered class protocols: a net of layers with ``forward(x)`` and ``backward(residual)``, and a loss.

**classes** (the blog's shape): each layer's ``backward`` updates its w and b with its learning rate and
returns the residual for the layer below. **store-then-update**: ``backward`` stores the gradients and
returns the residual; an ``update``/``step`` (taking the learning rate, or reading it from an attribute) of
the layers or of the net applies them, after a ``zero_grad()`` when there is one. Either way the gradients
are read back from the update: ``grad = (before − after) / lr``.

A layer may come in two modules, PyTorch's way: one with w and b, then parameter-free modules (its
activation) whose backward turns ∂L/∂y into ∂L/∂z, which is then the layer's residual_z. In one module,
the backward's local variable ``residual_z`` (or ``dz``, ``dZ``, ``delta``) is read as it returns.
The loss is ``net.loss`` (or ``criterion``, ``loss_fn``, ``cost``), or the one module whose forward takes
``(y, t)``; its backward takes nothing (it kept y and t) or ``(y, t)``.

Both sides: every layer fed the file's own residual from above (end to end), and each layer alone fed
JAX's upstream, so that a mistake is seen where it originates.
"""

import copy
import sys
from dataclasses import dataclass

import numpy as np

from fcgrad.audits.code import own
from fcgrad.audits.code.model import Model, declared_loss, match_activation, match_loss
from fcgrad.audits.code.params import (
    LR_NAMES,
    Slot,
    get_slots,
    has_params,
    is_module,
    layer_slots,
    lr_argument,
    lr_attributes,
    module_list,
    note_own_lr,
    required,
    set_slots,
    slots_sizes,
)
from fcgrad.audits.code.seen import FED_JAX, FED_OWN, LayerSeen, Seen, read_back
from fcgrad.engine.user_code import call, definition
from fcgrad.manual.errors import FcgradError

UPDATE_NAMES = ("update", "step", "update_params", "update_parameters", "apply_gradients", "sgd_step")
LOSS_NAMES = ("loss", "criterion", "loss_fn", "cost", "loss_layer")
RESIDUAL_Z_NAMES = ("residual_z", "dz", "dZ", "delta")


class _LocalCatcher:
    """Reads a local variable of a function as the function returns (``sys.setprofile``, this thread only)."""

    def __init__(self, fn, names: tuple[str, ...]):
        self.code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        self.names, self.value = names, None

    def _profile(self, frame, event, arg):
        if event == "return" and frame.f_code is self.code:
            found = [frame.f_locals[n] for n in self.names if isinstance(frame.f_locals.get(n), np.ndarray)]
            self.value = found[0] if found else None

    def __enter__(self):
        self._previous = sys.getprofile()
        if self.code is not None:
            sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._previous)
        return False


@dataclass
class Layer:
    linear: object  # the module with w and b
    acts: list  # parameter-free modules after it (its activation); empty when the activation is inside
    slots: dict[str, Slot]


def _updater(obj):
    for name in UPDATE_NAMES:
        fn = getattr(obj, name, None)
        if callable(fn) and len(required(fn)) <= 1:
            return fn
    return None


def _is_loss(obj) -> bool:
    return is_module(obj) and len(required(obj.forward)) == 2 and not has_params(obj)


def find_loss(net):
    for name in LOSS_NAMES:
        obj = getattr(net, name, None)
        if is_module(obj) and not has_params(obj):
            return obj
    found = [v for v in vars(net).values() if _is_loss(v)]
    return found[0] if len(found) == 1 else None


def find_layers(net, loss) -> tuple[list[Layer], str | None]:
    """The layers in forward order, or ([], why not)."""
    modules, words = module_list(net)
    modules = [m for m in modules if m is not loss and not _is_loss(m)]
    layers: list[Layer] = []
    for i, m in enumerate(modules):
        if has_params(m):
            if not is_module(m):
                return [], f"{words}[{i}] has w and b but no forward(x) and backward(residual)"
            layers.append(Layer(m, [], layer_slots(m, f"{words.split('/')[0]}[{i}]")))
        elif is_module(m):
            if not layers:
                return [], f"{words}[{i}] (no w, b) comes before any layer with w and b"
            layers[-1].acts.append(m)
    return layers, None if layers else "no layers with w, b, forward(x) and backward(residual)"


class LayeredNet:
    def __init__(self, file: str, net, layers: list[Layer], loss, layout):
        self.file, self.net, self.layers, self.loss, self.layout = file, net, layers, loss, layout
        self.where = definition(type(net)) or file
        self.layer_updates = [_updater(layer.linear) for layer in layers]
        self.net_update = _updater(net) if not all(self.layer_updates) else None
        self.stores = all(self.layer_updates) or self.net_update is not None
        self.protocol = "store-then-update" if self.stores else "classes"
        self.zero_grads = [z for z in (getattr(net, "zero_grad", None),) if callable(z)]
        self.zero_grads += [la.linear.zero_grad for la in layers if callable(getattr(la.linear, "zero_grad", None))]
        self.lr = 1.0
        self.notes: list[str] = []  # the file's own learning rate, when the audit replaces it
        self.no_lr: dict[int, FcgradError] = {}  # layers with no learning rate to set

    @property
    def sizes(self) -> tuple[int, ...]:
        return slots_sizes([layer.slots for layer in self.layers], self.layout, self.where)

    # ---- parameters and learning rate ----

    def set_params(self, params, lr: float) -> None:
        set_slots([layer.slots for layer in self.layers], params, self.layout)
        self.lr = lr
        for i, layer in enumerate(self.layers):
            fn = (self.layer_updates[i] or self.net_update) if self.stores else layer.linear.backward
            if self.stores and (lr_argument(fn) or required(fn)):
                continue  # the update takes the learning rate
            found = lr_attributes(layer.linear, self.net)
            if not found:  # an error only if w or b then change: a backward that never updates needs no lr
                self.no_lr[i] = FcgradError(
                    f"{definition(fn) or self.file}: layer {i} ({type(layer.linear).__name__}) has no lr; expected "
                    f"the learning rate that {fn.__name__}() applies w and b with: an attribute lr, learning_rate, "
                    "eta or alpha" + (", or an argument of the update" if self.stores else "")
                )
            for obj, name in found:
                note_own_lr(self.notes, getattr(obj, name), lr, f"{type(obj).__name__}.{name}")
                setattr(obj, name, lr)

    def params(self, like) -> list[dict[str, np.ndarray]]:
        return get_slots([layer.slots for layer in self.layers], self.layout, like)

    # ---- the forward and the loss, in the user's layout ----

    def _array(self, value, what: str) -> np.ndarray:
        if value is None:
            raise FcgradError(f"{self.file}: {what} returned None; expected an array")
        return np.asarray(value, dtype=np.float64)

    def forward_one(self, i: int, x: np.ndarray) -> np.ndarray:
        layer = self.layers[i]
        y = self._array(
            call(f"layer {i} forward", layer.linear.forward, x.copy(), filename=self.file), f"layer {i} forward"
        )
        for act in layer.acts:
            y = self._array(
                call(f"layer {i} activation forward", act.forward, y, filename=self.file),
                f"layer {i} activation forward",
            )
        return y

    def forward(self, x: np.ndarray) -> np.ndarray:
        for i in range(len(self.layers)):
            x = self.forward_one(i, x)
        return x

    def loss_forward(self, y, t) -> float:
        self._yt = (y, t)
        return float(call("loss forward", self.loss.forward, y.copy(), t.copy(), filename=self.file))

    def loss_backward(self) -> np.ndarray:
        args = [a.copy() for a in self._yt] if len(required(self.loss.backward)) == 2 else []
        return self._array(call("loss backward", self.loss.backward, *args, filename=self.file), "loss backward")

    def model(self, p, declared: dict) -> Model:
        """Each layer's activation and the loss, read off the file's forward at the problem's parameters."""
        lay = self.layout
        self.set_params(p.params, p.lr)
        acts, x = [], p.x
        for i, lp in enumerate(p.params):
            y = lay.read("data", self.forward_one(i, lay.give("data", x)), (lp["w"].shape[1], p.batch))
            if y is None:
                raise FcgradError(f"{self.file}: layer {i} forward: expected an output {lay.words('data')}")
            z = lp["w"].T @ x + lp["b"]  # (out, in)·(in, N) + (out, 1) -> (out, N)
            what = f"layer {i} forward f(wᵀx + b)"
            try:
                acts.append(match_activation(y, z, what, self.file))
            except FcgradError:
                if not self._offer_own(i):
                    raise
                acts.append(match_activation(y, z, what, self.file))
            x = y
        value = self.loss_forward(lay.give("data", x), lay.give("data", p.t))
        loss = match_loss(value, x, p.t, "the loss", self.file)
        if loss is None and own.current() is not None:  # the loss object's own forward, where the library has none
            where = definition(type(self.loss)) or self.file
            own.current().offer_loss(type(self.loss).__name__, copy.deepcopy(self.loss).forward, where)
            loss = match_loss(value, x, p.t, "the loss", self.file)
        if loss is None:
            raise FcgradError(
                f"{self.file}: the loss forward(y, t) matches none of the library's losses, and the audit could not "
                "take it as the file's own (a plain formula of (y, t) giving one number); expected one or the other"
            )
        said = declared_loss(*declared.get("LOSS", (None, "")))
        if said is not None and said != loss:
            raise FcgradError(
                f"{declared['LOSS'][1]}: LOSS = {said!r} but the file's loss computes {loss}; "
                "expected the loss it computes"
            )
        return Model(tuple(acts), loss)

    def _offer_own(self, i: int) -> bool:
        """Layer ``i``'s activation object offered as an activation of the file's own (its ``forward`` on a copy,
        so that the file's own objects keep their state), where the library has none like it; whether one joined."""
        current = own.current()
        if current is None or len(self.layers[i].acts) != 1:
            return False
        act = self.layers[i].acts[0]
        where = definition(type(act)) or self.file
        return current.add(type(act).__name__, own.Applied(copy.deepcopy(act).forward), where) is not None

    # ---- backward ----

    def _zero(self) -> None:
        for fn in self.zero_grads:
            call("zero_grad", fn, filename=self.file)

    def _backward(self, i: int, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Layer ``i``'s backward fed ``residual`` (user layout): (what it returns, its residual_z or None)."""
        layer = self.layers[i]
        r = residual.copy()
        for act in reversed(layer.acts):
            r = self._array(
                call(f"layer {i} activation backward", act.backward, r, filename=self.file),
                f"layer {i} activation backward",
            )
        with _LocalCatcher(layer.linear.backward, RESIDUAL_Z_NAMES) as caught:
            try:
                out = call(f"layer {i} backward", layer.linear.backward, r.copy(), filename=self.file)
            except FcgradError as exc:  # reading an lr it does not have: said as the missing lr it is
                cause = exc.__cause__
                if i in self.no_lr and isinstance(cause, AttributeError) and cause.name in LR_NAMES:
                    raise self.no_lr[i] from None
                raise
        rz = r if layer.acts else caught.value
        return self._array(out, f"layer {i} backward"), None if rz is None else np.array(rz, dtype=np.float64)

    def _update(self, layers) -> None:
        if not self.stores:
            return
        targets = [self.layer_updates[i] for i in layers] if all(self.layer_updates) else [self.net_update]
        for fn in targets:
            args = [self.lr] if (lr_argument(fn) or required(fn)) else []
            call(f"{fn.__name__}", fn, *args, filename=self.file)

    def _seen(self, i: int, before, out, rz) -> LayerSeen:
        after = {q: s.get() for q, s in self.layers[i].slots.items()}
        for q in ("w", "b"):
            if after[q].shape != before[q].shape:
                raise FcgradError(
                    f"{definition(type(self.layers[i].linear)) or self.file}: layer {i} changed the shape "
                    f"of {q} {before[q].shape} -> {after[q].shape}; expected updates in place"
                )
        values = {
            "grad_w": read_back(before["w"], after["w"], self.lr),
            "grad_b": read_back(before["b"], after["b"], self.lr),
            "residual_x": out,
        }
        if rz is not None:
            values["residual_z"] = rz
        unchanged = all(np.array_equal(before[q], after[q]) for q in ("w", "b"))
        if not unchanged and i in self.no_lr:
            raise self.no_lr[i]
        return LayerSeen(values, unchanged)

    def chain(self, p, params=None) -> tuple[float, Seen]:
        """One step as the file runs it from ``params`` (default the problem's): forward, loss, each backward
        top down, then its update."""
        lay = self.layout
        self.set_params(p.params if params is None else params, p.lr)
        value = self.loss_forward(self.forward(lay.give("data", p.x)), lay.give("data", p.t))
        residual_y = self.loss_backward()
        before = [{q: s.get() for q, s in layer.slots.items()} for layer in self.layers]
        self._zero()
        r, outs = residual_y, {}
        for i in range(len(self.layers) - 1, -1, -1):
            outs[i] = self._backward(i, r)
            r = outs[i][0]
        self._update(range(len(self.layers)))
        layers = [self._seen(i, before[i], *outs[i]) for i in range(len(self.layers))]
        return value, Seen(FED_OWN, residual_y, layers)

    def fed(self, p, upstreams: list[np.ndarray], residual_y) -> Seen:
        """Each layer alone, fed ``upstreams[i]`` (the blog's layout) at the problem's parameters."""
        layers = []
        for i in range(len(self.layers)):
            self.set_params(p.params, p.lr)
            self.forward(self.layout.give("data", p.x))
            before = {q: s.get() for q, s in self.layers[i].slots.items()}
            self._zero()
            out = self._backward(i, self.layout.give("data", upstreams[i]))
            self._update([i])
            layers.append(self._seen(i, before, *out))
        return Seen(FED_JAX, residual_y, layers)

    def stepper(self, p):
        """``params -> (loss at params, params after one of the file's own steps)``, for the drift."""

        def run(params):
            value, _ = self.chain(p, params)
            return value, self.params(params)

        return run


def build_layered(net, layout, file: str) -> tuple[LayeredNet | None, str | None]:
    """The layered protocol of ``net``, or (None, what is missing)."""
    loss = find_loss(net)
    layers, why = find_layers(net, loss)
    if why:
        return None, why
    if loss is None:
        return None, "no loss (net.loss with forward(y, t) and backward())"
    return LayeredNet(file, net, layers, loss, layout), None
