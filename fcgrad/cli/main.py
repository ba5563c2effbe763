"""The ``fcgrad`` command: ``check`` (manual vs JAX vs finite differences), ``audit``, ``bench``.

Exit status: 0 when everything agrees, 1 when a comparison fails or a run diverges, 2 for bad
input or a run that cannot be done here (one line on stderr, no traceback), 130 on Ctrl-C, 143 on SIGTERM.
Output paths are checked and the run's memory estimated before any work; files are written
atomically. Only argparse and this package's light modules load before ``main`` runs, so Ctrl-C
at any moment after that ends in one line.
"""

import argparse
import sys

from fcgrad.cli.args import EXIT_CHECK, EXIT_TOP, OneLineParser, positive_float, seed_arg, sizes_arg


def add_problem_options(parser: argparse.ArgumentParser, *, audit: bool = False):
    """The options that choose a problem; shared by ``check`` and ``audit`` (whose help speaks of the blog's
    full-batch SGD on plain layers, and lists no digits). Every default is None here: the run description
    (``fcgrad.engine.description``) fills in the defaults below, so it can tell what was given and refuse what it
    cannot honour. Returns the group, for a command's own problem options."""
    from fcgrad.engine.description import EXAMPLES
    from fcgrad.manual.activations import ACTIVATIONS
    from fcgrad.manual.losses import LOSSES

    g = parser.add_argument_group("problem")
    g.add_argument(
        "--example",
        choices=[e for e in EXAMPLES if not (audit and e == "digits")],
        help="a built-in problem (default: and, the blog's"
        + (")" if audit else "; digits: scikit-learn's 8x8 digits, check only)"),
    )
    g.add_argument("--sizes", type=sizes_arg, help="layer widths for a random problem: 3,7,5,2 or 3-7-5-2")
    g.add_argument(
        "--activation",
        help=f"with --sizes or --data: one of {','.join(ACTIVATIONS)} for every layer, or one per layer "
        "(default: sigmoid, and a linear output layer for cross-entropy, hinge and bce-logits)",
    )
    g.add_argument(
        "--loss",
        choices=sorted(LOSSES),
        help="default: the example's; square with --sizes or --data; cross-entropy with --spec",
    )
    g.add_argument(
        "--batch", type=int, help="samples of a random problem (default: 8 with --sizes, 64 with --spec)"
    )
    drawn = "data and initial parameters" if audit else "data, initial parameters, mini-batches and dropout masks"
    g.add_argument(
        "--seed",
        type=seed_arg,
        help=f"random seed for {drawn} (default 0; refused when nothing is drawn, as for mazur)",
    )
    rates = "else 0.1" if audit else "else 0.1 for sgd, momentum and nesterov, 0.001 for rmsprop, adam and adamw"
    g.add_argument(
        "--lr",
        type=float,
        help=f"learning rate (default: the example's: and, xor 0.1, mazur 0.5{'' if audit else ', digits 0.01'}; "
        f"{rates})",
    )
    digits = "" if audit else "; digits 5 epochs"
    g.add_argument(
        "--steps", type=int, help=f"training steps (default: 10000 for and, xor, mazur; 1000 otherwise{digits})"
    )
    g.add_argument("--dtype", choices=["float64", "float32"], help="default float64")
    g.add_argument(
        "--data",
        metavar="FILE",
        help="your data: .npz with X (in, N), T (out, N) and optional w0, b0, w1, b1, ...; or .csv with --targets",
    )
    g.add_argument("--targets", metavar="NAMES", help="the CSV's target column names, comma-separated")
    return g


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


def description_from_args(args: argparse.Namespace):
    """The one description of the run the options ask for (``fcgrad.engine.description``), checked whole.

    Only the options given are passed on; a data file is read here (the edge), its arrays handed over.
    """
    from fcgrad.engine.description import CHECK_OPTIONS, Data, describe
    from fcgrad.files.data import read_file

    given = {name: getattr(args, name) for name in CHECK_OPTIONS if getattr(args, name, None) is not None}
    if "data" in given:
        targets = given["targets"].split(",") if "targets" in given else None
        given["data"] = Data(given["data"], *read_file(given["data"], targets))
    return describe(given)


def output_paths(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(--save, --json file) checked before any work, --plot too; a --json that prints gives None."""
    from fcgrad.files.output import check_output_path

    save = None if args.save is None else check_output_path(args.save, "--save", ".npz")
    json_path = None if args.json in (None, "-") else check_output_path(args.json, "--json", ".json")
    if getattr(args, "plot", None) is not None:
        target = check_output_path(args.plot, "--plot", ".png")
        from fcgrad.reports.plots import check_plot_target

        check_plot_target(target)  # matplotlib too, before the run
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

    chunk_bytes = getattr(run, "CHUNK_BYTES", budget.DEFAULT_CHUNK_BYTES)
    est = budget.estimate(p, keep_history=save is not None, chunk_bytes=chunk_bytes)
    disk = None if save is None else budget.free_disk(os.path.dirname(os.path.abspath(save)))
    budget.require_fit(est, save_path=save, memory=budget.available_memory(), disk=disk, knobs=memory_knobs(args))
    if save is not None and budget.save_note(est, save):
        terminal.say(f"{command}: {budget.save_note(est, save)}")
    return terminal.Progress(command) if terminal.progress_enabled(args.quiet) else None


def memory_knobs(args: argparse.Namespace) -> dict[str, str]:
    """The options that drive each part of the memory estimate (``fcgrad.engine.budget``), as this run was given."""
    data, example = getattr(args, "data", None), getattr(args, "example", None)
    if getattr(args, "spec", None) or getattr(args, "sizes", None) or data is None:
        widths = f"smaller {'--spec' if getattr(args, 'spec', None) else '--sizes'}"
    else:
        widths = f"narrower layers than {data}'s"
    if data is not None:
        samples = f"a --data file with fewer samples than {data}"
    elif example is not None:
        samples = f"fewer samples (--example {example} fixes its N)"
    else:
        samples = "a smaller --batch"
    steps = "fewer --epochs" if getattr(args, "epochs", None) is not None else "fewer --steps"
    return {"comparison": widths, "samples": samples, "histories": f"{steps} or no --save"}


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
    from fcgrad.reports.numbers import without_negative_zero

    data = without_negative_zero(data)
    if json_path is not None:
        write_json(json_path, data)
    terminal.write_out(json.dumps(data, indent=2) if args.json == "-" else text)


def finite_or_none(x):
    import math

    return float(x) if x is not None and math.isfinite(x) else None


def refuse_outputs(d, args: argparse.Namespace) -> None:
    """Outputs the run's form cannot honour, refused in one line before any work."""
    from fcgrad.manual.errors import FcgradError

    if d.kind == "toolbox" and args.plot is not None:
        raise FcgradError(
            "--plot draws the loss curves and per-step drift of full-batch SGD on plain layers; this run "
            f"({d.header()}) is checked step by step from manual's own state: expected no --plot"
        )
    if d.kind == "sharded":
        for option, value in (("--plot", args.plot), ("-v", args.verbose or None)):
            if value is not None:
                raise FcgradError(
                    f"--devices and {option}: the data-parallel check compares five sides and draws no figure or "
                    f"phase timings of its own; expected no {option} with --devices"
                )


def cmd_check(args: argparse.Namespace) -> int:
    """One description of the run, checked whole; the engine runs it; one header and one meta state it."""
    from fcgrad.engine.check_run import check_run

    command = "fcgrad check"
    d = description_from_args(args)
    refuse_outputs(d, args)
    devices = None
    if d.kind == "sharded":
        from fcgrad.engine.sharded import arrange_devices

        devices = arrange_devices(d.devices)  # first: JAX fixes its number of CPU devices when it starts
    save, json_path = output_paths(args)
    progress = prepare(command, args, d, save)
    try:
        keep = save is not None or args.plot is not None
        done = check_run(d, keep_history=keep, progress=progress, devices=devices)
    finally:
        if progress is not None:
            progress.close()
    from fcgrad.cli.render import render
    from fcgrad.files.meta import run_meta

    shown = render(done, quiet=args.quiet)
    meta = run_meta(command, d, final_loss=shown.final_loss, tolerances=shown.tolerances)
    if save is not None:
        save_arrays(save, shown.arrays, meta)
    if args.plot is not None:
        from fcgrad.reports.plots import plot_check

        write_plot(args.plot, plot_check, done.report.detail)  # --plot: the network form's own report
    emit_results(args, json_path, {"meta": meta, **shown.data}, shown.text)
    if args.verbose and shown.timings is not None:
        from fcgrad.cli import terminal

        terminal.say(shown.timings.text())
    return 0 if done.ok else 1


def save_arrays(path: str, arrays: dict, meta: dict) -> None:
    """The ``--save`` archive, atomically, with ``meta`` as a JSON string in a 0-d array."""
    import json

    import numpy as np

    from fcgrad.files.output import write_npz

    write_npz(path, lambda f: np.savez(f, **arrays, meta=np.array(json.dumps(meta))))


class VersionAction(argparse.Action):
    """``--version``: the version line, read from the installed distributions only when it is asked for (every
    command builds this parser, and reading four distributions' metadata takes tens of milliseconds)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from fcgrad.files.meta import version_line

        parser._print_message(version_line() + "\n", sys.stdout)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="fcgrad",
        description="Hand-derived matrix backprop, verified against JAX autodiff.",
        epilog=EXIT_TOP,
    )
    parser.add_argument("--version", action=VersionAction, help="show program's version number and exit")
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
        _end_on_signals(where)
    try:
        return _run(argv, where)
    except KeyboardInterrupt:  # a caller's own Ctrl-C, or an interrupt raised by the code that ran
        terminal.say(f"{where[0]}: interrupted")
        return 130


def _end_on_signals(where: list[str]) -> None:
    """Make Ctrl-C (SIGINT) and SIGTERM end the program at once, each with one line: exit 130 and 143 (128 + signal).

    Not by KeyboardInterrupt: raised inside a garbage-collection callback (JAX registers one), it is
    printed and ignored, and the run goes on (seen here); and a normal exit under JAX's running
    threads can crash. SIGTERM (``kill``, a CI runner's cancel, a job scheduler) would otherwise end
    the process where it stands and leave a half-written file. The handler removes any half-written
    output file, says why the program ends, then exits, whatever goes wrong on the way.
    """
    import signal

    from fcgrad.cli import terminal

    endings = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}

    def on_signal(signum, frame):
        try:
            remove_partial = getattr(sys.modules.get("fcgrad.files.output"), "remove_partial", None)
            if remove_partial is not None:  # None: the module never loaded, so no file is being written
                remove_partial()
            terminal.say(f"{where[0]}: {endings[signum]}")
        finally:
            exit_now(128 + signum)

    for signum in endings:
        signal.signal(signum, on_signal)


def exit_now(code: int) -> None:
    """End the process at once: work JAX dispatched may still be running in its threads, and tearing the
    interpreter down under it can crash (measured: a segmentation fault at exit after Ctrl-C)."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # RuntimeError: a signal landed inside this stream's own write
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
            f"{where[0]}: error: out of memory ({type(exc).__name__}); expected a smaller run: smaller --sizes or "
            "--spec, a smaller --batch, fewer --steps, or no --save"
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
