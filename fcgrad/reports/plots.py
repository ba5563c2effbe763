"""``--plot PATH.png``: both sides' loss curves, and each row's per-step max|Δ| on a log axis with its tolerance.

matplotlib is an optional extra (``pip install 'fcgrad[plot]'``): ``check_plot_target`` says so
in one line, and checks the output path, before any run starts. Figures are drawn with
``matplotlib.figure.Figure`` (no pyplot state, no window).

- ``plot_check(report, path)``: a ``CheckReport`` made with ``keep_history=True``; the per-step
  max|Δ| of each row comes from ``maxdiff_<row>`` arrays when the histories have them, else from
  ``{w,b}{i}_manual`` against ``{w,b}{i}_reference``.
- ``plot_audit(report, path)``: an ``AuditReport`` made with ``keep_history=True``: the blog code's
  drift away from the correct (JAX) run, which is trained again here from the same parameters.
- ``plot_code_audit(report, path)``: the same for ``audit --code``.
"""

from pathlib import Path

import numpy as np

from fcgrad.manual.errors import FcgradError

SUFFIXES = (".png", ".pdf", ".svg")
# A difference of exactly 0 has no place on a log axis: it is drawn at this floor (below any float64
# difference of O(1) numbers, whose smallest non-zero value is about 1e-16 × the value).
LOG_FLOOR = 1e-20


def check_plot_target(path: str) -> Path:
    """matplotlib importable and ``path`` writable (a known suffix, an existing folder), or a one-line FcgradError."""
    try:
        import matplotlib  # noqa: F401  (only asked whether it is there)
    except ModuleNotFoundError:
        raise FcgradError(
            "--plot: needs matplotlib, which is not installed; install it with pip install 'fcgrad[plot]' "
            "(or pip install matplotlib)"
        ) from None
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise FcgradError(f"--plot: expected a file name ending in {', '.join(SUFFIXES)}, got {str(path)!r}")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FcgradError(f"--plot: the folder {str(folder)!r} does not exist; expected an existing folder")
    if target.is_dir():
        raise FcgradError(f"--plot: {str(path)!r} is a folder; expected a file name")
    return target


def _figure(title: str, losses: dict[str, np.ndarray], diffs: dict[str, tuple[np.ndarray, float]], ylabel: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for label, curve in sorted(losses.items(), key=lambda kv: kv[0] != "JAX"):  # JAX first, the other on top
        jax_side = label == "JAX"
        left.plot(np.arange(len(curve)), curve, label=label, linewidth=2.5 if jax_side else 1.0,
                  linestyle="-" if jax_side else "--", alpha=0.6 if jax_side else 1.0)  # fmt: skip
    left.set(xlabel="step", ylabel="loss", title="loss, both sides")
    left.legend()
    for i, (label, (per_step, limit)) in enumerate(diffs.items()):
        color = f"C{i % 10}"
        right.plot(np.arange(len(per_step)), np.maximum(per_step, LOG_FLOOR), color=color, linewidth=1.0, label=label)
        if limit is not None:
            right.axhline(limit, color=color, linestyle=":", linewidth=0.8)
    right.set_yscale("log")
    right.set(xlabel="step", ylabel=ylabel, title=f"per-step max|Δ| (dotted: tolerance; exact 0 at {LOG_FLOOR:.0e})")
    right.legend(fontsize="small", ncol=2)
    fig.suptitle(title)
    return fig


def per_step_maxdiff(histories: dict, rows) -> dict[str, tuple[np.ndarray, float]]:
    """``label -> (max|Δ| per recorded step, the row's tolerance)`` for the loss and every ``w``/``b`` row."""
    out = {}
    for r in rows:
        key = "loss" if r.quantity == "loss" else f"{r.quantity}{r.layer}"
        if f"maxdiff_{key}" in histories:
            per = np.asarray(histories[f"maxdiff_{key}"], np.float64)
        elif f"{key}_manual" in histories and f"{key}_reference" in histories:
            d = np.abs(np.asarray(histories[f"{key}_manual"], np.float64) - histories[f"{key}_reference"])
            per = d.reshape(d.shape[0], -1).max(axis=1)
        else:
            raise FcgradError(f"plot: the report has no history for {key}; expected check(..., keep_history=True)")
        out["loss" if key == "loss" else f"layer {r.layer} {r.quantity}"] = (per, r.tol)
    return out


def plot_check(report, path: str) -> Path:
    """Loss curves of manual and JAX, and every trajectory row's per-step max|Δ| with its tolerance."""
    target = check_plot_target(path)
    h = report.histories
    if "loss_manual" not in h:
        raise FcgradError("plot_check: the report has no histories; expected check(..., keep_history=True)")
    p = report.problem
    fig = _figure(
        f"fcgrad check — {p.name}: manual NumPy vs JAX, {report.steps} steps, {p.dtype}",
        {"manual": h["loss_manual"], "JAX": h["loss_reference"]},
        per_step_maxdiff(h, report.trajectory),
        "max|manual − JAX|",
    )
    fig.savefig(target, dpi=110)
    return target


def plot_audit(report, path: str) -> Path:
    """The blog-code variant's loss against JAX's, and its per-step max|Δparam| with the trajectory tolerance."""
    target = check_plot_target(path)
    h, p = report.histories, report.problem
    if "loss_blog" not in h:
        raise FcgradError("plot_audit: the report has no histories; expected audit(..., keep_history=True)")
    steps = len(h["loss_blog"])
    from fcgrad import reference  # JAX: only when a figure is drawn, never to check --plot's path

    r = reference.train(p.params, p.x, p.t, activations=p.activations, loss=p.loss, lr=p.lr, steps=steps)
    per = np.zeros(steps + 1)
    for i, layer in enumerate(r["params"]):
        for k in ("w", "b"):
            d = np.abs(h[f"{k}{i}_blog"][: steps + 1] - layer[k])
            per = np.maximum(per, d.reshape(d.shape[0], -1).max(axis=1))
    on = ", ".join(report.departures.on) or "none"
    fig = _figure(
        f"fcgrad audit — {p.name}: the blog's code (departures: {on}) drifting from JAX",
        {"blog's code": h["loss_blog"], "JAX": r["losses"]},
        {"max|Δparam|, every w and b": (per, report.trajectory_tol)},
        "max|blog − JAX|",
    )
    fig.savefig(target, dpi=110)
    return target


def plot_code_audit(report, path: str) -> Path:
    """``audit --code``: the file's loss against JAX's, and its per-step max|Δparam|."""
    target = check_plot_target(path)
    h = report.histories
    from fcgrad.engine.tolerances import TRAJ_ABS_TOL_F64

    fig = _figure(
        f"fcgrad audit --code {Path(report.file).name} — {report.problem.name} vs JAX",
        {"the file": h["loss_code"], "JAX": h["loss_reference"]},
        {"max|Δparam|, every w and b": (h["param_maxdiff"], TRAJ_ABS_TOL_F64)},
        "max|file − JAX|",
    )
    fig.savefig(target, dpi=110)
    return target


__all__ = ["check_plot_target", "per_step_maxdiff", "plot_audit", "plot_check", "plot_code_audit"]
