"""The functions protocol: ``forward(params, X) -> (Y, cache)`` and ``backward(params, cache, T) -> gradients``.

``params`` is, as the file declares with ``PARAMS`` (or as its ``init_params(sizes)`` / ``initialize_parameters
(sizes)`` returns): ``"list"`` (the default), one dict per layer ``{"w": ..., "b": ...}`` (the keys as the
file's init writes them: ``W``, ``weight``, ...); or ``"numbered"``, one dict ``{"W1": ..., "b1": ..., "W2": ...}``
(the courses' form). ``forward`` may return Y alone; the cache passed back is then Y.

The gradients come back in the same form: a list of per-layer dicts with ``grad_w`` and ``grad_b`` (or
``dw``/``dW``, ``db``), optionally ``residual_z`` (``dz``/``dZ``) and ``residual_x`` (``dx``/``dA_prev``);
or one dict with ``dW1``, ``db1``, ..., optionally ``dZ1``, ... and ``dA0``, ``dA1``, ... (``dA{l-1}`` is
layer l's residual_x, ``dA{L}`` the output's residual_y). The file's gradients are applied by the audit as
plain gradient descent. The loss is read from the file's ``loss(Y, T)`` (or ``cost``, ``compute_cost``), else
its ``LOSS``, else the problem's; the activations from ``forward``, or its ``ACTIVATIONS``.
"""

import re

import numpy as np

from fcgrad.audits.code_layout import kind_of
from fcgrad.audits.code_model import Model, declared_activations, declared_loss, match_loss, whole_forward
from fcgrad.audits.code_params import required
from fcgrad.audits.code_seen import FED_OWN, LayerSeen, Seen, chain_stepper
from fcgrad.engine.user_code import call, definition
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.losses import LOSSES

FORMS = ("list", "numbered")
INIT_NAMES = ("init_params", "init_parameters", "initialize_parameters", "initialize_parameters_deep", "init")
LOSS_FN_NAMES = ("loss", "cost", "compute_cost", "compute_loss")
ALIASES = {  # the blog's name -> the names a list-form gradient dict may use
    "grad_w": ("grad_w", "dw", "dW", "w", "W", "weight", "weights"),
    "grad_b": ("grad_b", "db", "b", "bias", "biases"),
    "residual_z": ("residual_z", "dz", "dZ", "delta"),
    "residual_x": ("residual_x", "dx", "dX", "dA_prev"),
}
WEIGHT_KEYS = ("w", "W", "weight", "weights")
BIAS_KEYS = ("b", "bias", "biases")


def fits(module) -> bool:
    fw, bw = getattr(module, "forward", None), getattr(module, "backward", None)
    return callable(fw) and callable(bw) and len(required(fw)) == 2 and len(required(bw)) == 3


def _picked(found_in: dict, names: dict) -> dict:
    """``{quantity: array}`` for each quantity one of whose ``names`` is a key of ``found_in`` (the first one)."""
    picked = {}
    for quantity, keys in names.items():
        value = next((found_in[k] for k in keys if k in found_in), None)
        if value is not None:
            picked[quantity] = np.asarray(value, dtype=np.float64)
    return picked


class FunctionsNet:
    protocol = "functions"
    sizes = None  # the parameters are the problem's

    def __init__(self, module, file: str, layout, declared: dict):
        self.module, self.file, self.layout = module, file, layout
        self.form, self.keys = "list", ("w", "b")
        self.declared = declared
        self.loss = None

    def _init_form(self, sizes) -> None:
        said = self.declared.get("PARAMS")
        if said is not None:
            if said[0] not in FORMS:
                raise FcgradError(f"{said[1]}: PARAMS: expected one of {', '.join(FORMS)}, got {said[0]!r}")
            self.form = said[0]
        init = next((getattr(self.module, n) for n in INIT_NAMES if callable(getattr(self.module, n, None))), None)
        if init is None or len(required(init)) != 1:
            return
        state = np.random.get_state()
        try:
            made = call(init.__name__, init, list(sizes), filename=self.file)
        finally:
            np.random.set_state(state)
        if isinstance(made, dict) and said is None:
            self.form = "numbered"
        elif isinstance(made, (list, tuple)) and made and isinstance(made[0], dict):
            w = next((k for k in WEIGHT_KEYS if k in made[0]), "w")
            self.keys = (w, next((k for k in BIAS_KEYS if k in made[0]), "b"))
        first = made.get("W1") if isinstance(made, dict) else (made[0].get(self.keys[0]) if made else None)
        self._check_layout(np.shape(first), sizes, init)

    def _check_layout(self, shape: tuple, sizes, init) -> None:
        """The file's own init makes w in the declared layout, or the declaration to add is named."""
        mine = self.layout.shape("weight", (sizes[0], sizes[1]))
        if len(shape) != 2 or shape == mine or shape != mine[::-1]:
            return
        other = "in,out" if self.layout.weights == "out,in" else "out,in"
        raise FcgradError(
            f"{definition(init) or self.file}: {init.__name__} makes the first w {shape}, that is "
            f'{"(in, out)" if other == "in,out" else "(out, in)"}; declare WEIGHTS = "{other}" in the file '
            "or pass --weights"
        )

    # ---- params in the file's form ----

    def params_for_file(self, params) -> object:
        lay = self.layout
        mine = [(lay.give("weight", p["w"]), lay.give("bias", p["b"])) for p in params]
        if self.form == "numbered":
            out = {}
            for i, (w, b) in enumerate(mine, 1):
                out[f"W{i}"], out[f"b{i}"] = w, b
            return out
        return [{self.keys[0]: w, self.keys[1]: b} for w, b in mine]

    def _forward(self, params, p):
        out = call(
            "forward",
            self.module.forward,
            self.params_for_file(params),
            self.layout.give("data", p.x),
            filename=self.file,
        )
        y, cache = (out[0], out[1]) if isinstance(out, tuple) and len(out) == 2 else (out, out)
        y_blog = self.layout.read("data", np.asarray(y, dtype=np.float64), p.t.shape)
        if y_blog is None:
            raise FcgradError(
                f"{definition(self.module.forward) or self.file}: forward returned Y {np.shape(y)}; "
                f"expected {self.layout.shape('data', p.t.shape)} (and its cache)"
            )
        return y_blog, cache

    def model(self, p, declared: dict) -> Model:
        self._init_form(p.sizes)
        acts_said = declared_activations(*declared.get("ACTIVATIONS", (None, "")), len(p.params))
        acts = whole_forward(lambda params: self._forward(params, p)[0], p, "forward(params, X)", self.file, acts_said)
        said = declared_loss(*declared.get("LOSS", (None, "")))
        fn = next((getattr(self.module, n) for n in LOSS_FN_NAMES if callable(getattr(self.module, n, None))), None)
        read = None
        if fn is not None and len(required(fn)) == 2:
            y = self._forward(p.params, p)[0]
            value = call(
                fn.__name__, fn, self.layout.give("data", y), self.layout.give("data", p.t), filename=self.file
            )
            read = match_loss(float(np.asarray(value)), y, p.t, fn.__name__, self.file)
            if read is None:
                raise FcgradError(
                    f"{definition(fn) or self.file}: {fn.__name__}(Y, T) matches none of the library's "
                    "losses; expected the square loss Σ(y − t)²/N/2 or another of fcgrad's"
                )
        if said is not None and read is not None and said != read:
            raise FcgradError(
                f"{declared['LOSS'][1]}: LOSS = {said!r} but {fn.__name__} computes the {read} loss; "
                "expected the loss it computes"
            )
        self.loss = read or said or p.loss
        notes = (
            ()
            if (read or said)
            else (f"the loss: {self.loss}, the problem's (the file has no loss(Y, T) and declares no LOSS)",)
        )
        return Model(acts, self.loss, notes)

    # ---- the gradients ----

    def _grads(self, out, n: int) -> tuple[np.ndarray | None, list[LayerSeen]]:
        where = definition(self.module.backward) or self.file
        if isinstance(out, dict) and any(re.match(r"^d[Ww]\d+$", str(k)) for k in out):
            first = 1 if any(k in out for k in ("dW1", "dw1")) else 0
            layers = []
            for i in range(n):
                k = i + first
                values = _picked(out, {
                    "grad_w": (f"dW{k}", f"dw{k}"),
                    "grad_b": (f"db{k}",),
                    "residual_z": (f"dZ{k}", f"dz{k}"),
                    "residual_x": (f"dA{k - 1}", f"dX{k - 1}"),
                })  # fmt: skip
                if "grad_w" not in values or "grad_b" not in values:
                    raise FcgradError(f"{where}: backward's gradients: expected dW{k} and db{k} for layer {i}")
                layers.append(LayerSeen(values))
            top = out.get(f"dA{n - 1 + first}")
            return (None if top is None else np.asarray(top, dtype=np.float64)), layers
        if not isinstance(out, (list, tuple)) or len(out) != n or not all(isinstance(g, dict) for g in out):
            raise FcgradError(
                f"{where}: backward returned {type(out).__name__}; expected a list of {n} dicts "
                "{'grad_w', 'grad_b'} or one dict {'dW1', 'db1', ...}"
            )
        layers = []
        for i, g in enumerate(out):
            values = _picked(g, ALIASES)
            if "grad_w" not in values or "grad_b" not in values:
                raise FcgradError(f"{where}: backward's layer {i}: expected grad_w and grad_b, got {sorted(g)}")
            layers.append(LayerSeen(values))
        return None, layers

    def chain(self, p, params=None) -> tuple[float, Seen, list]:
        params = p.params if params is None else params
        y, cache = self._forward(params, p)
        value = float(LOSSES[self.loss].forward(y, p.t))
        out = call(
            "backward",
            self.module.backward,
            self.params_for_file(params),
            cache,
            self.layout.give("data", p.t),
            filename=self.file,
        )
        residual_y, layers = self._grads(out, len(params))
        new = []
        for i, (old, seen) in enumerate(zip(params, layers)):
            layer = {}
            for q, g in (("w", "grad_w"), ("b", "grad_b")):
                grad = self.layout.read(kind_of(q), seen.values[g], old[q].shape)
                if grad is None:
                    raise FcgradError(
                        f"{definition(self.module.backward) or self.file}: layer {i} {g} has shape "
                        f"{seen.values[g].shape}; expected {self.layout.shape(kind_of(q), old[q].shape)}"
                    )
                layer[q] = old[q] - p.lr * grad
            new.append(layer)
        return value, Seen(FED_OWN, residual_y, layers), new

    def stepper(self, p):
        return chain_stepper(self, p)
