"""Run the manual and the JAX side on one problem and compare every number.

``check(problem)`` compares, at the initial parameters, every layer's residual_z,
grad_w, grad_b, residual_x (and the loss's residual_y) of manual against JAX; the
manual gradients against central finite differences; then trains both sides and
compares the loss and every parameter at every step.
"""

from dataclasses import dataclass, field, replace

import numpy as np

import manual
import reference
from crosscheck import tolerances as tol
from crosscheck.compare import Row, rel_row
from crosscheck.problems import Problem
from manual.finite_diff import FD_STEP

CHUNK_BYTES = 64 * 2**20  # parameter history held per side at once while comparing trajectories


@dataclass
class CheckReport:
    problem: Problem
    gradients: list[Row]
    finite_difference: list[Row]
    trajectory: list[Row]
    steps: int
    final_loss: float  # manual loss at the parameters after the last step
    y_final: np.ndarray  # manual output at those parameters
    histories: dict = field(default_factory=dict, repr=False)  # filled when asked to keep them

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.gradients + self.finite_difference + self.trajectory)

    def failures(self) -> list[Row]:
        return [r for r in self.gradients + self.finite_difference + self.trajectory if not r.ok]


def compare_gradients(p: Problem, params=None) -> list[Row]:
    """Manual vs JAX, every layer and quantity, at ``params`` (default: the problem's initial ones)."""
    params = p.params if params is None else params
    m = manual.gradients(params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    r = reference.gradients(params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    limit = tol.grad_rel_tol(p.dtype)
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


class _Accumulator:
    """max |Δ|, max |r| and Σ Δ², Σ r² of one quantity over every step, chunk by chunk."""

    def __init__(self):
        self.max_abs = self.max_ref = self.sq_diff = self.sq_ref = 0.0

    def add(self, a, r):
        d = np.asarray(a, np.float64) - np.asarray(r, np.float64)
        self.max_abs = max(self.max_abs, float(np.max(np.abs(d))) if d.size else 0.0)
        self.max_ref = max(self.max_ref, float(np.max(np.abs(r))) if np.size(r) else 0.0)
        self.sq_diff += float(np.sum(d * d))
        self.sq_ref += float(np.sum(np.square(np.asarray(r, np.float64))))

    def row(self, layer: int, quantity: str, limit: float) -> Row:
        rel = np.sqrt(self.sq_diff) / max(np.sqrt(self.sq_ref), np.finfo(np.float64).tiny)
        scaled = limit * max(1.0, self.max_ref)
        return Row(layer, quantity, self.max_abs, float(rel), scaled, bool(self.max_abs <= scaled))


def _chunk_steps(p: Problem) -> int:
    per_step = sum(v.size for layer in p.params for v in layer.values()) * np.dtype(p.dtype).itemsize
    return max(1, CHUNK_BYTES // per_step)


def compare_trajectories(p: Problem, *, keep_history: bool = False):
    """Train both sides ``p.steps`` steps, each from its own parameters, comparing every step.

    Returns (rows, manual final params, histories). Rows: ``loss`` (layer -1, all
    steps) and ``w``/``b`` of each layer (entries 0..steps). Histories, when kept,
    hold the ``--save`` arrays.
    """
    n = len(p.params)
    limit = tol.traj_abs_tol(p.dtype)
    acc_loss = _Accumulator()
    acc = {(i, k): _Accumulator() for i in range(n) for k in ("w", "b")}
    kept = {"loss_manual": [], "loss_reference": []}
    for i in range(n):
        for k in ("w", "b"):
            kept[f"{k}{i}_manual"] = [p.params[i][k][None]]
            kept[f"{k}{i}_reference"] = [p.params[i][k][None]]
    pm = pr = p.params
    done = 0
    chunk = _chunk_steps(p)
    while done < p.steps:
        k_steps = min(chunk, p.steps - done)
        common = dict(activations=p.activations, loss=p.loss, lr=p.lr, steps=k_steps, trainable=p.trainable)
        m = manual.train(pm, p.x, p.t, dtype=p.dtype, **common)
        r = reference.train(pr, p.x, p.t, dtype=p.dtype, **common)
        acc_loss.add(m.losses, r["losses"])
        for i in range(n):
            for k in ("w", "b"):
                # entry 0 of a chunk repeats the last of the previous one: compare 1.. only
                acc[(i, k)].add(m.params[i][k][1:], r["params"][i][k][1:])
                if keep_history:
                    kept[f"{k}{i}_manual"].append(m.params[i][k][1:])
                    kept[f"{k}{i}_reference"].append(r["params"][i][k][1:])
        if keep_history:
            kept["loss_manual"].append(m.losses)
            kept["loss_reference"].append(r["losses"])
        pm, pr = m.final, r["final"]
        done += k_steps
    rows = [acc_loss.row(-1, "loss", limit)]
    rows += [acc[(i, k)].row(i, k, limit) for i in range(n) for k in ("w", "b")]
    histories = {key: np.concatenate(parts) for key, parts in kept.items()} if keep_history else {}
    return rows, pm, histories


def check(p: Problem, *, finite_differences: bool = True, keep_history: bool = False) -> CheckReport:
    """Every comparison of ``fcgrad check`` on one problem."""
    grads = compare_gradients(p)
    fd = compare_finite_differences(p) if finite_differences else []
    traj, final, histories = compare_trajectories(p, keep_history=keep_history)
    g = manual.gradients(final, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    return CheckReport(p, grads, fd, traj, p.steps, g.loss, g.y, histories)


def save_npz(path: str, p: Problem, histories: dict[str, np.ndarray]) -> None:
    """Write a ``--save`` file: the data ``X``, ``T``, ``w{i}_init``, ``b{i}_init`` and the given histories."""
    arrays = {"X": p.x, "T": p.t}
    for i, layer in enumerate(p.params):
        arrays[f"w{i}_init"] = layer["w"]
        arrays[f"b{i}_init"] = layer["b"]
    arrays.update(histories)
    np.savez(path, **arrays)
