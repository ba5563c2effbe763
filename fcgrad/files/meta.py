"""What a saved result needs to be reproduced: versions, the random seed, the full problem, the tolerances.

The same dictionary heads the JSON of ``fcgrad check --json`` and ``fcgrad audit --json``, and is
stored in their ``--save`` archives as ``meta``, a JSON string in a 0-d array
(``json.loads(str(np.load(path)["meta"]))``).
"""

import importlib.metadata
import platform
import tomllib
from pathlib import Path

SOURCE_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"  # fcgrad/files/meta.py -> the root


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def fcgrad_version() -> str:
    """The installed distribution's version; run from a source tree, the version its pyproject.toml states."""
    installed = _distribution_version("fcgrad")
    if installed is not None:
        return installed
    try:
        with open(SOURCE_PYPROJECT, "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def versions() -> dict[str, str | None]:
    """fcgrad, NumPy, JAX and Python versions, read without importing JAX."""
    return {
        "fcgrad": fcgrad_version(),
        "numpy": _distribution_version("numpy"),
        "jax": _distribution_version("jax"),
        "jaxlib": _distribution_version("jaxlib"),
        "python": platform.python_version(),
    }


def version_line() -> str:
    """``fcgrad --version``."""
    v = versions()
    return f"fcgrad {v['fcgrad']} (NumPy {v['numpy']}, JAX {v['jax']}, Python {v['python']})"


def run_meta(command: str, run, *, final_loss, tolerances: dict) -> dict:
    """The header of a result: the command, the whole run description (random seed included), its final loss,
    the tolerances in force, the versions. ``run`` is a ``RunDescription`` (or anything with ``summary()`` and
    ``seed``)."""
    return {
        "command": command,
        "problem": run.summary(),
        "seed": run.seed,
        "final_loss": final_loss,
        "tolerances": tolerances,
        "versions": versions(),
    }
