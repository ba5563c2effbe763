"""The step-function protocol of ``audit --code``: ``step(params, X, T, lr) -> (loss, new_params[, residuals])``.

``params`` is ``[{"w": ..., "b": ...}, ...]`` in the file's layout. Gradients are read back from the
update, ``(params − new_params) / lr``; ``residuals`` (optional) is a dict of ``"residual_y"`` and lists
``"residual_x"`` / ``"residual_z"``, one array (or None) per layer. The file may set ``ACTIVATIONS`` (one
name per layer) and ``LOSS``; the default is the problem's. Nothing can feed one layer JAX's upstream
here: each layer is judged from the residual the file sends it (its ``residual_x`` of the layer above),
where it exposes that, else a mistake is located at the first wrong quantity in backward order.
"""

import numpy as np

from fcgrad.audits.code.layout import kind_of
from fcgrad.audits.code.model import Model, declared_activations, declared_loss
from fcgrad.audits.code.seen import FED_OWN, LayerSeen, Seen, read_back
from fcgrad.engine.user_code import call, definition
from fcgrad.manual.errors import FcgradError


class StepNet:
    protocol = "step"
    sizes = None  # the parameters are the problem's

    def __init__(self, module, file: str, layout):
        self.module, self.file, self.layout = module, file, layout

    @property
    def where(self) -> str:
        return definition(self.module.step) or self.file

    def model(self, p, declared: dict) -> Model:
        """The file's ACTIVATIONS and LOSS, or the problem's (said so in the report)."""
        acts = declared_activations(*declared.get("ACTIVATIONS", (None, "")), len(p.params))
        loss = declared_loss(*declared.get("LOSS", (None, "")))
        notes = []
        if acts is None:
            notes.append(
                f"the activations: {', '.join(p.activations)}, the problem's (the file declares no ACTIVATIONS)"
            )
        if loss is None:
            notes.append(f"the loss: {p.loss}, the problem's (the file declares no LOSS)")
        return Model(acts or tuple(p.activations), loss or p.loss, tuple(notes))

    def run(self, params, p) -> tuple[float, list, dict]:
        lay = self.layout
        mine = [{"w": lay.give("weight", layer["w"]), "b": lay.give("bias", layer["b"])} for layer in params]
        out = call(
            "step", self.module.step, mine, lay.give("data", p.x), lay.give("data", p.t), p.lr, filename=self.file
        )
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise FcgradError(
                f"{self.where}: step returned {type(out).__name__}; expected (loss, new_params[, residuals])"
            )
        value, new = out[0], out[1]
        residuals = out[2] if len(out) == 3 and out[2] is not None else {}
        if not isinstance(new, (list, tuple)) or len(new) != len(params):
            raise FcgradError(
                f"{self.where}: step's new_params: expected a list of {len(params)} layers of {{'w', 'b'}}"
            )
        clean = []
        for i, (old, layer) in enumerate(zip(params, new)):
            got = {}
            for k in ("w", "b"):
                value_k = layer.get(k) if isinstance(layer, dict) else None
                blog = None if value_k is None else lay.read(kind_of(k), value_k, old[k].shape)
                if blog is None:
                    shape = "missing" if value_k is None else np.shape(value_k)
                    raise FcgradError(
                        f"{self.where}: step's new_params[{i}][{k!r}] is {shape}; expected "
                        f"{lay.shape(kind_of(k), old[k].shape)}"
                    )
                got[k] = np.array(blog, dtype=np.float64)
            clean.append(got)
        if not isinstance(residuals, dict):
            raise FcgradError(f"{self.where}: step's residuals: expected a dict, got {type(residuals).__name__}")
        return float(value), clean, residuals

    def chain(self, p, params=None) -> tuple[float, Seen, list]:
        """Step 0 as the file computes it: gradients read from its update, its residuals as it gives them."""
        params = p.params if params is None else params
        value, new, res = self.run(params, p)
        lay = self.layout
        layers = []
        for i, (old, upd) in enumerate(zip(params, new)):
            values = {}
            for q, k in (("grad_w", "w"), ("grad_b", "b")):
                # read back in the user's layout: (before − after) / lr of their own arrays
                before, after = lay.give(kind_of(k), old[k]), lay.give(kind_of(k), upd[k])
                values[q] = read_back(before, after, p.lr)
            for q in ("residual_x", "residual_z"):
                listed = res.get(q)
                if listed is not None and i < len(listed) and listed[i] is not None:
                    values[q] = np.asarray(listed[i], dtype=np.float64)
            unchanged = all(np.array_equal(old[k], upd[k]) for k in ("w", "b"))
            layers.append(LayerSeen(values, unchanged))
        residual_y = res.get("residual_y")
        residual_y = None if residual_y is None else np.asarray(residual_y, dtype=np.float64)
        return value, Seen(FED_OWN, residual_y, layers), new

    def stepper(self, p):
        def run(params):
            value, new, _ = self.run(params, p)
            return value, new

        return run
