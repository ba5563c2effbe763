"""The ``fcgrad audit`` subcommand: options, the text report, and ``--save``.

Exit status 0 when the audit ran, whatever it found; 2 for bad input.
"""

import argparse
import json

from crosscheck.audit import AuditReport, Divergence, as_json, audit
from crosscheck.cli import add_problem_options, problem_from_args
from crosscheck.report import describe
from crosscheck.run import save_npz
from manual.blog_code import DEPARTURES, BlogDepartures


def register(subparsers) -> None:
    a = subparsers.add_parser(
        "audit",
        help="find where the blog's code departs from its math, against JAX",
        description=(
            "Run the blog's published code (as a variant of the manual path) and the JAX reference "
            "from the same parameters, both training every w and b, and report each departure that changes "
            "a number: its cause, the layer and quantity it corrupts, the error at step 0, and how training drifts."
        ),
    )
    add_problem_options(a)
    a.add_argument(
        "--departures",
        default="all",
        metavar="NAMES",
        help=f"comma list of the departures switched on: {', '.join(DEPARTURES)}; or all (default) or none",
    )
    a.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    a.add_argument("--save", metavar="PATH.npz", help="write the blog-code trajectory, initial params and data")
    a.set_defaults(run=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    departures = BlogDepartures.from_names(args.departures)  # bad names fail before any work
    p = problem_from_args(args)
    report = audit(p, departures, keep_history=args.save is not None)
    if args.save:
        save_npz(args.save, p, report.histories)
    print(json.dumps(as_json(report), indent=2) if args.json else text(report))
    return 0


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def _drift(d: Divergence, tol: float) -> list[str]:
    if d.steps == 0 and d.diverged_at_step is None:
        return ["  over 0 steps: nothing to compare"]
    first = (
        f"first beyond {tol:.0e} at step {d.first_step_params_differ}"
        if d.first_step_params_differ is not None
        else f"never beyond {tol:.0e}"
    )
    lines = [
        f"  over {d.steps} steps: max|Δloss| {d.loss_max_abs_diff:.2e}, "
        f"max|Δparam| {d.param_max_abs_diff:.2e} ({first})"
    ]
    if d.diverged_at_step is not None:
        lines.append(f"  the blog-code variant diverged: its loss is not finite at step {d.diverged_at_step}")
    lines.append(f"    {'step':>7}  {'loss blog':>12}  {'loss JAX':>12}  {'max|Δparam|':>11}")
    for c in d.checkpoints:
        lines.append(
            f"    {c['step']:>7}  {_num(c['loss_seed']):>12}  {_num(c['loss_jax']):>12}"
            f"  {c['param_max_abs_diff']:>11.2e}"
        )
    return lines


def text(report: AuditReport) -> str:
    p = report.problem
    on = ", ".join(report.departures.on) or "none (the correct path)"
    parts = [
        f"fcgrad audit — {describe(p)}",
        f"blog-code variant: departures on: {on}; both sides train every w and b, from the same parameters",
        "",
    ]
    first_of_cause: dict[str, int] = {}
    for k, f in enumerate(report.findings, 1):
        if f.cause in first_of_cause:  # one run per cause: its drift is printed once
            drift = [f"  over the steps: the same run as finding {first_of_cause[f.cause]} (only {f.cause} on)"]
        else:
            first_of_cause[f.cause] = k
            drift = _drift(f.trajectory, report.trajectory_tol)
        parts += [
            f"finding {k}: {f.cause} — layer {f.layer} {f.quantity}",
            f"  at step 0 (only this departure on, vs JAX): max|Δ| {f.max_abs_err:.2e}, rel {f.rel_err:.2e}",
            *drift,
            f"  why: {f.explanation}",
            "",
        ]
    for cause, why in report.not_found.items():
        parts += [f"no finding for {cause}: {why}", ""]
    parts += [f"combined ({on}) vs JAX:", *_drift(report.combined, report.trajectory_tol), ""]
    if report.unexplained:
        where = "; ".join(
            f"layer {u['layer']} {u['quantity']} (causes: {u['causes'] or 'none'})" for u in report.unexplained
        )
        parts.append(f"UNEXPLAINED differences, not attributed to exactly one departure: {where}")
    summary = ", ".join(f"{f.cause} (layer {f.layer} {f.quantity})" for f in report.findings)
    parts.append(
        f"{len(report.findings)} finding(s): {summary}" if report.findings else "no findings: the variant matches JAX"
    )
    return "\n".join(parts)
