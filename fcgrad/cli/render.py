"""A checked run as the command shows and keeps it: the text, the JSON, the ``--save`` arrays, the timings.

Whatever form of the engine ran, the text's first line states the whole run description
(``RunDescription.header``), the JSON's ``meta.problem`` holds all of it (``summary``), and the
``--save`` archive holds the data, the initial parameters and every step of both sides.
"""

from typing import NamedTuple

import numpy as np

from fcgrad.engine import tolerances as tol
from fcgrad.engine.check_run import CheckedRun


class Rendered(NamedTuple):
    text: str
    data: dict  # the JSON, without its meta
    tolerances: dict  # in force, for the meta
    final_loss: float | None
    timings: object  # a Timings, or None when the form keeps none
    arrays: dict | None  # the --save archive's arrays (None: the form keeps no histories)


def _finite_or_none(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


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


def _initial_arrays(x, t, params) -> dict:
    arrays = {"X": x, "T": t}
    for i, layer in enumerate(params):
        for key, value in layer.items():
            arrays[f"{key}{i}_init"] = value
    return arrays


def render(done: CheckedRun, *, quiet: bool = False) -> Rendered:
    d = done.description
    if d.kind == "network":
        return _network(done, quiet)
    if d.kind == "sharded" and d.step_form == "local":
        return _sharded_toolbox(done, quiet)
    if d.kind == "sharded":
        return _sharded(done, quiet)
    if d.source == "digits":
        return _digits(done, quiet)
    return _toolbox(done, quiet)


def _network(done: CheckedRun, quiet: bool) -> Rendered:
    from fcgrad.reports.check import as_json, text

    r = done.report
    tolerances = {
        "gradient_rel": r.rtol,
        "trajectory_abs": r.atol,
        "finite_difference_rel": tol.FD_REL_TOL,
        "trajectory_rule": r.rule,
    }
    shown = text(r, quiet=quiet)
    shown = shown if quiet else _headed(shown, done)
    arrays = {**_initial_arrays(r.problem.x, r.problem.t, r.problem.params), **r.histories}
    return Rendered(shown, as_json(r), tolerances, _finite_or_none(r.final_loss), r.timings, arrays)


def _toolbox_tolerances(p) -> dict:
    return {
        "gradient_rel": tol.grad_rel_tol(p.dtype) if p.rtol is None else p.rtol,
        "trajectory_abs": tol.traj_abs_tol(p.dtype) if p.atol is None else p.atol,
        "trajectory_rule": "local",
    }


def _toolbox_arrays(report) -> dict:
    from fcgrad.manual.spec import init_running

    p = report.problem
    arrays = _initial_arrays(p.x, p.t, p.params)
    for i, layer in enumerate(init_running(p.spec, p.dtype)):
        for key, value in layer.items():
            arrays[f"running_{key}{i}_init"] = value
    return {**arrays, **report.histories}


def _toolbox(done: CheckedRun, quiet: bool) -> Rendered:
    from fcgrad.cli.toolbox import diagnoses_json, text

    r, rows, named = done.report, done.gradient_rows, done.gradient_diagnoses
    tolerances = _toolbox_tolerances(r.problem)
    shown = _headed(text(r, rows, named), done)
    lines = shown.split("\n")
    lines.insert(1, _tolerance_line(tolerances, r.problem.dtype))
    shown = "\n".join(lines)
    data = {
        "ok": done.ok,
        "diagnoses": diagnoses_json(r, named),
        "gradients": [row.as_dict() for row in rows],
        "trajectory": {"steps": r.steps, "rule": "local", "kink_steps": r.kink_steps,
                       "rows": [row.as_dict() for row in r.rows]},  # fmt: skip
        "final_loss": {"manual": float(r.losses_manual[-1]), "reference": float(r.losses_reference[-1])},
        "seconds": r.seconds,
    }
    final = _finite_or_none(r.losses_manual[-1]) if r.steps else None
    return Rendered(quiet_text(shown) if quiet else shown, data, tolerances, final, r.timings, _toolbox_arrays(r))


def _tolerance_line(tolerances: dict, dtype: str) -> str:
    return (
        f"tolerances: gradients rel ≤ {tolerances['gradient_rel']:.1e}; every step max|Δ| ≤ "
        f"{tolerances['trajectory_abs']:.1e} × max(1, max|JAX|) (rule {tolerances['trajectory_rule']}, {dtype})"
    )


def _digits(done: CheckedRun, quiet: bool) -> Rendered:
    from fcgrad.engine.digits import as_json, text

    r = done.report
    tolerances = _toolbox_tolerances(r.check.problem)
    shown = _headed(text(r), done)
    lines = shown.split("\n")
    lines.insert(1, _tolerance_line(tolerances, r.check.problem.dtype))
    shown = "\n".join(lines)
    final = _finite_or_none(r.check.losses_manual[-1]) if r.check.steps else None
    arrays = _toolbox_arrays(r.check)
    return Rendered(quiet_text(shown) if quiet else shown, as_json(r), tolerances, final, r.check.timings, arrays)


def _sharded(done: CheckedRun, quiet: bool) -> Rendered:
    from fcgrad.reports.sharded import as_json, text

    r = done.report
    p = r.problem
    tolerances = {
        "gradient_rel": tol.grad_rel_tol(p.dtype) if done.description.rtol is None else done.description.rtol,
        "trajectory_abs": tol.traj_abs_tol(p.dtype) if done.description.atol is None else done.description.atol,
        "trajectory_rule": "global",
    }
    shown = _headed(text(r), done)
    arrays = {**_initial_arrays(p.x, p.t, p.params), **r.histories}
    final = _finite_or_none(r.histories["loss_manual"][-1]) if p.steps else None
    return Rendered(quiet_text(shown) if quiet else shown, as_json(r), tolerances, final, None, arrays)


def _sharded_toolbox(done: CheckedRun, quiet: bool) -> Rendered:
    from fcgrad.engine.row_table import table

    r, d = done.report, done.description
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
    data = {
        "ok": r.ok,
        "devices": [str(dev) for dev in r.devices],
        "shard_sizes": list(r.shard_sizes),
        "comparisons": [{"pair": c.pair, "what": c.what, "rows": [row.as_dict() for row in c.rows]}
                        for c in r.comparisons],  # fmt: skip
        "findings": [],
    }
    arrays = {**_initial_arrays(p.x, p.t, p.params), **r.histories}
    final = _finite_or_none(r.histories["loss_manual"][-1]) if len(r.histories["loss_manual"]) else None
    return Rendered(quiet_text(shown) if quiet else shown, data, tolerances, final, None, arrays)
