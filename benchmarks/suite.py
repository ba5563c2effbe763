"""Run every variant on every workload and turn the timings into rows with ratios.

For one (sizes, dtype) all variants are built first (JAX ones compiled, data on the
device), then timed together in interleaved rounds (``timing.measure``), so each
ratio compares numbers taken side by side:

- ``floor_ratio`` = time of ``floor`` / time of the variant, ``floor`` being the step's
  3 products per layer on the SAME backend, device and precision (a NumPy floor for
  NumPy variants, a jitted JAX floor for JAX ones);
- ``floor_needed_ratio`` = the same against ``floor-needed``, without the first layer's
  residual_x (which a training step does not need and XLA drops);
- ``vs_minimal`` = time of the variant / time of the minimal baseline of the SAME backend,
  device and precision (``minimal-numpy`` for NumPy variants, ``minimal-jax`` for JAX
  ones): what the variant costs against the fewest calls that do its step;
- ``speedup_vs_manual`` = time of ``manual`` / time of the variant, same sizes and dtype.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fcgrad import reference
from fcgrad.benchmarks import flops, variants
from fcgrad.benchmarks.timing import FULL, Budget, measure
from fcgrad.benchmarks.workloads import BLOG_STEPS, CPU_SPECS, make_workload, parse_spec

MAX_FUSED_STEPS = 1000
MIN_FUSED_STEPS = 2
PHASE_PAUSE_S = 0.3  # lets the previous phase's spinning threads go to sleep (OpenBLAS spins up to ~0.1 s)


@dataclass(frozen=True)
class Settings:
    specs: tuple[str, ...] = CPU_SPECS
    dtypes: tuple[str, ...] = ("float64", "float32")
    platform: str = "cpu"  # where the JAX variants run: "cpu" or "gpu"
    precisions: tuple[str, ...] = ("default",)  # float32 JAX matmul precisions to measure
    budget: Budget = FULL
    numpy_upto: int | None = None  # widest net the NumPy variants run on (None: all)
    cpu_jax_upto: int = 0  # on a GPU run, also run the JAX variants on the CPU for nets this wide or less
    fused_call_s: float = 0.25  # aim for a jit-fused call of about this long (except the blog's 10,000 steps)


def _jax_placements(s: Settings, width: int, dtype: str) -> list[tuple[str, str | None]]:
    precisions = s.precisions if dtype == "float32" else (None,)
    placements = [(s.platform, p) for p in precisions]
    if s.platform != "cpu" and width <= s.cpu_jax_upto:
        placements.append(("cpu", "default" if dtype == "float32" else None))
    return placements


def _fused_steps(wl, jit_step: variants.Variant, fused_call_s: float) -> int:
    """The blog's 10,000 steps at the blog's size; elsewhere enough steps for a call of ``fused_call_s``."""
    if wl.is_blog_size:
        return BLOG_STEPS
    jit_step.run(1)
    start = time.perf_counter()
    jit_step.run(2)
    per_step = (time.perf_counter() - start) / 2
    return int(np.clip(round(fused_call_s / per_step), MIN_FUSED_STEPS, MAX_FUSED_STEPS))


def build(wl, s: Settings, progress) -> list[variants.Variant]:
    """Every variant for one workload (call inside ``reference.x64_for(wl.dtype)``)."""
    vs = []
    ops = variants.floor_operands(wl)
    if s.numpy_upto is None or wl.width <= s.numpy_upto:
        vs += [
            variants.manual_variant(wl),
            variants.minimal_numpy_variant(wl),
            variants.numpy_floor(ops, flops.ALL),
            variants.numpy_floor(ops, flops.NEEDED),
        ]
    for platform, precision in _jax_placements(s, wl.width, wl.dtype):
        dev = variants.jax_device(platform)
        step = variants.jit_step_variant(wl, dev, precision)
        vs += [
            step,
            variants.manual_jit_variant(wl, dev, precision),
            variants.jax_floor(ops, dev, precision, flops.ALL),
            variants.jax_floor(ops, dev, precision, flops.NEEDED),
        ]
        fused_steps = _fused_steps(wl, step, s.fused_call_s)
        vs.append(variants.jit_fused_variant(wl, dev, precision, steps=fused_steps))
        vs.append(variants.minimal_jax_variant(wl, dev, precision, steps=fused_steps))
        compiled = ", ".join(
            f"{v.name} {v.compile_s:.2f} s"
            for v in vs
            if v.compile_s is not None and v.device == platform and v.precision == precision
        )
        progress(f"    compiled on {platform}{'' if precision is None else ' (' + precision + ')'}: {compiled}")
    return vs


def _row(wl, v: variants.Variant, t) -> dict:
    work = flops.step_flops(wl.sizes, wl.batch, v.products)
    return {
        "variant": v.name,
        "backend": v.backend,
        "sizes": wl.label,
        "batch": wl.batch,
        "dtype": wl.dtype,
        "device": v.device,
        "precision": v.precision,
        "step_s_median": t.median,
        "step_s_iqr": t.iqr,
        "step_s_q1": t.q1,
        "step_s_q3": t.q3,
        "repeats": t.repeats,
        "calls_per_block": t.calls_per_block,
        "steps_per_call": v.steps_per_call,
        "compile_s": v.compile_s,
        "products": flops.gemm_count(wl.sizes, v.products),
        "step_gflop": work / 1e9,
        "gflops": work / t.median / 1e9,
        "floor_ratio": None,
        "floor_needed_ratio": None,
        "vs_minimal": None,
        "speedup_vs_manual": None,
    }


def add_ratios(rows: list[dict]) -> None:
    """Fill floor_ratio, floor_needed_ratio, vs_minimal and speedup_vs_manual from rows of the same run."""
    case = lambda r: (r["sizes"], r["batch"], r["dtype"])  # noqa: E731
    where = lambda r: case(r) + (r["backend"], r["device"], r["precision"])  # noqa: E731
    floors = {(where(r), r["variant"]): r["step_s_median"] for r in rows if r["variant"].startswith("floor")}
    minimal = {where(r): r["step_s_median"] for r in rows if r["variant"].startswith("minimal-")}
    manual = {case(r): r["step_s_median"] for r in rows if r["variant"] == "manual"}
    for r in rows:
        t = r["step_s_median"]
        for name, key in (("floor", "floor_ratio"), ("floor-needed", "floor_needed_ratio")):
            f = floors.get((where(r), name))
            r[key] = None if f is None else f / t
        b = minimal.get(where(r))
        r["vs_minimal"] = None if b is None else t / b
        m = manual.get(case(r))
        r["speedup_vs_manual"] = None if m is None else m / t


def measure_in_phases(vs: list[variants.Variant], budget, progress) -> list:
    """Time the variants of each (backend, device) together, one phase after the other.

    NumPy's OpenBLAS threads and XLA's CPU threads spin for a while after their work
    is done; interleaved, whichever ran last would slow the next one down (seen here:
    jit-step at 1024 wide ran 1.4x slower right after a NumPy variant). Each ratio
    compares variants of the same phase, except speedup_vs_manual across backends.
    """
    timings: list = [None] * len(vs)
    phases: dict = {}
    for i, v in enumerate(vs):
        phases.setdefault((v.backend, v.device), []).append(i)
    for (backend, device), idx in phases.items():
        progress(f"    timing the {backend} variants on {device}")
        time.sleep(PHASE_PAUSE_S)
        for i, t in zip(idx, measure([vs[i] for i in idx], budget, progress)):
            timings[i] = t
    return timings


def run(s: Settings, progress: Callable[[str], None] = lambda line: None, checkpoint=None) -> list[dict]:
    """All rows of one benchmark run, ratios included; ``checkpoint(rows)`` after each workload, if given."""
    groups = [(parse_spec(spec), dtype) for spec in s.specs for dtype in s.dtypes]
    rows: list[dict] = []
    for i, ((sizes, batch), dtype) in enumerate(groups, 1):
        wl = make_workload(sizes, batch, dtype)
        progress(f"[{i}/{len(groups)}] {wl.label} N={batch} {dtype}: building")
        with reference.x64_for(dtype):
            vs = build(wl, s, progress)
            timings = measure_in_phases(vs, s.budget, progress)
        for v, t in zip(vs, timings):
            rows.append(_row(wl, v, t))
            where = v.device + ("" if v.precision is None else f"/{v.precision}")
            step = f"{t.median:.4g} s/step (IQR {t.iqr:.2g}, {t.repeats} blocks)"
            progress(f"    {v.name:<12} {v.backend:<5} {where:<12} {step}")
        del vs
        add_ratios(rows)
        if checkpoint:
            checkpoint(rows)
    return rows
