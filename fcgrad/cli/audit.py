"""The ``fcgrad audit`` subcommand: options, the text report, ``--json`` and ``--save``.

Exit status 0 when the audit ran, whatever it found; with ``--strict``, 1 when it found a departure
or an unexplained difference; 2 for bad input; 130 on Ctrl-C.
"""

import argparse
from typing import TYPE_CHECKING

from fcgrad.cli.args import EXIT_AUDIT
from fcgrad.cli.main import (
    add_output_options,
    add_problem_options,
    described_problem,
    emit_results,
    finite_or_none,
    output_paths,
    prepare,
    problem_from_args,
    save_archive,
    write_plot,
)
from fcgrad.manual.blog_code import DEPARTURES, BlogDepartures
from fcgrad.manual.errors import FcgradError

if TYPE_CHECKING:  # the audit itself imports JAX: on first use, so that --help and a usage error need none
    from fcgrad.audits.blog import AuditReport


def register(subparsers) -> None:
    a = subparsers.add_parser(
        "audit",
        help="find where the blog's code departs from its math, against JAX",
        description=(
            "Run the blog's code (its published backward, as a variant of the manual path) and the JAX reference "
            "from the same parameters, both training every w and b, and report each departure that changes "
            "a number: its cause, the layer and quantity it corrupts, the error at step 0, and how training drifts."
        ),
        epilog=EXIT_AUDIT,
    )
    add_problem_options(a)
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
        metavar="FILE.py",
        help="audit your own NumPy network file: a class of layers, a class with train_step, step(params, X, T, lr), "
        "or forward(params, X) and backward(params, cache, T)",
    )
    a.add_argument(
        "--weights",
        choices=["in,out", "out,in"],
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
    a.set_defaults(run=cmd_audit)


def check_code_file(path: str) -> None:
    """``--code FILE.py`` refused in one line, before JAX is imported, unless it names an existing ``.py`` file."""
    from pathlib import Path

    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        raise FcgradError(f"--code: expected an existing .py file, got {path!r}")


def cmd_code(args: argparse.Namespace) -> int:
    """``audit --code FILE``: the user's network against JAX; exit as ``audit`` (``--strict``: 1 on a finding)."""
    check_code_file(args.code)
    from fcgrad.audits import report as code_audit_report
    from fcgrad.audits.code import audit_code
    from fcgrad.engine.description import describe_problem
    from fcgrad.files.meta import run_meta
    from fcgrad.reports.plots import plot_code_audit

    if args.save is not None:
        raise FcgradError("--save with --code: expected no --save (the audit of your code keeps no archive)")
    if args.departures is not None:
        raise FcgradError(
            "--departures with --code: the departures are switches of the blog's code, not of yours; "
            "expected no --departures"
        )
    if args.dtype not in (None, "float64"):
        raise FcgradError(f"--dtype {args.dtype} with --code: the audit runs your file in float64; expected no --dtype")
    given = args.example is not None or args.sizes is not None or args.data is not None
    problem = problem_from_args(args) if given else None
    _, json_path = output_paths(args)
    chosen = {} if given else {"lr": args.lr, "batch": args.batch, "seed": args.seed}
    activations = args.activation.split(",") if args.activation and "," in args.activation else args.activation
    report = audit_code(args.code, problem, steps=args.steps, weights=args.weights, samples=args.samples,
                        loss=args.loss, activations=activations, **chosen)  # fmt: skip
    write_plot(args.plot, plot_code_audit, report)
    meta = run_meta("fcgrad audit --code", describe_problem(report.problem), final_loss=None, tolerances={})
    meta["code"] = args.code
    shown = code_audit_report.text(report, quiet=args.quiet)
    emit_results(args, json_path, {"meta": meta, **code_audit_report.as_json(report)}, shown)
    return 1 if args.strict and report.findings else 0


def cmd_audit(args: argparse.Namespace) -> int:
    if args.code is not None:
        return cmd_code(args)
    if args.weights is not None or args.samples is not None:
        raise FcgradError("--weights/--samples without --code: they are your file's layout; expected --code FILE.py")
    command = "fcgrad audit"
    departures = BlogDepartures.from_names(args.departures or "all")  # bad names fail before any work (and JAX)
    from fcgrad.audits.blog import as_json, audit
    from fcgrad.files.meta import run_meta

    d, p = described_problem(args)
    save, json_path = output_paths(args)
    progress = prepare(command, args, p, save)
    try:
        report = audit(p, departures, keep_history=save is not None or args.plot is not None, progress=progress)
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
