"""A compact network spec: widths with each layer's activation, normalisation and dropout.

Grammar: the input width, then one ``-``-separated entry per layer, ``WIDTH[:OPTION]...``::

    64-32:relu:bn:drop0.1-10:identity

Options of a layer (in any order, each at most once):

- an activation: ``sigmoid``, ``tanh``, ``relu`` or ``identity`` (default: relu for hidden
  layers, identity for the output layer, whose output feeds the loss as logits);
- ``bn`` (batch normalisation) or ``ln`` (layer normalisation) of the linear part ``z``;
- ``dropP``: inverted dropout of the layer's output, dropping with probability ``P`` in [0, 1).

One layer computes ``z = wᵀ·x (+ b)``, then the normalisation, the activation, the dropout.
A batch-normalised layer has no ``b``: its β does that job, and ``b``'s gradient would be zero
up to rounding (which an adaptive optimizer would blow up into steps of size lr).
"""

import re
from typing import NamedTuple

import numpy as np

from fcgrad.manual import validate
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.errors import FcgradError

NORMS = {"bn": "batch", "ln": "layer"}


class LayerSpec(NamedTuple):
    """One layer of a spec network; hashable, so a JAX step can take it as a static argument."""

    n_in: int
    n_out: int
    activation: str
    norm: str = ""  # "", "batch" or "layer"
    dropout: float = 0.0  # drop probability; 0 means no dropout

    @property
    def has_bias(self) -> bool:
        return self.norm != "batch"


Spec = tuple[LayerSpec, ...]
_DROP = re.compile(r"drop(\d*\.?\d+)$")


def _parse_layer(text: str, n_in: int, last: bool, index: int) -> LayerSpec:
    width, *options = text.split(":")
    where = f"spec layer {index} ({text!r})"
    if not width.isdigit() or int(width) < 1:
        raise FcgradError(f"{where}: expected a positive integer width first, got {width!r}")
    activation, norm, dropout = None, "", None
    for opt in options:
        drop = _DROP.match(opt)
        if opt in ACTIVATIONS and activation is None:
            activation = opt
        elif opt in NORMS and not norm:
            norm = NORMS[opt]
        elif drop and dropout is None:
            dropout = float(drop.group(1))
            if not 0.0 <= dropout < 1.0:
                raise FcgradError(f"{where}: expected a drop probability in [0, 1), got {opt!r}")
        else:
            raise FcgradError(
                f"{where}: expected options among {sorted(ACTIVATIONS)}, bn, ln, dropP (each once), got {opt!r}"
            )
    activation = activation or ("identity" if last else "relu")
    return LayerSpec(n_in, int(width), activation, norm, dropout or 0.0)


def parse_spec(text: str) -> Spec:
    """``"64-32:relu:bn:drop0.1-10"`` -> one ``LayerSpec`` per layer."""
    if not isinstance(text, str) or not text.strip():
        raise FcgradError(f"spec: expected text such as 64-32:relu:bn:drop0.1-10, got {text!r}")
    first, *layers = text.strip().split("-")
    if not first.isdigit() or int(first) < 1:
        raise FcgradError(f"spec: expected the input width first (a positive integer), got {first!r} in {text!r}")
    if not layers:
        raise FcgradError(f"spec: expected at least one layer after the input width, got {text!r}")
    out, n_in = [], int(first)
    for i, entry in enumerate(layers):
        out.append(_parse_layer(entry, n_in, i == len(layers) - 1, i))
        n_in = out[-1].n_out
    return tuple(out)


def format_spec(spec: Spec) -> str:
    """The compact text of a spec (every option written out); ``parse_spec`` reads it back."""
    parts = [str(spec[0].n_in)]
    for layer in spec:
        opts = [layer.activation] + [k for k, v in NORMS.items() if v == layer.norm]
        opts += [f"drop{layer.dropout:g}"] if layer.dropout else []
        parts.append(":".join([str(layer.n_out), *opts]))
    return "-".join(parts)


def plain_spec(sizes, activations) -> Spec:
    """The blog's layers as a spec: widths ``sizes`` (the input's first), one activation name per layer,
    each layer with a bias, no norm and no dropout. Unchecked (``validate`` checks what callers pass)."""
    return tuple(LayerSpec(n_in, n_out, act) for n_in, n_out, act in zip(sizes[:-1], sizes[1:], activations))


def init_spec_params(spec: Spec, *, seed: int = 0, dtype="float64") -> list[dict[str, np.ndarray]]:
    """``w`` ~ N(0, 1/in), ``b`` = 0 (absent under batch norm), ``gamma`` = 1 and ``beta`` = 0 under a norm."""
    dt = validate.check_dtype(dtype)
    rng = np.random.default_rng(validate.check_seed(seed))
    params = []
    for layer in spec:
        p = {"w": (rng.standard_normal((layer.n_in, layer.n_out)) / np.sqrt(layer.n_in)).astype(dt)}
        if layer.has_bias:
            p["b"] = np.zeros((layer.n_out, 1), dt)
        if layer.norm:
            p["gamma"] = np.ones((layer.n_out, 1), dt)
            p["beta"] = np.zeros((layer.n_out, 1), dt)
        params.append(p)
    return params


def init_running(spec: Spec, dtype="float64") -> list[dict[str, np.ndarray]]:
    """Batch norm's running averages, mean 0 and variance 1; an empty dict for other layers."""
    dt = validate.check_dtype(dtype)
    return [
        {"mean": np.zeros((layer.n_out, 1), dt), "var": np.ones((layer.n_out, 1), dt)} if layer.norm == "batch" else {}
        for layer in spec
    ]


def expected_shapes(layer: LayerSpec) -> dict[str, tuple[int, int]]:
    shapes = {"w": (layer.n_in, layer.n_out)}
    if layer.has_bias:
        shapes["b"] = (layer.n_out, 1)
    if layer.norm:
        shapes["gamma"] = shapes["beta"] = (layer.n_out, 1)
    return shapes


def check_spec_params(spec: Spec, params, dtype) -> list[dict[str, np.ndarray]]:
    """Parameters with exactly the keys and shapes the spec asks for, finite, cast to ``dtype``."""
    dt = validate.check_dtype(dtype)
    if not isinstance(params, (list, tuple)) or len(params) != len(spec):
        got = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
        raise FcgradError(f"params: expected a list of {len(spec)} layers for spec {format_spec(spec)}, got {got}")
    out = []
    for i, (layer, p) in enumerate(zip(spec, params)):
        shapes = expected_shapes(layer)
        if not isinstance(p, dict) or set(p) != set(shapes):
            got = sorted(p) if isinstance(p, dict) else type(p).__name__
            raise FcgradError(f"params[{i}]: expected keys {sorted(shapes)} for layer {i}, got {got}")
        layer_out = {}
        for key, shape in shapes.items():
            arr = np.asarray(p[key], dtype=dt)
            if arr.shape != shape or not np.all(np.isfinite(arr)):
                raise FcgradError(f"layer {i} {key}: expected a finite array of shape {shape}, got shape {arr.shape}")
            layer_out[key] = arr
        out.append(layer_out)
    return out
