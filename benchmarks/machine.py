"""What ran the benchmark: CPU, BLAS kernel, JAX device, library versions."""

import os
import platform
import sys

import jax
import numpy as np

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> list[dict]:
    """NumPy's BLAS as threadpoolctl sees it (kernel architecture, threads), else numpy's build config."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        try:
            config = np.show_config(mode="dicts")
            return [{"source": "numpy.show_config", "blas": config.get("Build Dependencies", {}).get("blas", {})}]
        except Exception as exc:  # informational only: never stop a benchmark over it
            return [{"source": "unknown", "error": repr(exc)}]
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info() if lib.get("user_api") == "blas"]


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "blas": blas_info(),
        "blas_env": {k: os.environ[k] for k in BLAS_ENV if k in os.environ},
        "loadavg_at_start": load_average(),  # 1, 5, 15 min: other work on a shared machine
        "scheduling": _read("/proc/self/autogroup"),  # the run's scheduler group and its nice value
    }


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def device(jax_platform: str) -> dict:
    """The JAX device the JAX variants ran on; NumPy variants always run on the host CPU."""
    d = jax.devices(jax_platform)[0]
    return {
        "jax": jax_platform,
        "jax_device": getattr(d, "device_kind", str(d)),
        "numpy": f"host cpu: {cpu_model()}, {os.cpu_count()} cores",
    }


def versions() -> dict:
    import jaxlib

    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
    }
