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


def as_jax(params, x, t, dtype):
    """Copy NumPy inputs to JAX arrays of ``dtype`` (call inside ``x64_for(dtype)``)."""
    dt = DTYPES[dtype_name(dtype)]
    params = [{k: jnp.asarray(v, dt) for k, v in p.items()} for p in params]
    return params, jnp.asarray(x, dt), jnp.asarray(t, dt)
