"""Run the manual and the JAX side on one problem and compare every number.

``check(problem)`` compares, at the initial parameters, every layer's residual_z,
grad_w, grad_b, residual_x (and the loss's residual_y) of manual against JAX; the
manual gradients against central finite differences; then trains both sides and
compares the loss and every parameter at every step.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from fcgrad import manual, reference
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import Row, rel_row
from fcgrad.engine.notebook import CheckReportHtml
from fcgrad.engine.problems import Problem
from fcgrad.engine.timing import Timings
from fcgrad.engine.trajectory import Divergence, compare_trajectories
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.finite_diff import FD_STEP


@dataclass
class CheckReport(CheckReportHtml):
    problem: Problem
    gradients: list[Row]
    finite_difference: list[Row]
    trajectory: list[Row]
    steps: int
    final_loss: float  # manual loss at the parameters after the last step
    y_final: np.ndarray  # manual output at those parameters
    histories: dict = field(default_factory=dict, repr=False)  # maxdiff_<row> always; the rest when kept
    rtol: float = 0.0  # the gradient relative tolerance in force
    atol: float = 0.0  # the trajectory absolute tolerance in force (scaled per step by max(1, max|param|))
    rule: str = "global"  # how the trajectory was judged (fcgrad.engine.trajectory)
    divergence: Divergence | None = None  # where a side's loss stopped being finite, if it did
    steps_compared: int = 0  # steps of the trajectory compared (fewer than steps after a divergence)
    timings: Timings | None = field(default=None, repr=False)  # where the check's time went
    diagnoses: dict = field(default_factory=dict)  # (layer, quantity) of a failing gradient row -> catalogue names
    last_losses: tuple | None = None  # (manual, JAX) loss of the last step compared; None without a step

    @property
    def diverged_at_step(self) -> int | None:
        return None if self.divergence is None else self.divergence.step

    @property
    def all_gradients_zero(self) -> bool:
        """Every compared gradient is exactly zero on both sides: the check proves nothing about them."""
        rows = [r for r in self.gradients if r.quantity in ("grad_w", "grad_b")]
        return bool(rows) and all(r.zero for r in rows)

    @property
    def ok(self) -> bool:
        one_sided = self.divergence is not None and self.divergence.side != "both"
        return not one_sided and all(r.ok for r in self.gradients + self.finite_difference + self.trajectory)

    def failures(self) -> list[Row]:
        return [r for r in self.gradients + self.finite_difference + self.trajectory if not r.ok]


def compare_gradients(p: Problem, params=None, *, rtol: float | None = None) -> list[Row]:
    """Manual vs JAX, every layer and quantity, at ``params`` (default: the problem's initial ones)."""
    params = p.params if params is None else params
    m = manual.gradients(params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    r = reference.gradients(params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    limit = tol.grad_rel_tol(p.dtype) if rtol is None else rtol
    rows = [
        rel_row(i, q, getattr(m.layers[i], q), r["layers"][i][q], limit)
        for i in range(len(params))
        for q in manual.QUANTITIES
    ]
    rows.append(rel_row(len(params) - 1, "residual_y", m.residual_y, r["residual_y"], limit))
    rows.append(rel_row(len(params) - 1, "loss", m.loss, r["loss"], limit))
    return rows


def compare_finite_differences(
    p: Problem, params=None, *, max_entries: int | None = tol.FD_MAX_ENTRIES, seed: int = 0
) -> list[Row]:
    """Manual gradients (float64) vs central differences of the loss at the probed entries."""
    params = p.params if params is None else params
    params64 = [{k: v.astype(np.float64) for k, v in layer.items()} for layer in params]
    x64, t64 = p.x.astype(np.float64), p.t.astype(np.float64)
    m = manual.gradients(params64, x64, t64, activations=p.activations, loss=p.loss)
    # a row passes within FD_REL_TOL relative, or below the rounding floor of the differences
    fd = manual.finite_difference_gradients(
        params64, x64, t64, activations=p.activations, loss=p.loss, max_entries=max_entries, seed=seed
    )
    floor = tol.fd_noise_floor(m.loss, FD_STEP)
    rows = []
    for layer, quantity, idx, values in fd:
        full = getattr(m.layers[layer], quantity)
        probed = np.array([full[j] for j in idx])
        row = rel_row(layer, quantity, probed, values, tol.FD_REL_TOL)
        rows.append(replace(row, ok=row.ok or row.max_abs_err <= floor))
    return rows


def _tolerance(name: str, value) -> float | None:
    """None, or a finite non-negative number; anything else is refused before any work."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise FcgradError(f"{name}: expected a non-negative number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise FcgradError(f"{name}: expected a finite non-negative number, got {value!r}")
    return float(value)


def check(
    p: Problem,
    *,
    finite_differences: bool = True,
    keep_history: bool = False,
    rtol: float | None = None,
    atol: float | None = None,
    progress=None,
) -> CheckReport:
    """Every comparison of ``fcgrad check`` on one problem.

    ``rtol`` overrides the gradient relative tolerance, ``atol`` the trajectory's absolute one
    (None: the defaults of fcgrad.engine.tolerances). ``progress(done_steps, total_steps)`` is called
    after each compared chunk of the trajectory. A run that diverges keeps the rows of the steps
    compared before it; ``divergence`` says which side diverged and at which step. Both sides
    diverging at the same step is agreement up to that step (the report says so; ok is not lost).
    """
    rtol, atol = _tolerance("rtol", rtol), _tolerance("atol", atol)
    timings = Timings()
    with timings.compiling():
        with timings.phase("gradients"):
            grads = compare_gradients(p, rtol=rtol)
        with timings.phase("finite_differences"):
            fd = compare_finite_differences(p) if finite_differences else []
        traj = compare_trajectories(p, keep_history=keep_history, atol=atol, progress=progress, timings=timings)
    with timings.phase("final"), np.errstate(over="ignore", invalid="ignore"):  # a diverged run: not finite
        try:
            g = manual.gradients(traj.final, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
            final_loss, y_final = g.loss, g.y
        except FcgradError:  # parameters no longer finite: there is no final output to show
            final_loss, y_final = float("nan"), np.full(p.t.shape, np.nan)
    diagnoses = _diagnoses(p, grads)
    rule = traj.rows[0].rule if traj.rows else tol.default_rule(p.dtype, p.activations, p.loss)
    limits = tol.trajectory_limits(rule, p.dtype, atol)
    return CheckReport(
        p,
        grads,
        fd,
        traj.rows if p.steps else [],
        p.steps,
        final_loss,
        y_final,
        traj.histories,
        rtol=tol.grad_rel_tol(p.dtype) if rtol is None else rtol,
        atol=limits.param,
        rule=rule,
        divergence=traj.divergence,
        steps_compared=traj.steps_compared,
        timings=timings,
        diagnoses=diagnoses,
        last_losses=traj.last_losses,
    )


def _diagnoses(p: Problem, grads: list[Row]) -> dict:
    """The catalogue of classic mistakes, held against the failing gradient rows only (none: nothing to name)."""
    if all(r.ok for r in grads):
        return {}
    from fcgrad.diagnosis.network import diagnose_rows

    return diagnose_rows(p, grads)


def save_npz(path: str, p: Problem, histories: dict[str, np.ndarray]) -> None:
    """Write a ``--save`` file: the data ``X``, ``T``, ``w{i}_init``, ``b{i}_init`` and the given histories.

    Histories: ``maxdiff_loss``, ``maxdiff_w{i}``, ``maxdiff_b{i}`` (steps,), the max|Δ| of each row at
    each step; ``loss_manual``/``loss_reference`` (steps,) and ``w{i}_manual``/``w{i}_reference``
    (steps+1, in, out), likewise for b. Under the float32 local rule, ``*_reference`` entry k+1 is JAX's
    one step from manual's entry k (and ``loss_reference`` k JAX's loss at manual's parameters k).
    """
    arrays = {"X": p.x, "T": p.t}
    for i, layer in enumerate(p.params):
        arrays[f"w{i}_init"] = layer["w"]
        arrays[f"b{i}_init"] = layer["b"]
    arrays.update(histories)
    np.savez(path, **arrays)
