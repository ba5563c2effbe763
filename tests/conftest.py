"""Shared helpers of the core suite: which rows of a comparison failed, running the CLI; and 4 host devices for JAX."""

import subprocess
import sys
from pathlib import Path

import jax

# Before any test starts JAX: 4 host CPU devices for the data-parallel tests. Unsharded work
# still runs on the default device (device 0), as it would with one.
HOST_DEVICES = 4
jax.config.update("jax_num_cpu_devices", HOST_DEVICES)

REPO_ROOT = Path(__file__).resolve().parent.parent


def failing(rows) -> set[tuple[int, str]]:
    """The (layer, quantity) of every row that is not ok."""
    return {(r.layer, r.quantity) for r in rows if not r.ok}


def describe(rows) -> str:
    """One line per failed row, naming its layer and quantity, for assertion messages."""
    bad = [r for r in rows if not r.ok]
    return "; ".join(f"layer {r.layer} {r.quantity}: max|Δ| {r.max_abs_err:.1e}, rel {r.rel_err:.1e}" for r in bad)


def assert_all_ok(rows) -> None:
    assert rows, "no rows were compared"
    assert all(r.ok for r in rows), "mismatch: " + describe(rows)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m fcgrad <args>`` from the repository root, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "fcgrad", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
