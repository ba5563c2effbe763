"""Run a ``RunDescription``: both sides built from it, compared, and the report of what was compared.

The description decides everything; this module only turns it into the arrays and settings of the
form of the engine that runs it (``RunDescription.kind``):

- ``network``: full-batch SGD on plain layers: every layer's residual_z, grad_w, grad_b, residual_x
  against JAX, finite differences, and every step under the ``global`` or ``local`` rule with the kink
  bounds (``fcgrad.engine.run``);
- ``toolbox``: normalisation, dropout, any optimizer, mini-batches, L2: gradients at the start, then
  every parameter, running average and optimizer moment at every step (``fcgrad.engine.toolbox``);
  the digits example adds both sides' held-out accuracy (``fcgrad.engine.digits``);
- ``sharded``: over S devices, five sides: full-batch SGD on plain layers with the data-parallel mistakes
  named (``fcgrad.engine.sharded``), or any optimizer, mini-batches, L2, dropout and layer norm, every step
  from the one-device manual side's state (``fcgrad.engine.sharded_toolbox``).
"""

from dataclasses import dataclass

import numpy as np

from fcgrad.engine.description import RunDescription, build
from fcgrad.engine.problems import Problem


@dataclass
class CheckedRun:
    """A description and the report of the check that ran it."""

    description: RunDescription
    report: object  # CheckReport, ToolboxReport, DigitsReport or ShardedReport, by the description's kind
    gradient_rows: list | None = None  # toolbox: the gradients at the initial parameters
    gradient_diagnoses: dict | None = None  # toolbox: the catalogue's names for a failing gradient row
    x: np.ndarray | None = None  # the data both sides saw (in the description's dtype)
    t: np.ndarray | None = None
    params: list | None = None  # the initial parameters

    @property
    def ok(self) -> bool:
        d, r = self.description, self.report
        if d.kind == "network":
            return r.ok and r.diverged_at_step is None
        if d.kind == "toolbox":
            return r.ok and all(row.ok for row in (self.gradient_rows or []))
        return r.ok


def network_problem(d: RunDescription, x, t, params) -> Problem:
    """The ``network`` form's problem: plain layers, full-batch SGD, from the description."""
    trainable = None if d.trainable is None else [{"w": w, "b": b} for w, b in d.trainable]
    return Problem(
        d.source if d.data_file is None else d.data_file, d.sizes, d.activations, d.loss, x, t, params,
        d.optimizer.lr, d.steps, trainable, d.dtype, d.seed,
    )  # fmt: skip


def toolbox_problem(d: RunDescription, x, t, params):
    from fcgrad.engine.toolbox import make_problem

    return make_problem(
        d.spec, x, t, loss=d.loss, optimizer=d.optimizer, batch_size=d.batch_size, epochs=1, seed=d.seed or 0,
        l2=d.l2, params=params, dtype=d.dtype, name=d.source, steps=d.steps, rtol=d.rtol, atol=d.atol,
    )  # fmt: skip


def check_run(d: RunDescription, *, keep_history: bool = False, progress=None, devices=None) -> CheckedRun:
    """Build both sides from ``d`` and compare them; ``devices`` are the JAX devices of a sharded run."""
    x, t, params = build(d)
    if d.kind == "network":
        from fcgrad.engine.run import check

        report = check(
            network_problem(d, x, t, params), keep_history=keep_history, rtol=d.rtol, atol=d.atol, progress=progress,
            finite_differences=d.finite_differences,
        )  # fmt: skip
        return CheckedRun(d, report, x=x, t=t, params=params)
    if d.kind == "sharded" and d.step_form == "free":
        from fcgrad.engine.sharded import sharded_check

        n = d.devices if devices is None else len(devices)
        report = sharded_check(network_problem(d, x, t, params), n, rtol=d.rtol, atol=d.atol)
        return CheckedRun(d, report, x=x, t=t, params=params)
    if d.kind == "sharded":
        from fcgrad.engine.sharded import arrange_devices
        from fcgrad.engine.sharded_toolbox import check_toolbox_sharded

        devices = arrange_devices(d.devices) if devices is None else devices
        return CheckedRun(d, check_toolbox_sharded(toolbox_problem(d, x, t, params), devices), x=x, t=t, params=params)
    from fcgrad.engine.toolbox import check_toolbox, compare_spec_gradients, diagnose_gradients

    p = toolbox_problem(d, x, t, params)
    if d.source == "digits":
        from fcgrad.engine.digits import check_digits, load_digits_columns

        _, _, x_test, labels = load_digits_columns(d.seed)
        return CheckedRun(d, check_digits(p, x_test, labels, keep_history=keep_history), x=x, t=t, params=params)
    rows = compare_spec_gradients(p)
    named = diagnose_gradients(p, rows)
    report = check_toolbox(p, keep_history=keep_history)
    return CheckedRun(d, report, rows, named, x=x, t=t, params=params)
