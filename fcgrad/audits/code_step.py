"""The step-function protocol of ``audit --code``: ``step(params, X, T, lr) -> (loss, new_params[, residuals])``.

Gradients are read back from the update, ``(params − new_params) / lr``; ``residuals`` (optional)
is a dict of ``"residual_y"`` (out, N) and lists ``"residual_x"`` / ``"residual_z"``, one array per
layer. Only end-to-end numbers exist here (nothing can feed one layer JAX's upstream), so a
mistake is located at the first wrong quantity in backward order, not isolated.
"""

import inspect
from dataclasses import dataclass

import numpy as np

from fcgrad.engine.user_code import call
from fcgrad.manual import validate
from fcgrad.manual.errors import FcgradError


@dataclass
class StepNet:
    file: str
    module: object

    @property
    def where(self) -> str:
        fn = self.module.step
        try:
            return f"{inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]}"
        except (OSError, TypeError):
            return self.file

    def model(self, p) -> tuple[tuple[str, ...], str]:
        """The file's ACTIVATIONS and LOSS, or the problem's."""
        acts = getattr(self.module, "ACTIVATIONS", p.activations)
        acts = tuple(validate.check_activations(acts, len(p.params)))
        return acts, validate.check_loss(getattr(self.module, "LOSS", p.loss))

    def run(self, params, p) -> tuple[float, list, dict]:
        copies = [{k: np.array(v, dtype=np.float64) for k, v in layer.items()} for layer in params]
        out = call("step", self.module.step, copies, p.x.copy(), p.t.copy(), p.lr, filename=self.file)
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
            got = {k: np.asarray(layer[k], dtype=np.float64) for k in ("w", "b") if k in layer}
            for k in ("w", "b"):
                if k not in got or got[k].shape != old[k].shape:
                    shape = got[k].shape if k in got else "missing"
                    raise FcgradError(
                        f"{self.where}: step's new_params[{i}][{k!r}] is {shape}; expected {old[k].shape}"
                    )
            clean.append(got)
        if not isinstance(residuals, dict):
            raise FcgradError(f"{self.where}: step's residuals: expected a dict, got {type(residuals).__name__}")
        return float(value), clean, residuals

    def step0(self, p, ref: dict, row, layer_rows) -> tuple[list, dict]:
        """End-to-end rows at step 0 and the values behind them, keyed by (layer, quantity)."""
        _, new, res = self.run(p.params, p)
        top = len(p.params) - 1
        rows, values = [], {}
        if "residual_y" in res:
            values[(top, "residual_y")] = np.asarray(res["residual_y"], np.float64)
            rows.append(row(top, "residual_y", values[(top, "residual_y")], ref["residual_y"]))
        for i in range(top, -1, -1):
            grads = [(p.params[i][k] - new[i][k]) / p.lr for k in ("w", "b")]
            residual_x = res["residual_x"][i] if "residual_x" in res else None
            residual_z = res["residual_z"][i] if "residual_z" in res else None
            upstream = ref["residual_y"] if i == top else ref["layers"][i + 1]["residual_x"]
            r, v = layer_rows(i, (*grads, residual_x, residual_z), ref["layers"][i], p.params, p.lr, upstream)
            rows += r
            values.update({(i, q): np.asarray(a, np.float64) for q, a in v.items()})
        return rows, values

    def stepper(self, p):
        def run(params):
            value, new, _ = self.run(params, p)
            return value, new

        return run


def build_step_net(module, file: str) -> StepNet:
    if not callable(getattr(module, "step", None)):
        raise FcgradError(f"{file}: expected a class Net (or a function step(params, X, T, lr)); found neither")
    return StepNet(file, module)
