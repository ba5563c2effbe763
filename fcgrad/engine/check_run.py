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

Whatever form ran, its report is turned into the one ``RunReport`` (``fcgrad.engine.report``): the same
fields, the same JSON and the same ``--save`` archive for every run.
"""

import time
from dataclasses import dataclass

import numpy as np

from fcgrad.engine.description import RunDescription, build
from fcgrad.engine.problems import Problem
from fcgrad.engine.report import RunReport


@dataclass
class CheckedRun:
    """A description and the report of the check that ran it."""

    description: RunDescription
    report: RunReport  # whatever form ran; its own report is ``report.detail``
    x: np.ndarray | None = None  # the data both sides saw (in the description's dtype)
    t: np.ndarray | None = None
    params: list | None = None  # the initial parameters

    @property
    def ok(self) -> bool:
        return self.report.ok


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
    """Build both sides from ``d`` and compare them; ``devices`` are the JAX devices of a sharded run.

    ``keep_history``: every side's every step is kept (``report.histories``, the ``--save`` archive's arrays);
    the sharded forms keep them always."""
    from fcgrad.engine import report_forms

    x, t, params = build(d)
    start = time.perf_counter()
    if d.kind == "network":
        from fcgrad.engine.run import check

        r = check(
            network_problem(d, x, t, params), keep_history=keep_history, rtol=d.rtol, atol=d.atol, progress=progress,
            finite_differences=d.finite_differences,
        )  # fmt: skip
        report = report_forms.from_network(d, r, _since(start))
    elif d.kind == "sharded" and d.step_form == "free":
        from fcgrad.engine.sharded import sharded_check

        n = d.devices if devices is None else len(devices)
        r = sharded_check(network_problem(d, x, t, params), n, rtol=d.rtol, atol=d.atol)
        report = report_forms.from_sharded(d, r, _since(start), free=True)
    elif d.kind == "sharded":
        from fcgrad.engine.sharded import arrange_devices
        from fcgrad.engine.sharded_toolbox import check_toolbox_sharded

        devices = arrange_devices(d.devices) if devices is None else devices
        r = check_toolbox_sharded(toolbox_problem(d, x, t, params), devices)
        report = report_forms.from_sharded(d, r, _since(start), free=False)
    elif d.source == "digits":
        from fcgrad.engine.digits import check_digits, load_digits_columns

        _, _, x_test, labels = load_digits_columns(d.seed)
        r = check_digits(toolbox_problem(d, x, t, params), x_test, labels, keep_history=keep_history)
        report = report_forms.from_digits(d, r, _since(start))
    else:
        from fcgrad.engine.toolbox import check_toolbox, compare_spec_gradients, diagnose_gradients

        p = toolbox_problem(d, x, t, params)
        rows = compare_spec_gradients(p)
        named = diagnose_gradients(p, rows)
        r = check_toolbox(p, keep_history=keep_history)
        report = report_forms.from_toolbox(d, r, rows, named, _since(start))
    return CheckedRun(d, report, x=x, t=t, params=params)


def _since(start: float) -> float:
    return time.perf_counter() - start
