"""Loading a user's network file and driving it through one of two documented protocols.

**Classes** (the blog's shape). The file defines ``Net``, constructible with no arguments, whose
instance holds
- its layers in forward order: a list ``net.layers``, or else its attributes that have ``w``,
  ``b``, ``forward`` and ``backward``, in the order ``__init__`` sets them (``fc1``, ``fc2``);
- a loss: ``net.loss``, or else the one attribute with ``forward`` and ``backward`` and no ``w``.
A layer has ``w`` (in, out), ``b`` (out, 1), ``lr``, ``forward(x) -> y`` and ``backward(residual)``,
which updates ``w`` and ``b`` with ``lr`` (the gradients are read back from that update:
``grad = (before − after) / lr``) and returns the residual for the layer below. The loss has
``forward(y, t) -> L`` and ``backward() -> ∂L/∂y``.

**A step function**, for any other shape: ``step(params, X, T, lr)`` returning ``(loss, new_params)``
or ``(loss, new_params, residuals)``, with params ``[{"w": (in, out), "b": (out, 1)}, ...]`` and
residuals an optional dict of ``"residual_y"`` (out, N) and lists ``"residual_x"`` / ``"residual_z"``
with one array per layer. The file may set ``ACTIVATIONS`` (one name per layer) and ``LOSS``;
the default is the problem's.

Every call into the file goes through ``fcgrad.engine.user_code.call``: an exception there becomes
one ``FcgradError`` line naming the user's file and line.
"""

import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fcgrad.engine.user_code import call, user_error
from fcgrad.manual.errors import FcgradError


def load_module(path: str):
    """Execute the user's file as a fresh module; its own syntax or import errors name its line."""
    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        raise FcgradError(f"--code: expected an existing .py file, got {path!r}")
    name = f"fcgrad_user_code_{abs(hash(file.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # for dataclasses and the like inside the file
    state = np.random.get_state()
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # SyntaxError, ImportError, anything at the file's top level
        raise user_error(f"loading {file.name}", exc, str(file)) from exc
    finally:
        sys.modules.pop(name, None)
        np.random.set_state(state)
    return module


class LayerOut(NamedTuple):
    grad_w: np.ndarray  # (in, out), read from the update
    grad_b: np.ndarray  # (out, 1), read from the update
    residual_x: np.ndarray  # (in, N), what the backward returned
    residual_z: np.ndarray | None  # (out, N), the backward's local of that name, when it has one


class _LocalCatcher:
    """Reads one local variable of a function as the function returns (``sys.setprofile``, this thread only)."""

    def __init__(self, fn, name: str):
        self.code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        self.name, self.value = name, None

    def _profile(self, frame, event, arg):
        if event == "return" and frame.f_code is self.code:
            self.value = frame.f_locals.get(self.name)

    def __enter__(self):
        self._previous = sys.getprofile()
        if self.code is not None:
            sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._previous)
        return False


def _defined_at(obj) -> str:
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (OSError, TypeError):
        return "<unknown>"


def _is_layer(obj) -> bool:
    return all(hasattr(obj, a) for a in ("w", "b", "forward", "backward"))


def _is_loss(obj) -> bool:
    return callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None)) and not _is_layer(obj)


@dataclass
class ClassNet:
    """A user's ``Net`` instance and where its layers and loss are."""

    file: str
    net: object
    layers: list
    loss: object

    @property
    def sizes(self) -> tuple[int, ...]:
        shapes = [np.shape(layer.w) for layer in self.layers]
        return (shapes[0][0], *[s[1] for s in shapes])

    def set_params(self, params, lr: float) -> None:
        """Copies of ``params`` into the layers (the user's backward may update them in place)."""
        for i, (layer, p) in enumerate(zip(self.layers, params)):
            for key in ("w", "b"):
                mine = np.shape(getattr(layer, key))
                if mine != p[key].shape:
                    raise FcgradError(
                        f"{_defined_at(type(layer))}: layer {i} {key} has shape {mine}, expected {p[key].shape} "
                        f"(the problem's {'-'.join(map(str, self.sizes))} network, {key} as (in, out) / (out, 1))"
                    )
                setattr(layer, key, np.array(p[key], dtype=np.float64))
            if not hasattr(layer, "lr"):
                raise FcgradError(f"{_defined_at(type(layer))}: layer {i} has no lr; expected the learning rate its "
                                  "backward updates w and b with")  # fmt: skip
            layer.lr = lr

    def params(self) -> list[dict[str, np.ndarray]]:
        return [{"w": np.array(layer.w, dtype=np.float64), "b": np.array(layer.b, dtype=np.float64)}
                for layer in self.layers]  # fmt: skip

    def forward_one(self, i: int, x: np.ndarray) -> np.ndarray:
        out = call(f"layer {i} forward", self.layers[i].forward, x.copy(), filename=self.file)
        return self._array(out, f"layer {i} forward")

    def forward(self, x: np.ndarray) -> np.ndarray:
        for i in range(len(self.layers)):
            x = self.forward_one(i, x)
        return x

    def loss_forward(self, y, t) -> float:
        return float(call("loss forward", self.loss.forward, y.copy(), t.copy(), filename=self.file))

    def loss_backward(self) -> np.ndarray:
        return self._array(call("loss backward", self.loss.backward, filename=self.file), "loss backward")

    def layer_backward(self, i: int, residual: np.ndarray) -> "LayerOut":
        """Layer ``i``'s backward fed ``residual``: grads read from its update, and its local ``residual_z`` if any."""
        layer = self.layers[i]
        w0, b0 = np.array(layer.w, dtype=np.float64), np.array(layer.b, dtype=np.float64)
        with _LocalCatcher(layer.backward, "residual_z") as caught:
            out = call(f"layer {i} backward", layer.backward, residual.copy(), filename=self.file)
        w1, b1 = np.array(layer.w, dtype=np.float64), np.array(layer.b, dtype=np.float64)
        if w1.shape != w0.shape or b1.shape != b0.shape:
            raise FcgradError(
                f"{_defined_at(type(layer))}: layer {i} backward changed the shapes of w {w0.shape} -> {w1.shape}, "
                f"b {b0.shape} -> {b1.shape}; expected updates in place of the same shape"
            )
        rz = caught.value
        rz = np.asarray(rz, dtype=np.float64) if isinstance(rz, np.ndarray) else None
        return LayerOut((w0 - w1) / layer.lr, (b0 - b1) / layer.lr, self._array(out, f"layer {i} backward"), rz)

    def _array(self, value, what: str) -> np.ndarray:
        if value is None:
            raise FcgradError(f"{self.file}: {what} returned None; expected an array")
        return np.asarray(value, dtype=np.float64)

    def step(self, x, t) -> float:
        """One training step as the file's own classes run it: forward, loss, every backward top down."""
        value = self.loss_forward(self.forward(x), t)
        residual = self.loss_backward()
        for i in range(len(self.layers) - 1, -1, -1):
            residual = self.layer_backward(i, residual).residual_x
        return value

    def stepper(self, p):
        """``params -> (loss at params, params after one of the file's own steps)``, for the drift."""

        def run(params):
            self.set_params(params, p.lr)
            value = self.step(p.x, p.t)
            return value, self.params()

        return run


def build_class_net(module, file: str) -> ClassNet:
    """``module.Net()`` and its layers and loss, or a one-line error naming the file and the class."""
    if not hasattr(module, "Net"):
        raise FcgradError(f"{file}: expected a class Net (or a function step(params, X, T, lr)); found neither")
    state = np.random.get_state()
    try:
        net = call("Net()", module.Net, filename=file)
    finally:
        np.random.set_state(state)
    where = _defined_at(module.Net)
    attrs = list(vars(net).values())
    layers = list(getattr(net, "layers", None) or [a for a in attrs if _is_layer(a)])
    if not layers or not all(_is_layer(layer) for layer in layers):
        raise FcgradError(f"{where}: Net has no layers; expected net.layers or attributes with w, b, forward, backward")
    loss = getattr(net, "loss", None)
    if not _is_loss(loss):
        losses = [a for a in attrs if _is_loss(a)]
        if len(losses) != 1:
            raise FcgradError(f"{where}: expected one loss (net.loss with forward(y, t) and backward()), "
                              f"found {len(losses)}")  # fmt: skip
        loss = losses[0]
    return ClassNet(file, net, layers, loss)
