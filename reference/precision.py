"""float64 switched on only for the code that asks for it (``jax.enable_x64`` is a scoped context)."""

import jax
import jax.numpy as jnp
import numpy as np

DTYPES = {"float64": jnp.float64, "float32": jnp.float32}


def dtype_name(dtype) -> str:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise ValueError(f"dtype: expected float64 or float32, got {dtype!r}")
    return name


def x64_for(dtype):
    """Context manager: 64-bit JAX types on inside it when ``dtype`` is float64."""
    return jax.enable_x64(dtype_name(dtype) == "float64")


def _looks_transposed(params, i: int) -> bool:
    """``w`` given as (out, in): its columns fit the layer below; first layer: its rows fit the next; lone: ``b``."""
    rows, cols = np.shape(params[i]["w"])
    if rows == cols:
        return False
    if i > 0:
        return cols == np.shape(params[i - 1]["w"])[1]
    if i + 1 < len(params):
        return rows == (np.shape(params[i + 1]["w"]) or (None,))[0]
    return np.shape(params[i]["b"]) == (rows, 1)


def check_shapes(params, x, t) -> None:
    """The blog's layout, or a ValueError naming what was expected and what came."""
    for i, p in enumerate(params):
        n_in, n_out = np.shape(p["w"])
        if _looks_transposed(params, i):
            raise ValueError(
                f"layer {i} w: expected shape ({n_out}, {n_in}) as (in, out), got {(n_in, n_out)}, its transpose"
            )
        if np.shape(p["b"]) != (n_out, 1):
            raise ValueError(
                f"layer {i} b: expected shape ({n_out}, 1) to match w {np.shape(p['w'])}, got {np.shape(p['b'])}"
            )
        if i > 0 and n_in != np.shape(params[i - 1]["w"])[1]:
            raise ValueError(
                f"layer {i} w: expected {np.shape(params[i - 1]['w'])[1]} input rows, got {np.shape(p['w'])}"
            )
    n_in, n_out = np.shape(params[0]["w"])[0], np.shape(params[-1]["w"])[1]
    if np.ndim(x) != 2 or np.shape(x)[0] != n_in or np.shape(x)[1] == 0:
        raise ValueError(f"X: expected shape ({n_in}, N) with N >= 1 samples by column, got {np.shape(x)}")
    if np.shape(t) != (n_out, np.shape(x)[1]):
        raise ValueError(f"T: expected shape ({n_out}, {np.shape(x)[1]}), got {np.shape(t)}")


def to_jax(a, dtype=None):
    """A copy of ``a`` as a JAX array of ``dtype`` (default: ``a``'s own), converted by NumPy on the host.

    ``jnp.asarray`` compiles a small XLA program for every new shape when it converts, or is given no dtype; given
    an array already of its dtype, it only copies. The conversion is IEEE rounding either way."""
    a = np.asarray(a)
    dt = a.dtype if dtype is None else np.dtype(dtype)
    return jnp.asarray(np.asarray(a, dt), dt)


def as_jax(params, x, t, dtype):
    """Copy NumPy inputs to JAX arrays of ``dtype`` (call inside ``x64_for(dtype)``), after ``check_shapes``."""
    check_shapes(params, x, t)
    dt = DTYPES[dtype_name(dtype)]
    params = [{k: to_jax(v, dt) for k, v in p.items()} for p in params]
    return params, to_jax(x, dt), to_jax(t, dt)
