"""How far gradients computed in lower precision drift from the float64 manual (NumPy) gradients.

For one workload, the JAX reference gradients (``reference.gradients``) on a device in
float32 with JAX's default matmul precision (TF32 on NVIDIA GPUs), float32 with
"highest", and float64; and, for scale, manual NumPy in float32. Each against
``manual.gradients`` in float64 on the host, by ``fcgrad.engine.compare.errors``:
max |Δ| and ‖Δ‖/‖ref‖ for the loss and for every layer's residual_z, grad_w, grad_b,
residual_x.
"""

import contextlib

import jax
import numpy as np

from fcgrad import reference
from fcgrad.benchmarks.variants import jax_device
from fcgrad.benchmarks.workloads import make_workload
from fcgrad.engine.compare import errors
from fcgrad.manual import network
from fcgrad.manual.layer import QUANTITIES


def _entry(impl, dtype, precision, device, loss, layers, ref) -> dict:
    max_abs, rel = errors(np.asarray(loss), np.asarray(ref.loss))
    rows = []
    for i, (got, want) in enumerate(zip(layers, ref.layers)):
        for q in QUANTITIES:
            m, r = errors(got[q], getattr(want, q))
            rows.append({"layer": i, "quantity": q, "max_abs": m, "rel": r})
    return {
        "impl": impl,
        "dtype": dtype,
        "precision": precision,
        "device": device,
        "loss": {"max_abs": max_abs, "rel": rel},
        "layers": rows,
        "worst_rel": max(r["rel"] for r in rows),
    }


def gradient_drift(sizes, batch: int, platform: str, precisions=("default", "highest")) -> dict:
    """Drift of each implementation's gradients at the workload's initial parameters."""
    wl = make_workload(sizes, batch, "float64")
    ref = network.gradients(wl.params, wl.x, wl.t, activations=wl.activations, loss=wl.loss)
    dev = jax_device(platform)
    entries = []
    cases = [("float32", p) for p in precisions] + [("float64", None)]
    for dtype, precision in cases:
        prec = jax.default_matmul_precision("highest") if precision == "highest" else contextlib.nullcontext()
        with jax.default_device(dev), prec:
            g = reference.gradients(wl.params, wl.x, wl.t, activations=wl.activations, loss=wl.loss, dtype=dtype)
        entries.append(_entry("jax", dtype, precision, platform, g["loss"], g["layers"], ref))
    p32 = [{k: v.astype(np.float32) for k, v in layer.items()} for layer in wl.params]
    m32 = network.gradients(
        p32, wl.x.astype(np.float32), wl.t.astype(np.float32), activations=wl.activations, loss=wl.loss
    )
    entries.append(_entry("manual", "float32", None, "cpu", m32.loss, [g._asdict() for g in m32.layers], ref))
    return {
        "sizes": wl.label,
        "batch": batch,
        "against": "manual (NumPy) float64 on the host CPU",
        "entries": entries,
    }
