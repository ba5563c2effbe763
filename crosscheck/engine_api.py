"""The comparison engine as the CLI calls it: ``check`` with tolerance overrides and progress, ``text`` with quiet.

When ``crosscheck.run.check`` takes ``rtol``, ``atol`` and ``progress`` and ``crosscheck.report.text`` takes
``quiet``, these are plain pass-throughs. Otherwise they supply the same behaviour on top of the older
engine: the tolerance functions are swapped for the run, progress is reported once at the end, a
diverging trajectory is compared up to the step before it diverged, and the quiet text keeps the
verdict and the failing rows.
"""

import contextlib
import inspect
from dataclasses import replace

import numpy as np

from crosscheck import report as report_module
from crosscheck import run
from crosscheck import tolerances as tol
from manual.errors import DivergenceError


def _accepts(func, name: str) -> bool:
    return name in inspect.signature(func).parameters


@contextlib.contextmanager
def _tolerances(rtol: float | None, atol: float | None):
    saved = tol.grad_rel_tol, tol.traj_abs_tol
    if rtol is not None:
        tol.grad_rel_tol = lambda dtype: rtol
    if atol is not None:
        tol.traj_abs_tol = lambda dtype: atol
    try:
        yield
    finally:
        tol.grad_rel_tol, tol.traj_abs_tol = saved


def check(p, *, finite_differences=True, keep_history=False, rtol=None, atol=None, progress=None):
    """``crosscheck.run.check`` with the keywords the CLI passes."""
    if _accepts(run.check, "progress"):
        return run.check(
            p,
            finite_differences=finite_differences,
            keep_history=keep_history,
            rtol=rtol,
            atol=atol,
            progress=progress,
        )
    diverged_at, note = None, None
    with _tolerances(rtol, atol):
        try:
            report = run.check(p, finite_differences=finite_differences, keep_history=keep_history)
        except DivergenceError as exc:
            diverged_at, note = exc.step, str(exc)
            # the steps before the one whose loss is not finite; that step's neighbours may overflow on the way
            with np.errstate(over="ignore", invalid="ignore"):
                report = run.check(
                    replace(p, steps=max(exc.step - 1, 0)),
                    finite_differences=finite_differences,
                    keep_history=keep_history,
                )
        report.rtol = tol.grad_rel_tol(p.dtype)
        report.atol = tol.traj_abs_tol(p.dtype)
    report.diverged_at_step = diverged_at
    report.divergence_note = note
    if progress is not None:
        progress(p.steps, p.steps)
    return report


def text(report, *, quiet: bool = False) -> str:
    """``crosscheck.report.text`` with ``quiet`` (the verdict and the failing rows only)."""
    if _accepts(report_module.text, "quiet"):
        return report_module.text(report, quiet=quiet)
    full = report_module.text(report)
    note = getattr(report, "divergence_note", None)
    if note:
        kept = [line for line in full.splitlines() if not line.startswith("OK")]
        full = "\n".join([*kept, f"FAILED: {note} (the rows above compare the steps before it)"])
    if not quiet:
        return full
    keep = ("OK", "FAILED", "WARNING")
    return "\n".join(line for line in full.splitlines() if line.rstrip().endswith("MISMATCH") or line.startswith(keep))
