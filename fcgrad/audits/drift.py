"""How a run of the blog's code and the JAX run drift apart, step by step, from the same parameters.

Both train in chunks, so a large network's history is never held whole unless it is kept for ``--save``.
"""

from dataclasses import dataclass, field

import numpy as np

from fcgrad import manual, reference
from fcgrad.engine import tolerances as tol
from fcgrad.engine.problems import Problem
from fcgrad.manual.blog_code import BlogDepartures, blog_train
from fcgrad.manual.errors import DivergenceError

CHUNK_BYTES = 64 * 2**20  # parameter history held per side at once while comparing trajectories


@dataclass(frozen=True)
class Divergence:
    """How a blog-code run and the JAX run drift apart over the steps.

    Param differences are max |Δ| over every layer's ``w`` and ``b``; entry k is after k steps.
    """

    steps: int  # steps compared (fewer than asked when the blog-code variant diverged)
    diverged_at_step: int | None  # first step whose blog-code loss is not finite, None if it stayed finite
    loss_max_abs_diff: float  # max over steps of |L_blog − L_jax|
    param_max_abs_diff: float  # max over steps of the param difference
    first_step_params_differ: int | None  # first k whose param difference exceeds the trajectory tolerance
    final_loss_blog: float | None  # loss at the last compared parameters (None if not finite)
    final_loss_jax: float | None
    final_param_max_abs_diff: float
    checkpoints: list[dict] = field(default_factory=list)  # {step, loss_blog, loss_jax, param_max_abs_diff}


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def drift_lines(d: Divergence, limit: float) -> list[str]:
    """The drift as indented report lines: the worst differences, then a table at the checkpoint steps."""
    if d.steps == 0 and d.diverged_at_step is None:
        return ["  over 0 steps: nothing to compare"]
    first = (
        f"first beyond {limit:.0e} at step {d.first_step_params_differ}"
        if d.first_step_params_differ is not None
        else f"never beyond {limit:.0e}"
    )
    lines = [
        f"  over {d.steps} steps: max|Δloss| {d.loss_max_abs_diff:.2e}, "
        f"max|Δparam| {d.param_max_abs_diff:.2e} ({first})"
    ]
    if d.diverged_at_step is not None:
        lines.append(f"  the blog's code diverged: its loss is not finite at step {d.diverged_at_step}")
    lines.append(f"    {'step':>7}  {'loss blog':>12}  {'loss JAX':>12}  {'max|Δparam|':>11}")
    for c in d.checkpoints:
        lines.append(
            f"    {c['step']:>7}  {_num(c['loss_blog']):>12}  {_num(c['loss_jax']):>12}"
            f"  {c['param_max_abs_diff']:>11.2e}"
        )
    return lines


def _checkpoint_steps(steps: int) -> list[int]:
    """1, 10, 100, ... below ``steps``, then ``steps``."""
    marks = [10**k for k in range(len(str(max(steps, 1)))) if 10**k < steps]
    return marks + [steps] if steps > 0 else [0]


def _param_diff_per_entry(blog_params, ref_params) -> tuple[np.ndarray, float]:
    """Per recorded entry, max |Δ| over every layer's w and b; and max |reference param|."""
    per = []
    scale = 0.0
    for s, r in zip(blog_params, ref_params):
        for k in ("w", "b"):
            d = np.abs(np.asarray(s[k], np.float64) - np.asarray(r[k], np.float64))
            per.append(d.reshape(d.shape[0], -1).max(axis=1))
            scale = max(scale, float(np.max(np.abs(r[k]))))
    return np.max(np.stack(per), axis=0), scale


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def diverge(
    p: Problem, departures: BlogDepartures, *, keep_history: bool = False, progress=None, atol: float | None = None
) -> tuple[Divergence, dict]:
    """Train the blog-code variant and the JAX reference ``p.steps`` steps from ``p.params`` and compare every step.

    Runs in chunks so a large network's history is never held whole (unless ``keep_history``).
    Returns the divergence and, when kept, both sides' histories under the ``--save`` keys
    (``{w,b}{i}_blog``, ``loss_blog`` for the blog's code; ``{w,b}{i}_reference``, ``loss_reference`` for JAX).
    ``progress(done, p.steps)`` is called after each chunk. ``atol``: the parameters' difference, scaled by
    max(1, max|param|), beyond which the two runs part (default: by dtype).
    """
    limit = tol.traj_abs_tol(p.dtype) if atol is None else atol
    per_step = sum(v.size for layer in p.params for v in layer.values()) * np.dtype(p.dtype).itemsize
    chunk = max(1, CHUNK_BYTES // per_step)
    common = dict(activations=p.activations, loss=p.loss, lr=p.lr, dtype=p.dtype)
    marks = set(_checkpoint_steps(p.steps))
    blog_losses, ref_losses, param_diffs = [], [], [np.zeros(1)]  # entry 0: both start from p.params
    kept = {
        f"{k}{i}_{side}": [layer[k][None]]
        for side in ("blog", "reference")
        for i, layer in enumerate(p.params)
        for k in ("w", "b")
    }
    ps = pr = p.params
    done, diverged, first_over = 0, None, None
    while done < p.steps:
        k = min(chunk, p.steps - done)
        try:
            s = blog_train(ps, p.x, p.t, steps=k, departures=departures, **common)
        except DivergenceError as exc:
            diverged, k = done + exc.step, exc.step
            if k == 0:
                break
            s = blog_train(ps, p.x, p.t, steps=k, departures=departures, **common)
        r = reference.train(pr, p.x, p.t, steps=k, **common)
        per_entry, scale = _param_diff_per_entry(
            [{q: v[1:] for q, v in layer.items()} for layer in s.params],
            [{q: v[1:] for q, v in layer.items()} for layer in r["params"]],
        )
        over = np.flatnonzero(per_entry > limit * max(1.0, scale))
        if first_over is None and over.size:
            first_over = done + 1 + int(over[0])
        blog_losses.append(s.losses)
        ref_losses.append(r["losses"])
        param_diffs.append(per_entry)
        if keep_history:
            for side, run in (("blog", s.params), ("reference", r["params"])):
                for i, layer in enumerate(run):
                    for q in ("w", "b"):
                        kept[f"{q}{i}_{side}"].append(layer[q][1:])
        ps, pr = s.final, r["final"]
        done += k
        if progress is not None:
            progress(done, p.steps)
        if diverged is not None:
            break
    ls = np.concatenate(blog_losses) if blog_losses else np.zeros(0)  # (done,)
    lj = np.concatenate(ref_losses) if ref_losses else np.zeros(0)  # (done,)
    dp = np.concatenate(param_diffs)  # (done + 1,)
    if diverged is None:
        final_blog = manual.gradients(ps, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype).loss
    else:
        final_blog = float("nan")
        marks.add(done)
    final_ref = reference.gradients(pr, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)["loss"]
    losses_blog = np.append(ls, final_blog)  # entry k: loss at the parameters after k steps
    losses_ref = np.append(lj, final_ref)
    checkpoints = [
        {
            "step": m,
            "loss_blog": _finite_or_none(losses_blog[m]),
            "loss_jax": _finite_or_none(losses_ref[m]),
            "param_max_abs_diff": float(dp[m]),
        }
        for m in sorted(marks)
        if m <= done
    ]
    div = Divergence(
        steps=done,
        diverged_at_step=diverged,
        loss_max_abs_diff=float(np.max(np.abs(ls - lj))) if ls.size else 0.0,
        param_max_abs_diff=float(np.max(dp)),
        first_step_params_differ=first_over,
        final_loss_blog=_finite_or_none(final_blog),
        final_loss_jax=_finite_or_none(final_ref),
        final_param_max_abs_diff=float(dp[-1]),
        checkpoints=checkpoints,
    )
    histories = {}
    if keep_history:
        histories = {key: np.concatenate(parts) for key, parts in kept.items()}
        histories["loss_blog"] = ls
        histories["loss_reference"] = lj
    return div, histories
