"""The ``fcgrad`` command: ``check`` (manual vs JAX vs finite differences), ``audit``, ``bench``.

Exit status: 0 when everything agrees, 1 when a comparison fails or a run diverges, 2 for bad
input or a run that cannot be done here (one line on stderr, no traceback), 130 on Ctrl-C.
Output paths are checked and the run's memory estimated before any work; files are written
atomically. Only argparse and this package's light modules load before ``main`` runs, so Ctrl-C
at any moment after that ends in one line.
"""

import argparse
import sys

from fcgrad.cli.args import EXIT_CHECK, EXIT_TOP, OneLineParser, positive_float, seed_arg, sizes_arg


class _Given(argparse.Action):
    """Store the value and note that it was given (``args.seed_given``), so an option without effect can say so."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def add_problem_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose a problem; shared by ``check`` and ``audit``."""
    from fcgrad.engine.problems import EXAMPLES
    from fcgrad.manual.activations import ACTIVATIONS
    from fcgrad.manual.losses import LOSSES

    g = parser.add_argument_group("problem")
    g.add_argument(
        "--example",
        choices=(*EXAMPLES, "digits"),
        help="a built-in problem (default: and, the blog's; digits: scikit-learn's 8x8 digits, check only)",
    )
    g.add_argument("--sizes", type=sizes_arg, help="layer widths for a random problem: 3,7,5,2 or 3-7-5-2")
    g.add_argument(
        "--activation",
        help=f"one of {','.join(ACTIVATIONS)} for every layer, or a comma list with one per layer",
    )
    g.add_argument("--loss", choices=sorted(LOSSES), help="default: square")
    g.add_argument("--batch", type=int, help="samples in a random problem (default 8)")
    g.add_argument(
        "--seed",
        type=seed_arg,
        default=0,
        action=_Given,
        help="random seed for data and initial parameters (default 0; mazur has none)",
    )
    g.add_argument("--lr", type=float, help="learning rate (default: the example's, else 0.1)")
    g.add_argument("--steps", type=int, help="training steps (default: 10000 for examples, 1000 for --sizes)")
    g.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    g.add_argument(
        "--data",
        metavar="FILE",
        help="your data: .npz with X (in, N), T (out, N) and optional w0, b0, w1, b1, ...; or .csv with --targets",
    )
    g.add_argument("--targets", metavar="NAMES", help="the CSV's target column names, comma-separated")


def add_output_options(parser: argparse.ArgumentParser, save_help: str) -> None:
    """``-q``, ``--json [PATH]`` and ``--save PATH.npz``; shared by ``check`` and ``audit``."""
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the verdict and what failed")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH.json",
        help="print one JSON object instead of the text; with a path, write it there and print the text",
    )
    parser.add_argument("--save", metavar="PATH.npz", help=save_help)
    parser.add_argument(
        "--plot", metavar="PATH.png", help="draw both loss curves and each row's per-step max|Δ| (needs matplotlib)"
    )


def problem_from_args(args: argparse.Namespace):
    from fcgrad.engine.problems import example, random_problem
    from fcgrad.manual.errors import FcgradError

    acts = args.activation.split(",") if args.activation else None
    if acts is not None and len(acts) == 1:
        acts = acts[0]  # one name: every layer
    if args.example == "digits":
        raise FcgradError("--example digits: expected it with fcgrad check (it trains a spec network), got audit")
    if args.data is not None:
        from fcgrad.files.data import load_problem

        if args.example is not None:
            raise FcgradError(f"--example {args.example} and --data: expected one of the two, got both")
        p = load_problem(
            args.data,
            targets=args.targets.split(",") if args.targets else None,
            sizes=args.sizes,
            activations=acts,
            loss=args.loss or "square",
            seed=args.seed,
        )
        return p.with_options(lr=args.lr, steps=args.steps, dtype=args.dtype)
    if args.targets is not None:
        raise FcgradError("--targets names the columns of a CSV: expected it with --data FILE.csv, got no --data")
    if args.sizes is not None:
        if args.example is not None:
            raise FcgradError(f"--example {args.example} and --sizes: expected one of the two, got both")
        p = random_problem(
            args.sizes,
            activations=acts,
            loss=args.loss or "square",
            batch=8 if args.batch is None else args.batch,
            seed=args.seed,
        )
    else:
        for name in ("activation", "loss", "batch"):
            if getattr(args, name) is not None:
                raise FcgradError(
                    f"--{name} needs --sizes: the built-in examples fix their network; got --{name} without --sizes"
                )
        p = example(args.example or "and", seed=args.seed)
    return p.with_options(lr=args.lr, steps=args.steps, dtype=args.dtype)


def ignored_options(args: argparse.Namespace, p) -> list[str]:
    """Notes for options given that change nothing."""
    if getattr(args, "seed_given", False) and p.seed is None:
        return [f"--seed {args.seed} has no effect: {p.name}'s weights and data are fixed by its source, not drawn"]
    return []


def output_paths(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(--save, --json file) checked before any work, --plot too; a --json that prints gives None."""
    from fcgrad.files.output import check_output_path

    save = None if args.save is None else check_output_path(args.save, "--save", ".npz")
    json_path = None if args.json in (None, "-") else check_output_path(args.json, "--json", ".json")
    if getattr(args, "plot", None) is not None:
        from fcgrad.reports.plots import check_plot_target

        check_plot_target(check_output_path(args.plot, "--plot", ".png"))  # matplotlib too, before the run
    return save, json_path


def write_plot(path: str | None, draw, report) -> None:
    """``draw(report, temporary path)`` then rename: a plot is written atomically like every output."""
    if path is None:
        return
    from fcgrad.files.output import atomic_path

    with atomic_path(path) as tmp:
        draw(report, tmp)


def prepare(command: str, args: argparse.Namespace, p, save: str | None):
    """Notes, the memory and disk check, and the progress printer (None when quiet or not a terminal)."""
    import os

    from fcgrad.cli import terminal
    from fcgrad.engine import budget, run

    for note in ignored_options(args, p):
        terminal.say(f"{command}: note: {note}")
    chunk_bytes = getattr(run, "CHUNK_BYTES", budget.DEFAULT_CHUNK_BYTES)
    est = budget.estimate(p, keep_history=save is not None, chunk_bytes=chunk_bytes)
    disk = None if save is None else budget.free_disk(os.path.dirname(os.path.abspath(save)))
    budget.require_fit(est, save_path=save, memory=budget.available_memory(), disk=disk)
    if save is not None and budget.save_note(est, save):
        terminal.say(f"{command}: {budget.save_note(est, save)}")
    return terminal.Progress(command) if terminal.progress_enabled(args.quiet) else None


def save_archive(path: str, p, histories: dict, meta: dict) -> None:
    """The ``--save`` archive, atomically, with ``meta`` as a JSON string in a 0-d array."""
    import json

    import numpy as np

    from fcgrad.engine.run import save_npz
    from fcgrad.files.output import write_npz

    write_npz(path, lambda f: save_npz(f, p, {**histories, "meta": np.array(json.dumps(meta))}))


def emit_results(args: argparse.Namespace, json_path: str | None, data: dict, text: str) -> None:
    """The JSON to its file or to stdout, and the text unless the JSON took stdout."""
    import json

    from fcgrad.cli import terminal
    from fcgrad.files.output import write_json

    if json_path is not None:
        write_json(json_path, data)
    terminal.write_out(json.dumps(data, indent=2) if args.json == "-" else text)


def quiet_text(text: str) -> str:
    """``-q`` for the reports that have no quiet form of their own: the failing rows and the verdict (last line)."""
    lines = text.splitlines()
    return "\n".join([line for line in lines if "MISMATCH" in line or ": looks like" in line] + lines[-1:])


def finite_or_none(x):
    import math

    return float(x) if x is not None and math.isfinite(x) else None


def cmd_check(args: argparse.Namespace) -> int:
    from fcgrad.cli.toolbox import run_toolbox, wants_toolbox
    from fcgrad.engine import run
    from fcgrad.engine import tolerances as tol
    from fcgrad.files.meta import run_meta
    from fcgrad.reports.check import as_json, text

    if args.devices is not None:
        return cmd_check_sharded(args)
    if wants_toolbox(args):
        return run_toolbox(args)
    command = "fcgrad check"
    p = problem_from_args(args)
    save, json_path = output_paths(args)
    progress = prepare(command, args, p, save)
    try:
        report = run.check(
            p, keep_history=save is not None or args.plot is not None, rtol=args.rtol, atol=args.atol, progress=progress
        )
    finally:
        if progress is not None:
            progress.close()
    tolerances = {
        "gradient_rel": report.rtol,
        "trajectory_abs": report.atol,
        "finite_difference_rel": tol.FD_REL_TOL,
        "trajectory_rule": report.rule,
    }
    meta = run_meta(command, p, final_loss=finite_or_none(report.final_loss), tolerances=tolerances)
    if save is not None:
        save_archive(save, p, report.histories, meta)
    if args.plot is not None:
        from fcgrad.reports.plots import plot_check

        write_plot(args.plot, plot_check, report)
    emit_results(args, json_path, {"meta": meta, **as_json(report)}, text(report, quiet=args.quiet))
    if args.verbose and report.timings is not None:
        from fcgrad.cli import terminal

        terminal.say(report.timings.text())
    return 0 if report.ok and report.diverged_at_step is None else 1


def cmd_check_sharded(args: argparse.Namespace) -> int:
    """``check --devices S``: one-device and sharded manual and JAX, five sides compared at every step."""
    from fcgrad.engine.sharded import arrange_devices, sharded_check
    from fcgrad.manual.errors import FcgradError
    from fcgrad.reports.sharded import as_json, text

    unsupported = [f"--{o}" for o in ("save", "plot") if getattr(args, o) is not None]
    if unsupported:
        raise FcgradError(f"--devices compares five sides and keeps no histories: expected no {unsupported[0]}")
    devices = arrange_devices(args.devices)  # first: JAX fixes its number of CPU devices when it starts
    _, json_path = output_paths(args)
    report = sharded_check(problem_from_args(args), len(devices))
    shown = text(report)
    emit_results(args, json_path, as_json(report), quiet_text(shown) if args.quiet else shown)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    from fcgrad.files.meta import version_line

    parser = OneLineParser(
        prog="fcgrad",
        description="Hand-derived matrix backprop, verified against JAX autodiff.",
        epilog=EXIT_TOP,
    )
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="{check,audit,bench}")
    c = sub.add_parser(
        "check",
        help="compare manual backprop with JAX and finite differences",
        description=(
            "Compare the hand-derived backward pass with JAX autodiff at the initial parameters (every layer's "
            "residual_z, grad_w, grad_b, residual_x), with central finite differences, and at every training step."
        ),
        epilog=EXIT_CHECK,
    )
    add_problem_options(c)
    add_output_options(c, "write the data, initial params, both trajectories and a meta entry (atomically)")
    c.add_argument(
        "-v", "--verbose", action="store_true", help="print where the time went (phases, JAX compiling) on stderr"
    )
    c.add_argument("--rtol", type=positive_float, help="gradient relative tolerance (default: by dtype)")
    c.add_argument("--atol", type=positive_float, help="trajectory absolute tolerance (default: by dtype)")
    c.add_argument(
        "--devices",
        type=int,
        metavar="S",
        help="split the batch over S devices (host CPU devices unless JAX has GPUs): one-device and sharded "
        "manual and JAX compared at every step",
    )
    from fcgrad.cli.toolbox import add_toolbox_options

    add_toolbox_options(c)
    c.set_defaults(run=cmd_check)
    for extra in ("fcgrad.cli.audit", "fcgrad.benchmarks.cli"):
        try:
            module = __import__(extra, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != extra:
                raise
            continue
        module.register(sub)
    parser.commands = dict(sub.choices)  # name -> subparser
    return parser


def _out_of_memory(exc: BaseException) -> bool:
    """NumPy's MemoryError, or the accelerator's RESOURCE_EXHAUSTED from JAX."""
    return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc)[:200]


def main(argv: list[str] | None = None) -> int:
    from fcgrad.cli import terminal

    where = ["fcgrad"]  # the command's name, once known, for the one-line messages
    if argv is None:  # the program itself, not a caller in Python
        _end_on_ctrl_c(where)
    try:
        return _run(argv, where)
    except KeyboardInterrupt:  # a caller's own Ctrl-C, or an interrupt raised by the code that ran
        terminal.say(f"{where[0]}: interrupted")
        return 130


def _end_on_ctrl_c(where: list[str]) -> None:
    """Make Ctrl-C end the program at once, with one line and exit 130.

    Not by KeyboardInterrupt: raised inside a garbage-collection callback (JAX registers one), it is
    printed and ignored, and the run goes on (seen here); and a normal exit under JAX's running
    threads can crash. The handler removes any half-written output file, then exits.
    """
    import signal

    def on_sigint(signum, frame):
        from fcgrad.cli import terminal
        from fcgrad.files.output import remove_partial

        remove_partial()
        terminal.say(f"{where[0]}: interrupted")
        exit_now(130)

    signal.signal(signal.SIGINT, on_sigint)


def exit_now(code: int) -> None:
    """End the process at once: work JAX dispatched may still be running in its threads, and tearing the
    interpreter down under it can crash (measured: a segmentation fault at exit after Ctrl-C)."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _run(argv: list[str] | None, where: list[str]) -> int:
    from fcgrad.cli import terminal
    from fcgrad.manual.errors import FcgradError

    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the subcommand, whose options the user was writing
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        where[0] = f"fcgrad {args.command}"
        return args.run(args)
    except FcgradError as exc:
        terminal.say(f"{where[0]}: error: {exc}")
        return 2
    except BrokenPipeError:  # stdout closed outside the report's own write (which handles it)
        terminal.silence_stdout()
        return 1
    except OSError as exc:  # a write that failed after the checks, e.g. a full disk
        terminal.say(f"{where[0]}: error: {exc}")
        return 2
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
        terminal.say(
            f"{where[0]}: error: out of memory ({type(exc).__name__}); expected fewer --steps, smaller --sizes, "
            "or no --save"
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
