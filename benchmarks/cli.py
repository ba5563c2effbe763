"""``python -m fcgrad.benchmarks`` and ``fcgrad bench``: time the variants, print a table, write JSON and a plot.

Progress goes to stderr, one line per step of the run; the table and the performance goals go to stdout.
"""

import argparse
import datetime
import sys
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from fcgrad.benchmarks import report
from fcgrad.benchmarks.timing import FULL, QUICK
from fcgrad.benchmarks.workloads import CPU_SPECS, GPU_SPECS, QUICK_SPECS, parse_spec
from fcgrad.cli.args import EXIT_BENCH, OneLineParser, parse_sizes
from fcgrad.manual.errors import FcgradError

if TYPE_CHECKING:  # the timed variants import JAX: on first use, so that --help and a usage error need none
    from fcgrad.benchmarks import suite

METHOD = {
    "timing": "median and interquartile range of repeated blocks of calls, variants interleaved round by round; "
    "JAX compiled ahead of time (compile_s: trace + lower + compile), data on the device before timing, "
    "every block ends with block_until_ready",
    "floor": "floor = only the step's matrix products, 3 per layer (w^T x, x d^T, w d), on the SAME backend, "
    "device and precision as the variant: a NumPy floor for NumPy variants, a jitted JAX floor for JAX variants; "
    "floor_ratio = floor time / variant time (1.0 = at the floor)",
    "floor_needed": "floor-needed = the floor without the first layer's residual_x (w d), which training does not "
    "need: manual's training path and the baselines skip it, XLA removes it; "
    "floor_needed_ratio = floor-needed time / variant time",
    "gflops": "FLOPs of the products the variant does (2*in*out*N each; 3 per layer less the first layer's "
    "residual_x for every training variant, 3 per layer for 'floor', see 'products') / median step time; "
    "element-wise work not counted",
    "vs_minimal": "variant time / time of the minimal baseline of the same backend, device and precision "
    "(minimal-numpy: the blog's arithmetic in the fewest NumPy calls; minimal-jax: a bare fori_loop over "
    "jax.grad with nothing recorded), same run; 1.0 = as fast as the baseline",
    "speedup_vs_manual": "manual time / variant time, same sizes, batch and dtype, same run; "
    "manual runs on the host CPU",
    "step": "full-batch SGD, sigmoid layers, square loss, lr 0.1; jit-fused and minimal-jax time per step = "
    "call time / steps_per_call",
}


def spec_arg(text: str) -> str:
    """``type=`` for a network spec: sizes as everywhere in fcgrad (``784,256,10`` or ``784-256-10``), then an
    optional ``:N`` batch; returned in the ``784-256-10[:N]`` form the workloads read. A spec that does not
    parse is passed on unchanged, for ``parse_spec`` to refuse before any work."""
    sizes_text, colon, batch = text.partition(":")
    try:
        sizes = parse_sizes(sizes_text)
    except ValueError:
        return text
    return "-".join(map(str, sizes)) + (f":{batch}" if colon else "")


def _jax_platform(requested: str) -> str:
    import jax

    has_gpu = any(d.platform == "gpu" for d in jax.devices()) if jax.default_backend() != "cpu" else False
    if requested == "gpu" and not has_gpu:
        raise FcgradError(f"--device gpu: expected JAX to see a GPU, got only {jax.default_backend()} devices")
    if requested == "auto":
        return "gpu" if has_gpu else "cpu"
    return requested


def settings_from_args(args: argparse.Namespace, platform: str) -> "suite.Settings":
    from fcgrad.benchmarks import suite

    on_gpu = platform == "gpu"
    specs = args.sizes or (QUICK_SPECS if args.quick else GPU_SPECS if on_gpu else CPU_SPECS)
    for spec in specs:
        parse_spec(spec)  # bad sizes fail before any work
    precisions = args.precisions or (("default", "highest") if on_gpu else ("default",))
    budget = QUICK if args.quick else FULL
    if args.per_variant_s is not None and not args.per_variant_s > 0:
        raise FcgradError(f"--per-variant-s: expected a positive number of seconds, got {args.per_variant_s}")
    if args.min_repeats is not None and args.min_repeats < 1:
        raise FcgradError(f"--min-repeats: expected a positive count, got {args.min_repeats}")
    if args.per_variant_s is not None:
        budget = replace(budget, per_variant_s=args.per_variant_s)
    if args.min_repeats is not None:
        budget = replace(budget, min_repeats=args.min_repeats, max_repeats=max(args.min_repeats, budget.max_repeats))
    return suite.Settings(
        specs=tuple(specs),
        dtypes=tuple(args.dtypes),
        platform=platform,
        precisions=tuple(precisions),
        budget=budget,
        numpy_upto=args.numpy_upto,
        cpu_jax_upto=args.cpu_jax_upto if args.cpu_jax_upto is not None else (1024 if on_gpu else 0),
        fused_call_s=0.05 if args.quick else 0.25,
    )


def _write(path: str, result: dict) -> None:
    from fcgrad.files.output import write_json
    from fcgrad.reports.numbers import without_negative_zero

    write_json(path, without_negative_zero(result))  # atomically: a write cut short leaves the path as it was


def check_outputs(args: argparse.Namespace) -> None:
    """``--json`` and ``--plot`` checked as ``fcgrad check`` checks them, before any timing: the folder exists
    and is writable, the name ends in .json and .png, and matplotlib is there for the plot."""
    from fcgrad.files.output import check_output_path

    if args.checkpoint and args.json is None:
        raise FcgradError("--checkpoint: expected --json PATH to rewrite after every workload, got no --json")
    if args.json is not None:
        check_output_path(args.json, "--json", ".json")
    if args.plot is not None:
        from fcgrad.reports.plots import check_plot_target

        check_plot_target(check_output_path(args.plot, "--plot", ".png"))


def run_bench(args: argparse.Namespace) -> int:
    from fcgrad.benchmarks import machine, suite

    check_outputs(args)
    for spec in args.drift or ():
        parse_spec(spec)
    platform = _jax_platform(args.device)
    s = settings_from_args(args, platform)
    start = time.perf_counter()

    def progress(line: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {line}", file=sys.stderr, flush=True)

    mode = "quick" if args.quick else "full"
    progress(f"benchmarks: JAX on {platform}, sizes {' '.join(s.specs)}, {' '.join(s.dtypes)}, {mode} mode")
    result = {
        "machine": machine.machine(),
        "device": machine.device(platform),
        "versions": machine.versions(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "settings": {**asdict(s), "budget": asdict(s.budget)},
        "method": METHOD,
        "rows": [],
    }

    def checkpoint(rows: list[dict]) -> None:
        """--checkpoint: write what is measured so far, whole and marked partial, so a run cut short keeps it."""
        _write(args.json, {**result, "rows": rows, "partial": True})

    # without --checkpoint, --json is written once, whole, at the end: a run cut short (Ctrl-C, SIGTERM) leaves no
    # file of its own and a file already at the path as it was, as every command leaves the file it was writing
    if args.checkpoint:
        checkpoint([])
    if args.drift:  # first: quick, and then in every checkpoint
        from fcgrad.benchmarks.drift import gradient_drift

        result["drift"] = []
        for spec in args.drift:
            sizes, batch = parse_spec(spec)
            progress(f"gradient drift: {spec} N={batch}")
            result["drift"].append(gradient_drift(sizes, batch, platform, precisions=s.precisions))
    result["rows"] = rows = suite.run(s, progress, checkpoint if args.checkpoint else None)
    result["machine"]["loadavg_at_end"] = machine.load_average()
    result["goals"] = report.goals(rows)
    if args.json:
        _write(args.json, result)
        progress(f"wrote {args.json}")
    print(report.text_table(rows))
    if args.drift:
        print()
        print(report.drift_text(result["drift"]))
    if report.device_text(rows):
        print()
        print(report.device_text(rows))
    print()
    print(report.goals_text(rows, result["machine"]))
    if args.plot:
        from fcgrad.benchmarks.plot import plot
        from fcgrad.files.output import atomic_path

        with atomic_path(args.plot) as tmp:
            plot(result, tmp)
        progress(f"wrote {args.plot}")
    progress("done")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats: a smoke run of under a minute")
    p.add_argument("--json", metavar="PATH", help="write {machine, device, versions, date, rows, ...} here")
    p.add_argument(
        "--checkpoint",
        action="store_true",
        help="rewrite --json after every workload, marked partial until the run ends, so a run cut short keeps what "
        "it measured (without it: written once at the end; a run cut short leaves none)",
    )
    p.add_argument(
        "--plot", metavar="PATH.png", help="time per step against size, and the blog's loss curves (needs matplotlib)"
    )
    p.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default="auto",
        help="where the JAX variants run (default: a GPU if JAX sees one)",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        metavar="SPEC",
        type=spec_arg,
        help="networks such as 2-4-1, 2,4,1 or 784-256-256-10:256 (batch after the colon)",
    )
    p.add_argument("--dtypes", nargs="+", choices=("float64", "float32"), default=("float64", "float32"))
    p.add_argument(
        "--precisions",
        nargs="+",
        choices=("default", "highest"),
        help="float32 JAX matmul precisions (default: both on a GPU, default on CPU)",
    )
    p.add_argument(
        "--numpy-upto", type=int, metavar="WIDTH", help="run the NumPy variants only on nets at most this wide"
    )
    p.add_argument(
        "--cpu-jax-upto",
        type=int,
        metavar="WIDTH",
        help="with a GPU, also run the JAX variants on the CPU for nets at most this wide (default 1024)",
    )
    p.add_argument("--per-variant-s", type=float, metavar="S", help="seconds of timing per variant and workload")
    p.add_argument("--min-repeats", type=int, metavar="K", help="fewest timed blocks per variant")
    p.add_argument(
        "--drift",
        nargs="+",
        metavar="SPEC",
        type=spec_arg,
        help="also measure the gradient drift from float64 manual at these sizes",
    )


def register(subparsers) -> None:
    """``fcgrad bench``."""
    p = subparsers.add_parser(
        "bench",
        help="time manual NumPy against jax.jit (the benchmarks package)",
        description="Time hand-written NumPy backprop against jax.jit.",
        epilog=EXIT_BENCH,
    )
    add_arguments(p)
    p.set_defaults(run=run_bench)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m fcgrad.benchmarks",
        description="Time hand-written NumPy backprop against jax.jit.",
        epilog=EXIT_BENCH,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_bench(args)
    except (FcgradError, OSError) as exc:
        print(f"fcgrad bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcgrad bench: interrupted", file=sys.stderr)
        if argv is None:  # the program itself: end before JAX's threads meet the interpreter's teardown
            from fcgrad.cli.main import exit_now

            exit_now(130)
        return 130
