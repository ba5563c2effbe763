"""Checks of user input, run before any work; each error says what was expected and what came."""

import math
from collections.abc import Sequence

import numpy as np

from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.losses import LOSSES

DTYPES = {"float64": np.float64, "float32": np.float32}


def check_sizes(sizes: Sequence[int]) -> list[int]:
    sizes = list(sizes)
    if len(sizes) < 2:
        raise FcgradError(f"sizes: expected at least 2 entries (inputs and outputs, e.g. 2,4,1), got {sizes}")
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise FcgradError(f"sizes[{i}]: expected a positive integer width, got {s!r}")
    return [int(s) for s in sizes]


def check_activations(activations: str | Sequence[str], n_layers: int) -> list[str]:
    names = [activations] * n_layers if isinstance(activations, str) else list(activations)
    if len(names) != n_layers:
        raise FcgradError(
            f"activations: expected one name for all layers or {n_layers} (one per layer), got {len(names)}: {names}"
        )
    for i, a in enumerate(names):
        if a not in ACTIVATIONS:
            raise FcgradError(f"activation of layer {i}: expected one of {sorted(ACTIVATIONS)}, got {a!r}")
    return names


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise FcgradError(f"loss: expected one of {sorted(LOSSES)}, got {loss!r}")
    return loss


def check_dtype(dtype) -> np.dtype:
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise FcgradError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise FcgradError(f"dtype: expected float64 or float32, got {dt}")
    return dt


def check_lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise FcgradError(f"learning rate: expected a positive finite number, got {lr!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise FcgradError(f"learning rate: expected a positive finite number, got {lr}")
    return float(lr)


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise FcgradError(f"steps: expected a non-negative integer, got {steps!r}")
    return int(steps)


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FcgradError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def _finite_float_array(name: str, a, dtype: np.dtype) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise FcgradError(f"{name}: expected a 2-D array of numbers, got {type(a).__name__} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise FcgradError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise FcgradError(f"{name}: expected a 2-D array, got shape {arr.shape} ({arr.ndim}-D)")
    arr = arr.astype(dtype, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise FcgradError(
            f"{name}: expected finite values, got {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
        )
    return arr


def check_params(params, dtype=None) -> tuple[list[dict[str, np.ndarray]], np.dtype]:
    """Layers ``[{"w": (in, out), "b": (out, 1)}, ...]`` with consecutive widths; one float dtype."""
    if not isinstance(params, (list, tuple)) or len(params) == 0:
        raise FcgradError(f"params: expected a non-empty list of layers {{'w', 'b'}}, got {type(params).__name__}")
    if dtype is None:
        first = np.asarray(params[0].get("w") if isinstance(params[0], dict) else None)
        dtype = first.dtype if first.dtype.kind == "f" else np.float64
    dtype = check_dtype(dtype)
    out = []
    for i, layer in enumerate(params):
        if not isinstance(layer, dict) or set(layer) != {"w", "b"}:
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise FcgradError(f"params[{i}]: expected a dict with keys 'w' and 'b', got {got}")
        w = _finite_float_array(f"layer {i} w", layer["w"], dtype)
        b = _finite_float_array(f"layer {i} b", layer["b"], dtype)
        prev_out = out[-1]["w"].shape[1] if out else None
        _check_w_orientation(i, w, b, prev_out, _next_rows(params, i))
        n_in, n_out = w.shape
        if prev_out is not None and n_in != prev_out:
            raise FcgradError(
                f"layer {i} w: expected {prev_out} input rows (layer {i - 1} has {prev_out} outputs),"
                f" got shape {w.shape}"
            )
        if b.shape != (n_out, 1):
            hint = " (a row; the blog's b is a column)" if b.shape == (1, n_out) else ""
            raise FcgradError(f"layer {i} b: expected shape ({n_out}, 1) to match w {w.shape}, got {b.shape}{hint}")
        out.append({"w": w, "b": b})
    return out, dtype


def _next_rows(params, i: int) -> int | None:
    """Rows of the next layer's ``w`` (its inputs, so this layer's outputs), when it has a 2-D one."""
    nxt = params[i + 1] if i + 1 < len(params) else None
    shape = np.shape(nxt.get("w")) if isinstance(nxt, dict) else ()
    return shape[0] if len(shape) == 2 else None


def _check_w_orientation(i: int, w: np.ndarray, b: np.ndarray, prev_out: int | None, next_in: int | None) -> None:
    """A ``w`` given as (out, in) is a problem of ``w``, reported before ``b`` is judged against it.

    It looks transposed when its columns, not its rows, match the layer below's outputs; for the
    first layer, when its rows, not its columns, match the next layer's inputs; for a lone layer,
    when ``b``'s rows match its rows rather than its columns. A square ``w`` cannot be told.
    """
    rows, cols = w.shape
    if rows == cols:
        return
    if prev_out is not None:
        transposed = cols == prev_out  # and so rows != prev_out
    elif next_in is not None:
        transposed = rows == next_in
    else:
        transposed = b.shape == (rows, 1)
    if transposed:
        raise FcgradError(
            f"layer {i} w: expected shape ({cols}, {rows}) as (in, out), got {w.shape}, its transpose;"
            " the blog's w has one row per input and one column per output"
        )


def check_data(x, t, params: list[dict[str, np.ndarray]], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (in, N) and ``t`` (out, N), by column as in the blog, N >= 1, finite."""
    n_in = params[0]["w"].shape[0]
    n_out = params[-1]["w"].shape[1]
    x = _finite_float_array("X", x, dtype)
    t = _finite_float_array("T", t, dtype)
    for name, arr, rows in (("X", x, n_in), ("T", t, n_out)):
        if arr.shape[0] != rows:
            hint = ""
            if arr.shape[1] == rows:
                hint = f"; it looks like (N, {rows}) samples by row: transpose it, data are stored by column"
            raise FcgradError(f"{name}: expected shape ({rows}, N) with one sample per column, got {arr.shape}{hint}")
    if x.shape[1] == 0:
        raise FcgradError(f"X: expected at least one sample (column), got an empty batch of shape {x.shape}")
    if t.shape[1] != x.shape[1]:
        raise FcgradError(f"T: expected {x.shape[1]} columns, one per sample of X, got shape {t.shape}")
    return x, t


def check_trainable(trainable, n_layers: int) -> list[dict[str, bool]]:
    if trainable is None:
        return [{"w": True, "b": True} for _ in range(n_layers)]
    trainable = list(trainable)
    if len(trainable) != n_layers or not all(isinstance(m, dict) and set(m) == {"w", "b"} for m in trainable):
        raise FcgradError(
            f"trainable: expected {n_layers} dicts {{'w': bool, 'b': bool}}, one per layer, got {trainable!r}"
        )
    return [{"w": bool(m["w"]), "b": bool(m["b"])} for m in trainable]
