"""The ``fcgrad audit`` subcommand: options, the text report, ``--json`` and ``--save``.

Exit status 0 when the audit ran, whatever it found; with ``--strict``, 1 when it found a departure
or an unexplained difference; 2 for bad input; 130 on Ctrl-C. ``--code`` over several files or a folder
(``fcgrad.audits.code.many``): 0 every file clean, 1 a finding, 2 a file refused, timed out or crashed.
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fcgrad.cli.args import EXIT_AUDIT, positive_float
from fcgrad.cli.main import (
    add_output_options,
    add_problem_options,
    description_from_args,
    emit_results,
    finite_or_none,
    output_paths,
    prepare,
    save_archive,
    write_plot,
)
from fcgrad.engine.description import HYPER_OPTIONS, flag
from fcgrad.manual.blog_code import DEPARTURES, BlogDepartures
from fcgrad.manual.errors import FcgradError

if TYPE_CHECKING:  # the audit itself imports JAX: on first use, so that --help and a usage error need none
    from fcgrad.audits.blog import AuditReport

SGD_ONLY = "plain SGD"
# check's options that the audit cannot honour, each with the reason: it runs the blog's code, full-batch SGD on
# plain layers on one device. Parsed (never "unrecognized arguments") but left out of --help, and refused in one
# line naming every one given.
NOT_FOR_AUDIT = {
    "optimizer": SGD_ONLY,
    **{name: SGD_ONLY for name in HYPER_OPTIONS},
    "batch_size": "every column at every step",
    "l2": "no L2 term",
    "devices": "one device",
    "verbose": "no phase timings",
}
# audit's options that do not apply to --code, each with the reason
NOT_WITH_CODE = {
    "spec": "the layers and activations are your file's (--sizes gives their widths)",
    "epochs": "it counts --steps",
    "rtol": "each quantity is judged by the audit's own tolerances",
    "atol": "each quantity is judged by the audit's own tolerances",
}
EXIT_MANY = """\
with several --code files or a folder (each file one line, then a summary; --json: one object per file):
  0    every file clean (a module that other files of the run import is not counted)
  1    no file refused, but one has a finding, or its problem cannot tell right from wrong
  2    a file refused (one line each: why), timed out or crashed; or bad input"""
# the options of one --code file's audit that each file's process is given as they came
FOR_EACH_FILE = ("example", "sizes", "activation", "loss", "batch", "seed", "lr", "steps", "dtype", "data", "targets",
                 "weights", "samples")  # fmt: skip
# Two minutes a file: a correct file's audit takes a few seconds (2–10 s for the test fixtures on a busy 2-core
# machine, most of it starting Python and JAX), so only a file that hangs, or trains far longer than its audit
# needs, reaches it.
DEFAULT_TIMEOUT_S = 120.0
NOT_FOR_MANY = {"plot": "it draws one file's curves"}
NOT_FOR_ONE = {"jobs": "they pace the audits of several files", "timeout": "they pace the audits of several files"}
NOT_FOR_MANY_SAID = "{} with several --code files: {}; expected it with one file"
NOT_FOR_ONE_SAID = "{} with one --code file: {}; expected several files or a folder"
NOT_FOR_AUDIT_SAID = "{}: audit runs the blog's code ({}); expected them with fcgrad check, not audit"
NOT_WITH_CODE_SAID = "{} with --code: {}; expected none of them"


def register(subparsers) -> None:
    a = subparsers.add_parser(
        "audit",
        help="find where the blog's code departs from its math, against JAX",
        description=(
            "Run the blog's code (its published backward, as a variant of the manual path) and the JAX reference "
            "from the same parameters, both training every w and b by full-batch SGD, and report each departure "
            "that changes a number: its cause, the layer and quantity it corrupts, the error at step 0, and how "
            "training drifts."
        ),
        epilog=f"{EXIT_AUDIT}\n\n{EXIT_MANY}",
    )
    g = add_problem_options(a, audit=True)
    g.add_argument("--spec", help="a network of plain layers, such as 3-8:tanh-2:sigmoid (the blog's: no bn, ln, drop)")
    g.add_argument("--epochs", type=int, help="passes over the data, instead of --steps: full batch, one step each")
    a.add_argument(
        "--rtol", type=positive_float, help="the step-0 relative error that finds a departure (default: by dtype)"
    )
    a.add_argument(
        "--atol", type=positive_float, help="the parameter drift at which the two runs part (default: by dtype)"
    )
    a.add_argument(
        "--departures",
        metavar="NAMES",
        help=f"comma list of the departures switched on: {', '.join(DEPARTURES)}; or all (default) or none",
    )
    add_output_options(
        a, "write the data, initial params, the blog's code's and JAX's trajectories and a meta entry (atomically)"
    )
    a.add_argument(
        "--code",
        nargs="+",
        action="extend",  # --code a.py --code b.py: both
        metavar="PATH",
        help="audit your own NumPy network file: a class of layers, a class with train_step, step(params, X, T, lr), "
        "or forward(params, X) and backward(params, cache, T); several files or a folder (its .py files): each in "
        "a process of its own, one line per file and a summary",
    )
    a.add_argument(
        "--jobs",
        type=positive_int,
        metavar="N",
        help="with several --code files: how many are audited at once (default: the machine's cores)",
    )
    a.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help=f"with several --code files: a file still running after this long is stopped and reported as timed "
        f"out (default {DEFAULT_TIMEOUT_S:g})",
    )
    a.add_argument(
        "--weights",
        choices=["in,out", "out,in"],
        metavar="in,out|out,in",
        help="with --code: your w is (in, out), the blog's (default), or (out, in), PyTorch's; or WEIGHTS in the file",
    )
    a.add_argument(
        "--samples",
        choices=["columns", "rows"],
        help="with --code: one sample per column, x (in, N) and b (out, 1), the blog's (default); or per row, "
        "x (N, in) and b (out,); or SAMPLES in the file",
    )
    a.add_argument(
        "--strict", action="store_true", help="exit 1 when the audit finds anything (to gate CI on the blog's code)"
    )
    for name in NOT_FOR_AUDIT:  # taken as text, whatever it is, so that the refusal names it
        names = ["-v", "--verbose"] if name == "verbose" else [flag(name)]
        action = "store_true" if name == "verbose" else "store"
        a.add_argument(*names, dest=name, action=action, default=None, help=argparse.SUPPRESS)
    a.set_defaults(run=cmd_audit)


def _refuse_given(args: argparse.Namespace, reasons: dict[str, str], said_as: str) -> None:
    """One line naming every option of ``reasons`` that was given, with its value, and why it cannot be honoured
    (``said_as``: the line, with a place for the options and one for the reasons)."""
    given = [name for name in reasons if getattr(args, name, None) not in (None, False)]
    if not given:
        return
    said = []
    for name in given:
        value = getattr(args, name)
        said.append("-v" if name == "verbose" else flag(name) if value is True else f"{flag(name)} {value}")
    why = ", ".join(dict.fromkeys(reasons[name] for name in given))
    raise FcgradError(said_as.format(", ".join(said), why))


def audit_description(args: argparse.Namespace):
    """``audit``'s run description, checked whole before JAX is imported: every option of check that the blog's
    full-batch SGD on plain layers cannot honour is refused in one line, then the description's own refusals."""
    _refuse_given(args, NOT_FOR_AUDIT, NOT_FOR_AUDIT_SAID)
    d = description_from_args(args)
    if d.kind != "network":  # the options above are refused: only a spec's layers can leave the blog's form
        raise FcgradError(
            f"--spec {args.spec}: the blog's code has plain layers (z = wᵀx + b, then an activation); expected no bn, "
            "ln or drop in audit's --spec"
        )
    return d


def described_problem(args: argparse.Namespace):
    """``audit``'s run: (the description, its ``network`` form's problem: full-batch SGD on plain layers)."""
    d = audit_description(args)
    from fcgrad.engine.check_run import network_problem
    from fcgrad.engine.description import build

    return d, network_problem(d, *build(d))


def check_code_file(path: str) -> None:
    """``--code FILE.py`` refused in one line, before JAX is imported, unless it names an existing ``.py`` file that
    Python can compile (a syntax error is named at its line, as the audit itself names it)."""
    from pathlib import Path

    from fcgrad.engine.user_code import user_error

    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        raise FcgradError(f"--code: expected an existing .py file, got {path!r}")
    try:
        compile(file.read_bytes(), str(file), "exec")  # compiled only: nothing of the file runs here
    except (SyntaxError, ValueError) as exc:
        raise user_error(f"loading {file.name}", exc, str(file)) from None


@contextlib.contextmanager
def prints_to_stderr():
    """Everything written to the standard output while the user's code runs goes to stderr instead, at the level
    of the file descriptor: ``print``, ``sys.__stdout__`` and a C library's or a shell's writes alike, so that
    stdout holds the report alone (``--json``: one JSON document)."""
    for stream in (sys.stdout, sys.__stdout__):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptor 1 or 2 to move: the redirection of sys.stdout in the audit is all there is
        yield
        return
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.__stdout__):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                stream.flush()
        os.dup2(saved, 1)
        os.close(saved)


def positive_int(text: str) -> int:
    """``type=`` for ``--jobs``: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def cmd_code(args: argparse.Namespace) -> int:
    """``audit --code PATH...``: one file, as always; several files or a folder, each in a process of its own."""
    paths = args.code
    if len(paths) == 1 and not Path(paths[0]).is_dir():
        _refuse_given(args, NOT_FOR_ONE, NOT_FOR_ONE_SAID)
        return cmd_one(args, paths[0])
    return cmd_many(args, paths)


def _refuse_for_code(args: argparse.Namespace) -> None:
    """The options no audit of a user's file can honour, one line naming them."""
    _refuse_given(args, NOT_WITH_CODE, NOT_WITH_CODE_SAID)
    if args.save is not None:
        raise FcgradError("--save with --code: expected no --save (the audit of your code keeps no archive)")
    if args.departures is not None:
        raise FcgradError(
            "--departures with --code: the departures are switches of the blog's code, not of yours; "
            "expected no --departures"
        )
    if args.dtype not in (None, "float64"):
        raise FcgradError(f"--dtype {args.dtype} with --code: the audit runs your file in float64; expected no --dtype")


def cmd_one(args: argparse.Namespace, path: str) -> int:
    """``audit --code FILE``: the user's network against JAX; exit as ``audit`` (``--strict``: 1 on a finding)."""
    check_code_file(path)
    _refuse_for_code(args)
    given = args.example is not None or args.sizes is not None or args.data is not None
    problem = described_problem(args)[1] if given else None
    _, json_path = output_paths(args)
    from fcgrad.audits.code import audit_code
    from fcgrad.audits.code import report as code_audit_report
    from fcgrad.engine.description import describe_problem
    from fcgrad.files.meta import run_meta
    from fcgrad.reports.plots import plot_code_audit

    chosen = {} if given else {"lr": args.lr, "batch": args.batch, "seed": args.seed}
    activations = args.activation.split(",") if args.activation and "," in args.activation else args.activation
    with prints_to_stderr():
        report = audit_code(path, problem, steps=args.steps, weights=args.weights, samples=args.samples,
                            loss=args.loss, activations=activations, **chosen)  # fmt: skip
    write_plot(args.plot, plot_code_audit, report)
    meta = run_meta("fcgrad audit --code", describe_problem(report.problem), final_loss=None, tolerances={})
    meta["code"] = path
    shown = code_audit_report.text(report, quiet=args.quiet)
    emit_results(args, json_path, {"meta": meta, **code_audit_report.as_json(report)}, shown)
    return 1 if args.strict and (report.findings or report.cannot_tell) else 0


def _shown_value(name: str, value) -> str:
    return "-".join(map(str, value)) if name == "sizes" else str(value)


def cmd_many(args: argparse.Namespace, paths: list[str]) -> int:
    """``audit --code A.py B.py`` or ``--code FOLDER``: one line per file as each is done, then a summary (``-q``:
    the files that are not clean, and the summary); ``--json``: one object per file. Exit: ``EXIT_MANY``."""
    import json

    from fcgrad.audits.code import many as code_many
    from fcgrad.cli import terminal

    _refuse_for_code(args)
    _refuse_given(args, NOT_FOR_MANY, NOT_FOR_MANY_SAID)
    if args.example is not None or args.sizes is not None or args.data is not None:
        audit_description(args)  # a bad problem refused once here, not once per file
    files = code_many.files_of(paths)
    _, json_path = output_paths(args)
    options = []
    for name in FOR_EACH_FILE:
        value = getattr(args, name, None)
        if value is not None:
            options += [flag(name), _shown_value(name, value)]
    printing = args.json != "-"

    def say(outcome) -> None:
        if printing and not (args.quiet and outcome.status in (code_many.CLEAN, code_many.MODULE)):
            terminal.write_out(code_many.line(outcome))

    jobs = args.jobs or os.cpu_count() or 1
    timeout = args.timeout or DEFAULT_TIMEOUT_S
    outcomes = code_many.audit_files(files, options, jobs=jobs, timeout=timeout, on_each=say)
    data = code_many.as_json(outcomes)
    if json_path is not None:
        from fcgrad.files.output import write_json

        write_json(json_path, data)
    terminal.write_out(code_many.summary(outcomes) if printing else json.dumps(data, indent=2))
    return code_many.exit_status(outcomes)


def cmd_audit(args: argparse.Namespace) -> int:
    _refuse_given(args, NOT_FOR_AUDIT, NOT_FOR_AUDIT_SAID)
    if args.code is not None:
        return cmd_code(args)
    if args.weights is not None or args.samples is not None:
        raise FcgradError("--weights/--samples without --code: they are your file's layout; expected --code FILE.py")
    command = "fcgrad audit"
    departures = BlogDepartures.from_names(args.departures or "all")  # bad names fail before any work (and JAX)
    d = audit_description(args)
    save, json_path = output_paths(args)
    from fcgrad.audits.blog import as_json, audit
    from fcgrad.engine.check_run import network_problem
    from fcgrad.engine.description import build
    from fcgrad.files.meta import run_meta

    p = network_problem(d, *build(d))
    progress = prepare(command, args, p, save)
    try:
        kept = save is not None or args.plot is not None
        report = audit(p, departures, keep_history=kept, progress=progress, rtol=d.rtol, atol=d.atol)
    finally:
        if progress is not None:
            progress.close()
    tolerances = {"step0_rel": report.step0_tol, "trajectory_abs": report.trajectory_tol}
    final = {
        "blog": finite_or_none(report.combined.final_loss_blog),
        "jax": finite_or_none(report.combined.final_loss_jax),
    }
    meta = run_meta(command, d, final_loss=final, tolerances=tolerances)
    if save is not None:
        save_archive(save, report.problem, report.histories, meta)
    if args.plot is not None:
        from fcgrad.reports.plots import plot_audit

        write_plot(args.plot, plot_audit, report)
    emit_results(args, json_path, {"meta": meta, **as_json(report)}, text(report, quiet=args.quiet))
    found = bool(report.findings or report.unexplained)
    return 1 if args.strict and found else 0


def summary(report: "AuditReport") -> str:
    """The verdict line: how many findings, and where."""
    where = ", ".join(f"{f.cause} (layer {f.layer} {f.quantity})" for f in report.findings)
    return f"{len(report.findings)} finding(s): {where}" if report.findings else "no findings: the variant matches JAX"


def _unexplained(report: "AuditReport") -> list[str]:
    if not report.unexplained:
        return []
    where = "; ".join(
        f"layer {u['layer']} {u['quantity']} (causes: {u['causes'] or 'none'})" for u in report.unexplained
    )
    return [f"UNEXPLAINED differences, not attributed to exactly one departure: {where}"]


def text(report: "AuditReport", *, quiet: bool = False) -> str:
    """The audit as text; ``quiet``: the unexplained differences and the verdict line only."""
    from fcgrad.audits.drift import drift_lines
    from fcgrad.reports.check import describe

    if quiet:
        return "\n".join([*_unexplained(report), summary(report)])
    p = report.problem
    on = ", ".join(report.departures.on) or "none (the correct path)"
    parts = [
        f"fcgrad audit — {describe(p)}",
        f"the blog's code, departures on: {on}; both sides train every w and b, from the same parameters",
        "",
    ]
    first_of_cause: dict[str, int] = {}
    for k, f in enumerate(report.findings, 1):
        if f.cause in first_of_cause:  # one run per cause: its drift is printed once
            drift = [f"  over the steps: the same run as finding {first_of_cause[f.cause]} (only {f.cause} on)"]
        else:
            first_of_cause[f.cause] = k
            drift = drift_lines(f.trajectory, report.trajectory_tol)
        parts += [
            f"finding {k}: {f.cause} — layer {f.layer} {f.quantity}",
            f"  at step 0 (only this departure on, vs JAX): max|Δ| {f.max_abs_err:.2e}, rel {f.rel_err:.2e}",
            *drift,
            f"  why: {f.explanation}",
            "",
        ]
    for cause, why in report.not_found.items():
        parts += [f"no finding for {cause}: {why}", ""]
    parts += [f"combined ({on}) vs JAX:", *drift_lines(report.combined, report.trajectory_tol), ""]
    parts += _unexplained(report)
    parts.append(summary(report))
    return "\n".join(parts)
