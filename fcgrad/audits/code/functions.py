"""The functions protocol: ``forward(params, X) -> (Y, cache)`` and ``backward(params, cache, T) -> gradients``.

The functions may carry the courses' names instead: ``L_model_forward(X, parameters)`` (or ``model_forward``,
``forward_propagation``) and ``L_model_backward(AL, Y, caches)`` (or ``model_backward``, ``backward_propagation``).
Their arguments are given by their names, in any order: the parameters (``params``, ``parameters``), the input
(``X``), the cache (``cache``, ``caches``), the targets (``T``, ``Y``, ``y``) and the output the forward
returned (``AL``, ``A2``, ``Y_hat``); a backward may take X too, a loss the parameters. A plain ``forward``/
``backward`` with other names takes them in the order above, a ``loss`` of two arguments (Y, T).

``params`` is, as the file declares with ``PARAMS`` (or as its ``init_params(sizes)`` / ``initialize_parameters
(sizes)`` / ``initialize_parameters_deep(layer_dims)`` / ``initialize_parameters(n_x, n_h, n_y)`` returns):
``"list"`` (the default), one dict per layer ``{"w": ..., "b": ...}`` (the keys as the file's init writes them:
``W``, ``weight``, ...); or ``"numbered"``, one dict ``{"W1": ..., "b1": ..., "W2": ...}`` (the courses' form).
``forward`` may return Y alone; the cache passed back is then Y. Where the file declares no layout, the shapes
its init makes say it: w (out, in) when the first w is (n1, n0), samples by row when a bias is (n,) or (1, n).

The gradients come back in the same form: a list of per-layer dicts with ``grad_w`` and ``grad_b`` (or
``dw``/``dW``, ``db``), optionally ``residual_z`` (``dz``/``dZ``) and ``residual_x`` (``dx``/``dA_prev``);
or one dict with ``dW1``, ``db1``, ..., optionally ``dZ1``, ... and ``dA0``, ``dA1``, ... (``dA{l-1}`` is
layer l's residual_x, ``dA{L}`` the output's residual_y). The file's gradients are applied by the audit as
plain gradient descent. The loss is read from the file's ``loss(Y, T)`` (or ``cost``, ``compute_cost``), else
its ``LOSS``, else the problem's (binary cross-entropy on a sigmoid output is bce-logits on the logits,
``fcgrad.audits.code.model``); the activations from ``forward``, or its ``ACTIVATIONS``.
"""

import re

import numpy as np

from fcgrad.audits.code.layout import kind_of
from fcgrad.audits.code.model import (
    Model,
    declared_activations,
    declared_loss,
    loss_value,
    match_loss,
    whole_forward,
)
from fcgrad.audits.code.params import required
from fcgrad.audits.code.seen import FED_OWN, LayerSeen, Seen, chain_stepper
from fcgrad.engine.user_code import call, definition
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.losses import LOSSES

FORMS = ("list", "numbered")
FORWARD_NAMES = ("forward", "L_model_forward", "model_forward", "forward_propagation", "forward_prop")
BACKWARD_NAMES = ("backward", "L_model_backward", "model_backward", "backward_propagation", "backward_prop")
ROLES = {  # an argument's name -> what the audit passes for it
    "params": ("params", "parameters", "model", "weights", "network", "net"),
    "x": ("X", "x", "X_batch", "inputs", "input", "data"),
    "cache": ("cache", "caches", "cache_list", "memory"),
    "t": ("T", "t", "Y", "y", "targets", "labels", "y_true", "Y_true"),
    "y": ("AL", "A2", "A3", "Y_hat", "y_hat", "yhat", "A_last", "output", "outputs", "out", "y_pred", "predictions"),
}
FORWARD_ROLES, BACKWARD_ROLES = ("params", "x"), ("params", "cache", "t")  # a plain forward/backward's order
LOSS_ROLES = ("y", "t")  # a loss(Y, T) of other names takes them in this order
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


def roles(fn, plain: tuple[str, ...]) -> tuple[str, ...] | None:
    """What each required argument of ``fn`` is, read off its name; ``plain``'s order for a plain forward/backward
    whose names say nothing; None when neither reads. A backward may go without the parameters (it has the cache)."""
    names = required(fn)
    read = tuple(next((r for r, said in ROLES.items() if n in said), "") for n in names)
    needed = set(plain) - ({"params"} if plain != FORWARD_ROLES else set())
    if all(read) and len(set(read)) == len(read) and needed <= set(read) <= {*plain, "y", "x", "params"}:
        return read
    plain_name = getattr(fn, "__name__", "") in ("forward", "backward")
    return plain if plain_name and len(names) == len(plain) else None


def _found(module, names: tuple[str, ...], plain: tuple[str, ...]):
    for n in names:
        fn = getattr(module, n, None)
        if callable(fn) and not isinstance(fn, type) and roles(fn, plain) is not None:
            return fn
    return None


UPDATE_NAMES = ("update_parameters", "update_params", "update")
UPDATE_ROLES = {  # an update's argument name -> what the audit passes for it
    "params": ROLES["params"],
    "grads": ("grads", "gradients", "grad", "derivatives"),
    "lr": ("learning_rate", "lr", "eta", "alpha"),
}


def _update(module) -> tuple[object, tuple[str, ...]]:
    """The file's own update (``update_parameters(parameters, grads, learning_rate)``) and each argument's role,
    or (None, ()) when it has none the audit can call."""
    for name in UPDATE_NAMES:
        fn = getattr(module, name, None)
        if not callable(fn) or isinstance(fn, type):
            continue
        needed = required(fn)
        found = [next((r for r, names in UPDATE_ROLES.items() if a in names), None) for a in needed]
        if len(needed) == 3 and None not in found and len(set(found)) == 3:
            return fn, tuple(found)
    return None, ()


def fits(module) -> bool:
    forward = _found(module, FORWARD_NAMES, FORWARD_ROLES)
    return forward is not None and _found(module, BACKWARD_NAMES, BACKWARD_ROLES) is not None


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
        self.model_read: Model | None = None
        self.forward_fn = _found(module, FORWARD_NAMES, FORWARD_ROLES)
        self.backward_fn = _found(module, BACKWARD_NAMES, BACKWARD_ROLES)
        self.update_fn, self.update_roles = _update(module)
        self.notes: list[str] = []
        if self.update_fn is not None:
            self.notes.append(f"each step taken by the file's own {self.update_fn.__name__}, its statements traced")
        self.layout_from = None  # where the layout was read, when the file's own arrays showed it

    def _call(self, fn, plain: tuple[str, ...], given: dict):
        """``fn`` called with each argument its name asks for, from ``given`` (role -> value)."""
        return call(fn.__name__, fn, *(given[r] for r in roles(fn, plain)), filename=self.file)

    def _init_form(self, sizes) -> None:
        said = self.declared.get("PARAMS")
        if said is not None:
            if said[0] not in FORMS:
                raise FcgradError(f"{said[1]}: PARAMS: expected one of {', '.join(FORMS)}, got {said[0]!r}")
            self.form = said[0]
        init = next((getattr(self.module, n) for n in INIT_NAMES if callable(getattr(self.module, n, None))), None)
        if init is None or len(required(init)) not in (1, len(sizes)):
            return
        widths = [list(sizes)] if len(required(init)) == 1 else [int(n) for n in sizes]  # a list, or one per width
        state = np.random.get_state()
        try:
            made = call(init.__name__, init, *widths, filename=self.file)
        finally:
            np.random.set_state(state)
        if isinstance(made, dict) and said is None:
            self.form = "numbered"
        elif isinstance(made, (list, tuple)) and made and isinstance(made[0], dict):
            w = next((k for k in WEIGHT_KEYS if k in made[0]), "w")
            self.keys = (w, next((k for k in BIAS_KEYS if k in made[0]), "b"))
        first = made.get("W1") if isinstance(made, dict) else (made[0].get(self.keys[0]) if made else None)
        bias = made.get("b1") if isinstance(made, dict) else (made[0].get(self.keys[1]) if made else None)
        self._layout_of_init(np.shape(first), np.shape(bias), sizes, init)
        self._check_layout(np.shape(first), sizes, init)

    def _layout_of_init(self, w: tuple, b: tuple, sizes, init) -> None:
        """The layout the file's init shows, where the file declares none: w (out, in) when its first w is
        (n1, n0) (and n0 ≠ n1), samples by row when its bias is (n1,) or (1, n1) (and n1 > 1)."""
        weights, samples = self.layout.weights, self.layout.samples
        n0, n1 = sizes[0], sizes[1]
        if "WEIGHTS" not in self.declared and n0 != n1 and w in ((n0, n1), (n1, n0)):
            weights = "out,in" if w == (n1, n0) else "in,out"
        if "SAMPLES" not in self.declared and n1 > 1 and b in ((n1,), (1, n1), (n1, 1)):
            samples = "columns" if b == (n1, 1) else "rows"
        shown = type(self.layout)(weights, samples)
        if shown != self.layout:
            self.layout, self.layout_from = shown, f"the arrays {init.__name__} makes"

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
        given = {"params": self.params_for_file(params), "x": self.layout.give("data", p.x)}
        out = self._call(self.forward_fn, FORWARD_ROLES, given)
        y, cache = (out[0], out[1]) if isinstance(out, tuple) and len(out) == 2 else (out, out)
        y_blog = self.layout.read("data", np.asarray(y, dtype=np.float64), p.t.shape)
        if y_blog is None:
            raise FcgradError(
                f"{definition(self.forward_fn) or self.file}: {self.forward_fn.__name__} returned Y {np.shape(y)}; "
                f"expected {self.layout.shape('data', p.t.shape)} (and its cache)"
            )
        self._y_file = y
        return y_blog, cache

    def model(self, p, declared: dict) -> Model:
        self._init_form(p.sizes)
        acts_said = declared_activations(*declared.get("ACTIVATIONS", (None, "")), len(p.params))
        what = f"{self.forward_fn.__name__}({', '.join(required(self.forward_fn))})"
        acts = whole_forward(lambda params: self._forward(params, p)[0], p, what, self.file, acts_said)
        said = declared_loss(*declared.get("LOSS", (None, "")))
        fn = next((getattr(self.module, n) for n in LOSS_FN_NAMES if callable(getattr(self.module, n, None))), None)
        read = None
        loss_roles = None if fn is None else roles(fn, LOSS_ROLES)
        if loss_roles is None and fn is not None and len(required(fn)) == 2:
            loss_roles = LOSS_ROLES  # loss(Y, T) whatever its names
        if loss_roles is not None:
            y = self._forward(p.params, p)[0]
            given = {"y": self._y_file, "t": self.layout.give("data", p.t), "params": self.params_for_file(p.params)}
            value = call(fn.__name__, fn, *(given[r] for r in loss_roles), filename=self.file)
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
        self.model_read = Model(acts, self.loss, notes)
        return self.model_read

    # ---- the gradients ----

    def _grads(self, out, n: int) -> tuple[np.ndarray | None, list[LayerSeen]]:
        where = definition(self.backward_fn) or self.file
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
        value = loss_value(self.model_read, y, p.t) if self.model_read else float(LOSSES[self.loss].forward(y, p.t))
        given = {
            "params": self.params_for_file(params),
            "cache": cache,
            "t": self.layout.give("data", p.t),
            "y": self._y_file,
            "x": self.layout.give("data", p.x),
        }
        out = self._call(self.backward_fn, BACKWARD_ROLES, given)
        residual_y, layers = self._grads(out, len(params))
        if self.update_fn is not None:  # the file's own update takes the step; the trace judges its statements
            made = call(
                self.update_fn.__name__,
                self.update_fn,
                *({"params": self.params_for_file(params), "grads": out, "lr": p.lr}[r] for r in self.update_roles),
                filename=self.file,
            )
            return value, Seen(FED_OWN, residual_y, layers), self.params_from_file(made, params)
        new = []
        for old, seen in zip(params, layers):
            layer = {}
            for q, g in (("w", "grad_w"), ("b", "grad_b")):
                grad = self.layout.read(kind_of(q), seen.values[g], old[q].shape)
                if grad is None:  # a gradient of another shape cannot be applied: the step ends the training
                    grad = np.full(old[q].shape, np.nan)
                layer[q] = old[q] - p.lr * grad
            new.append(layer)
        return value, Seen(FED_OWN, residual_y, layers), new

    def params_from_file(self, made, like) -> list[dict]:
        """The parameters the file's update returned (its form), in the blog's layout, shaped as ``like``; one it
        returned in another shape (a gradient of the wrong shape broadcast into it) is NaN: the training ends."""
        out = []
        for i, old in enumerate(like):
            try:
                w, b = (made[f"W{i + 1}"], made[f"b{i + 1}"]) if self.form == "numbered" else (
                    made[i][self.keys[0]], made[i][self.keys[1]])  # fmt: skip
            except (KeyError, IndexError, TypeError):
                raise FcgradError(
                    f"{definition(self.update_fn) or self.file}: {self.update_fn.__name__} returned no layer {i} "
                    "parameters; expected them in the form it was given"
                ) from None
            layer = {}
            for q, a, kind in (("w", w, "weight"), ("b", b, "bias")):
                value = self.layout.read(kind, np.asarray(a, dtype=np.float64), old[q].shape)
                layer[q] = np.full(old[q].shape, np.nan) if value is None else value
            out.append(layer)
        return out

    def stepper(self, p):
        return chain_stepper(self, p)
