"""A checked run as the command shows and keeps it: the text, the JSON, the ``--save`` arrays, the timings.

Whatever form of the engine ran, the text's first line states the whole run description
(``RunDescription.header``), the JSON's ``meta.problem`` holds all of it (``summary``), and the
JSON and the ``--save`` archive are the one ``RunReport``'s (``docs/run.schema.json``, ``docs/run.npz.json``):
the same keys for every form. The text is drawn from the form's own report (``RunReport.detail``).
"""

from typing import NamedTuple

from fcgrad.engine import tolerances as tol
from fcgrad.engine.check_run import CheckedRun


class Rendered(NamedTuple):
    text: str
    data: dict  # the JSON, without its meta
    tolerances: dict  # in force, for the meta
    final_loss: float | None  # manual's loss after the last step (the text's "final loss"); None if not computed
    timings: object  # a Timings, or None when the form keeps none
    arrays: dict  # the --save archive's arrays, less its meta


def _headed(text: str, done: CheckedRun) -> str:
    """The report with its first line replaced by the description's header."""
    lines = text.split("\n")
    head = f"fcgrad check — {done.description.header()}"
    if lines and lines[0].startswith("fcgrad check"):
        lines[0] = head
    else:
        lines.insert(0, head)
    return "\n".join(lines)


def quiet_text(text: str) -> str:
    """-q for the forms without a quiet text of their own: the failing rows, the named mistakes, the verdict."""
    lines = text.splitlines()
    return "\n".join([line for line in lines if "MISMATCH" in line or ": looks like" in line] + lines[-1:])


def render(done: CheckedRun, *, quiet: bool = False) -> Rendered:
    forms = {"network": _network, "toolbox": _toolbox, "digits": _digits, "sharded free": _sharded,
             "sharded local": _sharded_toolbox}  # fmt: skip
    text, tolerances = forms[done.report.form](done, quiet)
    data = done.report.as_json()
    return Rendered(text, data, tolerances, done.report.final_loss, done.report.timings, done.report.arrays())


def _network(done: CheckedRun, quiet: bool) -> tuple[str, dict]:
    from fcgrad.reports.check import text

    r = done.report.detail
    tolerances = {
        "gradient_rel": r.rtol,
        "trajectory_abs": r.atol,
        "finite_difference_rel": tol.FD_REL_TOL,
        "trajectory_rule": r.rule,
    }
    shown = text(r, quiet=quiet)
    return (shown if quiet else _headed(shown, done)), tolerances


def _toolbox_tolerances(p) -> dict:
    return {
        "gradient_rel": tol.grad_rel_tol(p.dtype) if p.rtol is None else p.rtol,
        "trajectory_abs": tol.traj_abs_tol(p.dtype) if p.atol is None else p.atol,
        "trajectory_rule": "local",
    }


def _toolbox(done: CheckedRun, quiet: bool) -> tuple[str, dict]:
    from fcgrad.cli.toolbox import text

    report = done.report
    r, rows = report.detail, report.gradients[0].rows
    named = {}  # the gradients' findings, as the text names them: (layer, stage) -> messages
    for f in report.findings:
        if f.step is None:
            named.setdefault((f.layer, f.quantity), []).append(f.message)
    tolerances = _toolbox_tolerances(r.problem)
    shown = _headed(text(r, rows, named), done)
    lines = shown.split("\n")
    lines.insert(1, _tolerance_line(tolerances, r.problem.dtype))
    shown = "\n".join(lines)
    return (quiet_text(shown) if quiet else shown), tolerances


def _tolerance_line(tolerances: dict, dtype: str) -> str:
    return (
        f"tolerances: gradients rel ≤ {tolerances['gradient_rel']:.1e}; every step max|Δ| ≤ "
        f"{tolerances['trajectory_abs']:.1e} × max(1, max|JAX|) (rule {tolerances['trajectory_rule']}, {dtype})"
    )


def _digits(done: CheckedRun, quiet: bool) -> tuple[str, dict]:
    from fcgrad.engine.digits import text

    r = done.report.detail
    tolerances = _toolbox_tolerances(r.check.problem)
    shown = _headed(text(r), done)
    lines = shown.split("\n")
    lines.insert(1, _tolerance_line(tolerances, r.check.problem.dtype))
    shown = "\n".join(lines)
    return (quiet_text(shown) if quiet else shown), tolerances


def _sharded(done: CheckedRun, quiet: bool) -> tuple[str, dict]:
    from fcgrad.reports.sharded import text

    r = done.report.detail
    p = r.problem
    tolerances = {
        "gradient_rel": tol.grad_rel_tol(p.dtype) if done.description.rtol is None else done.description.rtol,
        "trajectory_abs": tol.traj_abs_tol(p.dtype) if done.description.atol is None else done.description.atol,
        "trajectory_rule": "global",
    }
    shown = _headed(text(r), done)
    return (quiet_text(shown) if quiet else shown), tolerances


def _sharded_toolbox(done: CheckedRun, quiet: bool) -> tuple[str, dict]:
    from fcgrad.engine.row_table import table

    r, d = done.report.detail, done.description
    p = r.problem
    tolerances = _toolbox_tolerances(p)
    kind = r.devices[0].platform
    parts = [
        f"fcgrad check — {d.header()}",
        _tolerance_line(tolerances, p.dtype),
        f"{len(r.devices)} {kind} device(s); each step's columns in {len(r.devices)} blocks (all N: "
        f"{', '.join(map(str, r.shard_sizes))}); every side's step from the one-device manual side's state",
    ]
    for c in r.comparisons:
        parts += ["", table(f"{c.pair}: every one of {p.steps or len(p.schedule())} steps", c.rows)]
    bad = r.failures()
    parts.append("")
    if bad:
        parts.append(f"FAILED: {len(bad)} mismatch(es): " + ", ".join(f"{pair} layer {row.layer} {row.quantity}"
                                                                      for pair, row in bad))  # fmt: skip
    else:
        parts.append(f"OK: all five sides agree at every step over {len(r.devices)} devices")
    shown = "\n".join(parts)
    return (quiet_text(shown) if quiet else shown), tolerances
