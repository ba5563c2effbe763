"""One training step of a batch-normalised ReLU net with Adam: manual NumPy against ``jax.jit``.

The step is the one the toolbox check runs (``fcgrad.engine.toolbox``), on one mini-batch:

- ``manual``: ``manual.network.spec_loss_and_gradients`` (forward, hand-derived backward through
  batch norm, new running averages), then ``manual.optimizers.update`` (Adam, written by hand);
- ``jit-step``: ``reference.train.jit_spec_step`` (``jax.grad`` and optax's Adam), compiled ahead
  of time, parameters, optimizer state and batch on the device, one call per step;
- ``floor``: the step's matrix products alone, 3 per layer (``benchmarks.variants``' floors), NumPy
  for ``manual`` and one jitted call for ``jit-step``.

Each variant keeps training from where its previous call stopped. The timing is
``benchmarks.timing``'s (interleaved blocks, medians and IQRs), NumPy and JAX in separate phases
(``suite.measure_in_phases``); ratios compare numbers of the same run.

    python -m fcgrad.benchmarks.toolbox_step --json benchmarks/results/toolbox_cpu.json
    python -m fcgrad.benchmarks.toolbox_step --quick          # tiny sizes, a few seconds
"""

import datetime
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.benchmarks import flops, machine, variants
from fcgrad.benchmarks.suite import _row, add_ratios, measure_in_phases
from fcgrad.benchmarks.timing import FULL, QUICK, Budget
from fcgrad.cli.args import OneLineParser
from fcgrad.engine.toolbox import ToolboxProblem, make_problem
from fcgrad.manual import network, optimizers
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.spec import format_spec, init_running, parse_spec
from fcgrad.reference.precision import x64_for
from fcgrad.reference.train import init_opt_state, jit_spec_step

SPEC = "784-256:relu:bn-256:relu:bn-10"
BATCH = 256
QUICK_SPEC = "12-8:relu:bn-8:relu:bn-3"
QUICK_BATCH = 16
DATA_SEED = 0  # the batch (pixels in [0, 1), one-hot labels) and the initial parameters
LR = 1e-3  # Adam with optax's other defaults


@dataclass(frozen=True)
class Case:
    """One timed problem: a spec network, one mini-batch, cross-entropy, Adam."""

    problem: ToolboxProblem
    sizes: tuple[int, ...] = field(repr=False)  # (in, widths..., out)

    @property
    def dtype(self) -> str:
        return self.problem.dtype

    @property
    def batch(self) -> int:
        return int(self.problem.x.shape[1])

    @property
    def label(self) -> str:  # the sizes as the suite's rows name them
        return "-".join(map(str, self.sizes))


def make_case(spec: str, batch: int, dtype: str) -> Case:
    """Random pixels in [0, 1) (in, N) and one-hot labels (out, N); parameters from ``DATA_SEED``."""
    rng = np.random.default_rng(DATA_SEED)
    layers = parse_spec(spec)
    n_in, n_out = layers[0].n_in, layers[-1].n_out
    x = rng.uniform(0.0, 1.0, (n_in, batch))  # (in, N)
    t = np.eye(n_out)[:, rng.integers(0, n_out, batch)]  # (out, N) one-hot columns
    p = make_problem(
        spec, x, t, loss="cross-entropy", optimizer=optimizers.make_optimizer("adam", LR),
        seed=DATA_SEED, dtype=dtype, name=spec,
    )  # fmt: skip
    return Case(p, (n_in,) + tuple(layer.n_out for layer in layers))


# ---- the two steps, as the variants run them ------------------------------------------------


class ManualState(NamedTuple):
    params: list
    opt_state: dict
    running: list


def manual_start(case: Case) -> ManualState:
    p = case.problem
    params = [{k: v.copy() for k, v in layer.items()} for layer in p.params]
    return ManualState(params, optimizers.init_state(p.optimizer, params), init_running(p.spec, p.dtype))


def manual_step(case: Case, s: ManualState) -> tuple[ManualState, float]:
    """The toolbox check's manual step: gradients at ``s.params``, then the hand-written Adam -> (state, loss)."""
    p = case.problem
    masks = [None] * len(p.spec)  # no dropout in the timed nets
    g = network.spec_loss_and_gradients(s.params, p.x, p.t, p.spec, p.loss, masks, s.running, p.l2)
    params, opt_state = optimizers.update(p.optimizer, g.grads, s.opt_state, s.params)
    return ManualState(params, opt_state, g.running), g.loss


class JitStep(NamedTuple):
    compiled: Callable  # (params, opt_state, running, x, t, masks, lr, hyper, l2) -> (params, opt_state, running, ...)
    start: tuple  # (params, opt_state, running), on the device
    data: tuple  # (x, t, masks, lr, hyper, l2), on the device
    compile_s: float


def jit_step(case: Case, device) -> JitStep:
    """``reference.train.jit_spec_step`` compiled ahead for ``case`` on ``device`` (call inside ``x64_for``)."""
    p, dt = case.problem, np.dtype(case.dtype)
    to_jax = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, dt), tree)  # noqa: E731
    params, running = to_jax(p.params), to_jax(init_running(p.spec, dt))
    hyper = {k: jnp.asarray(v, dt) for k, v in p.optimizer.hyper.items()}
    lr, l2 = jnp.asarray(p.optimizer.lr, dt), jnp.asarray(p.l2, dt)
    opt_state = init_opt_state(p.optimizer.name, lr, hyper, params)
    start = jax.device_put((params, opt_state, running), device)
    data = jax.device_put((to_jax(p.x), to_jax(p.t), [None] * len(p.spec), lr, hyper, l2), device)
    start, data = jax.block_until_ready((start, data))
    static = {"spec": p.spec, "loss_name": p.loss, "opt_name": p.optimizer.name}
    begin = time.perf_counter()
    compiled = jit_spec_step.lower(*start, *data, **static).compile()
    return JitStep(compiled, start, data, time.perf_counter() - begin)


# ---- variants -------------------------------------------------------------------------------


def manual_variant(case: Case) -> variants.Variant:
    state = [manual_start(case)]

    def run(k: int) -> None:
        s = state[0]
        for _ in range(k):
            s, loss = manual_step(case, s)
            if not math.isfinite(loss):
                raise FloatingPointError("manual: the loss is not finite")
        state[0] = s

    return variants.Variant("manual", "numpy", "cpu", None, flops.ALL, 1, None, run)


def jit_step_variant(case: Case, device) -> variants.Variant:
    js = jit_step(case, device)
    state = [js.start]

    def run(k: int) -> None:
        s = state[0]
        for _ in range(k):
            s = js.compiled(*s, *js.data)[:3]
        state[0] = jax.block_until_ready(s)

    return variants.Variant("jit-step", "jax", device.platform, None, flops.NEEDED, 1, js.compile_s, run)


def build(case: Case, device) -> list[variants.Variant]:
    """manual, its NumPy floor, jit-step, its JAX floor (call inside ``x64_for(case.dtype)``)."""
    shapes = SimpleNamespace(params=case.problem.params, x=case.problem.x, batch=case.batch, dtype=case.dtype)
    ops = variants.floor_operands(shapes)  # (w, x, δ) per layer, the step's shapes and dtype
    return [
        manual_variant(case),
        variants.numpy_floor(ops, flops.ALL),
        jit_step_variant(case, device),
        variants.jax_floor(ops, device, None, flops.ALL),
    ]


# ---- one run --------------------------------------------------------------------------------

METHOD = {
    "step": "one mini-batch training step as the toolbox check runs it: training-mode forward with batch norm "
    "over the N columns (new running averages), softmax cross-entropy, every gradient, then Adam (optax's "
    "defaults, lr 1e-3); no dropout, no L2",
    "manual": "manual.network.spec_loss_and_gradients + manual.optimizers.update, new arrays every step, the "
    "loss read back and checked for finiteness; it also computes the first layer's residual_x (3 products "
    "per layer)",
    "jit-step": "reference.train.jit_spec_step (jax.grad + optax.adam), compiled ahead of time (compile_s), "
    "state and batch on the device, one call per step, every block ends with block_until_ready; XLA drops "
    "the first layer's residual_x (3 per layer less one)",
    "floor": "only the step's matrix products, 3 per layer (w^T x, x d^T, w d) on random operands of the step's "
    "shapes and dtype: NumPy into preallocated outputs for manual, one jitted call for jit-step; "
    "floor_ratio = floor time / variant time (1.0 = at the floor)",
    "timing": "median and IQR of interleaved blocks (benchmarks.timing), the NumPy pair and the JAX pair each "
    "in its own phase",
    "manual_over_jit": "manual median / jit-step median, same dtype, same run",
}


def summarize(rows: list[dict]) -> list[dict]:
    """Per dtype: the medians and IQRs of manual and jit-step, their floor ratios and manual / jit-step."""
    out = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        by = {r["variant"] + "/" + r["backend"]: r for r in rows if r["dtype"] == dtype}
        m, j = by["manual/numpy"], by["jit-step/jax"]
        out.append({
            "dtype": dtype,
            "manual_s": m["step_s_median"],
            "manual_iqr_s": m["step_s_iqr"],
            "manual_floor_ratio": m["floor_ratio"],
            "jit_step_s": j["step_s_median"],
            "jit_step_iqr_s": j["step_s_iqr"],
            "jit_step_floor_ratio": j["floor_ratio"],
            "jit_step_compile_s": j["compile_s"],
            "numpy_floor_s": by["floor/numpy"]["step_s_median"],
            "jax_floor_s": by["floor/jax"]["step_s_median"],
            "manual_over_jit": m["step_s_median"] / j["step_s_median"],
        })  # fmt: skip
    return out


def run(spec: str, batch: int, dtypes, budget: Budget, progress=lambda line: None) -> list[dict]:
    """Every row of one run, floor_ratio and speedup_vs_manual filled in from the same run."""
    device = variants.jax_device("cpu")
    rows: list[dict] = []
    for dtype in dtypes:
        case = make_case(spec, batch, dtype)
        progress(f"{format_spec(case.problem.spec)} N={batch} {dtype}: building")
        with x64_for(dtype):
            vs = build(case, device)
            timings = measure_in_phases(vs, budget, progress)
        for v, t in zip(vs, timings):
            rows.append(_row(case, v, t))  # the suite's row: a case has its sizes, batch, dtype and label
            progress(f"    {v.name:<9} {v.backend:<5} {t.median:.4g} s/step (IQR {t.iqr:.2g}, {t.repeats} blocks)")
    add_ratios(rows)
    for r in rows:  # the suite's ratios that have no baseline here
        del r["floor_needed_ratio"], r["vs_minimal"]
    return rows


def table(summary: list[dict]) -> str:
    lines = [
        "dtype    manual ms (IQR)   jit-step ms (IQR)   manual/jit  floor_ratio manual  floor_ratio jit",
    ]
    for s in summary:
        lines.append(
            f"{s['dtype']:<8} {1e3 * s['manual_s']:7.3f} ({1e3 * s['manual_iqr_s']:.3f})"
            f"   {1e3 * s['jit_step_s']:7.3f} ({1e3 * s['jit_step_iqr_s']:.3f})"
            f"   {s['manual_over_jit']:9.2f}  {s['manual_floor_ratio']:18.2f}  {s['jit_step_floor_ratio']:15.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m fcgrad.benchmarks.toolbox_step",
        description=f"Time one training step of {SPEC} (cross-entropy, Adam, N={BATCH}): manual NumPy vs jax.jit.",
    )
    parser.add_argument("--json", metavar="PATH", help="write the run (rows, summary, machine) as JSON")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_SPEC}, N={QUICK_BATCH}, few repeats")
    parser.add_argument("--dtypes", nargs="+", choices=("float64", "float32"), default=["float64", "float32"])
    args = parser.parse_args(argv)
    spec, batch, budget = (QUICK_SPEC, QUICK_BATCH, QUICK) if args.quick else (SPEC, BATCH, FULL)
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    result = {
        "benchmark": "toolbox_step",
        "spec": spec,
        "batch": batch,
        "loss": "cross-entropy",
        "optimizer": {"name": "adam", "lr": LR, **optimizers.DEFAULTS["adam"]},
        "quick": args.quick,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "method": METHOD,
        "machine": machine.machine(),
        "device": machine.device("cpu"),
        "versions": machine.versions(),
    }
    try:
        rows = run(spec, batch, args.dtypes, budget, progress)
    except FcgradError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["machine"]["loadavg_at_end"] = machine.load_average()
    result["rows"], result["summary"] = rows, summarize(rows)
    print(table(result["summary"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
