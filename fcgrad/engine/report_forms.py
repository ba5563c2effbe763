"""Each form of the engine's own report, turned into the one ``RunReport`` (``fcgrad.engine.report``).

The forms keep their own reports, from which their text is drawn (``RunReport.detail``); what a reader
of the JSON or the ``--save`` archive gets is the same shape whatever ran. The histories the forms keep
under their own names (``loss_manual``, ``w0_reference``, ``w0_manual_sharded_replica1``, ...) are named
here ``{side}/loss``, ``{side}/w0``, ``{side}/replicas/w0``; the per-step max|Δ| of a row (``maxdiff_*``)
is left out of the archive, as it is recomputed from the two sides' arrays.
"""

import re
from dataclasses import replace

import numpy as np

from fcgrad.engine.report import Comparison, Extras, Finding, RunReport, finite_or_none

ONE_DEVICE = ("manual", "jax")
SHARDED = ("manual", "jax", "manual-sharded", "jax-jit-sharded", "jax-shard_map-sharded")
# a form's history suffix -> the side, longest first so that "_manual_sharded" is not read as "_manual"
SUFFIXES = (
    ("_jax_shard_map_sharded", "jax-shard_map-sharded"),
    ("_jax_jit_sharded", "jax-jit-sharded"),
    ("_manual_sharded", "manual-sharded"),
    ("_reference", "jax"),
    ("_manual", "manual"),
    ("_jax", "jax"),
)
REPLICA = re.compile(r"^(?P<key>.+)_manual_sharded_replica(?P<r>\d+)$")
GRADIENTS = ("manual", "jax")  # the sides of the gradients at the start, and of the network's trajectory


def initial_arrays(x, t, params, running=None) -> dict:
    """``X``, ``T``, ``{key}{i}_init`` and, under batch norm, ``running_{key}{i}_init``."""
    arrays = {"X": x, "T": t}
    for i, layer in enumerate(params):
        for key, value in layer.items():
            arrays[f"{key}{i}_init"] = value
    for i, layer in enumerate(running or []):
        for key, value in layer.items():
            arrays[f"running_{key}{i}_init"] = value
    return arrays


def by_side(histories: dict) -> dict:
    """A form's histories under the archive's names (see the module's docstring)."""
    out, replicas = {}, {}
    for name, value in histories.items():
        if name.startswith("maxdiff_"):
            continue
        match = REPLICA.match(name)
        if match:
            replicas.setdefault(match["key"], {})[int(match["r"])] = np.asarray(value)
            continue
        for suffix, side in SUFFIXES:
            if name.endswith(suffix):
                out[f"{side}/{name[: -len(suffix)]}"] = value
                break
        else:
            out[name] = value  # the steps' inputs (batch_index, mask{i}) and shard_sizes
    for key, per_replica in replicas.items():
        stacked = np.stack([per_replica[r] for r in sorted(per_replica)])  # (replicas, steps+1, ...)
        out[f"manual-sharded/replicas/{key}"] = stacked
        out.setdefault(f"manual-sharded/{key}", stacked[0])
    return out


def _findings(named: dict, side: str, step: int | None = None) -> list[Finding]:
    """``{(layer, quantity): [Diagnosis, ...]}`` as findings, every entry matched."""
    return [
        Finding(d.name, d.message, side, int(layer), quantity, step)
        for (layer, quantity), found in named.items()
        for d in found
    ]


def _all_zero(gradients: list[Comparison]) -> bool | None:
    rows = [r for c in gradients for r in c.rows if r.quantity.startswith("grad_")]
    return None if not rows else all(r.zero for r in rows)


def _last(losses) -> float | None:
    return float(losses[-1]) if losses is not None and len(losses) else None


def softmax(y) -> np.ndarray:
    """Each column's softmax probabilities (float64)."""
    y = np.asarray(y, np.float64)
    e = np.exp(y - y.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def network_output(r) -> dict:
    """The loss and the output at manual's parameters after the last step; for cross-entropy, the probabilities."""
    probabilities = r.problem.loss == "cross-entropy"
    y = softmax(r.y_final) if probabilities else np.asarray(r.y_final)
    return {"loss": finite_or_none(r.final_loss), "y": y.tolist(),
            "y_is": "softmax probabilities" if probabilities else "network output"}  # fmt: skip


def from_network(d, r, seconds: float) -> RunReport:
    """``fcgrad.engine.run.CheckReport``: gradients, finite differences, the trajectory under its rule."""
    gradients = [Comparison(GRADIENTS, "rel", r.gradients)]
    fd = [Comparison(("manual", "finite differences"), "rel", r.finite_difference)] if r.finite_difference else []
    trajectories = [Comparison(GRADIENTS, r.rule, r.trajectory, r.steps_compared)] if r.steps else []
    last = r.last_losses or (None, None)
    divergence = None
    if r.divergence is not None:
        divergence = ({"JAX": "jax"}.get(r.divergence.side, r.divergence.side), r.divergence.step)
    extras = Extras(all_gradients_zero=_all_zero(gradients), output=network_output(r))
    return RunReport(
        d, "network", ONE_DEVICE, gradients, fd, trajectories, _findings(r.diagnoses, "manual"),
        {"manual": last[0], "jax": last[1]}, extras, seconds, divergence,
        initial_arrays(r.problem.x, r.problem.t, r.problem.params),
        by_side(r.histories), r.timings, r,
    )  # fmt: skip


def from_toolbox(d, r, gradient_rows, gradient_diagnoses: dict, seconds: float, *, form: str = "toolbox",
                 extras: Extras | None = None, detail=None) -> RunReport:  # fmt: skip
    """``fcgrad.engine.toolbox.ToolboxReport``: the gradients at the start (when compared), then every step."""
    from fcgrad.manual.spec import init_running

    p = r.problem
    gradients = [Comparison(GRADIENTS, "rel", gradient_rows)] if gradient_rows else []
    rule = r.rows[0].rule if r.rows else "local"
    trajectories = [Comparison(GRADIENTS, rule, r.rows, r.steps, tuple(r.kink_steps))]
    findings = _findings(gradient_diagnoses or {}, "manual") + _findings(r.diagnoses, "manual", r.first_failing_step)
    extras = replace(extras or Extras(), all_gradients_zero=_all_zero(gradients))
    final = {"manual": _last(r.losses_manual), "jax": _last(r.losses_reference)}
    initial = initial_arrays(p.x, p.t, p.params, init_running(p.spec, p.dtype))
    return RunReport(d, form, ONE_DEVICE, gradients, [], trajectories, findings, final, extras, seconds, None,
                     initial, by_side(r.histories), r.timings, r if detail is None else detail)  # fmt: skip


def from_digits(d, r, seconds: float) -> RunReport:
    """``fcgrad.engine.digits.DigitsReport``: the toolbox's steps, and both sides' held-out accuracy."""
    extras = Extras(
        held_out=r.n_test, accuracy={"manual": r.accuracy_manual, "jax": r.accuracy_reference},
        predictions_differ=r.predictions_differ,
    )  # fmt: skip
    return from_toolbox(d, r.check, [], {}, seconds, form="digits", extras=extras, detail=r)


def from_sharded(d, r, seconds: float, *, free: bool) -> RunReport:
    """``fcgrad.engine.sharded.ShardedReport``: five sides, each against its one-device baseline."""
    from fcgrad.engine.sharded import MISTAKES
    from fcgrad.manual.spec import init_running

    p = r.problem
    rule = "global" if free else "local"
    steps = p.steps if free else len(p.schedule())
    gradients, trajectories = [], []
    for c in r.comparisons:
        sides = tuple(c.pair.split(" vs "))
        if c.what == "gradients":
            gradients.append(Comparison(sides, "rel", c.rows))
        else:  # trajectory, replicas: every step, each row under the rule the pair was judged by
            trajectories.append(Comparison(sides, rule, [replace(row, rule=rule) for row in c.rows], steps))
    findings = [Finding(f.mistake, f"{f.detail} ({MISTAKES[f.mistake]})", f.side, None, None, f.step)
                for f in r.findings]  # fmt: skip
    histories = {**by_side(r.histories), "shard_sizes": np.array(r.shard_sizes)}
    final = {side: _last(histories.get(f"{side}/loss")) for side in SHARDED}
    extras = Extras(tuple(str(dev) for dev in r.devices), tuple(int(n) for n in r.shard_sizes),
                    all_gradients_zero=_all_zero(gradients))  # fmt: skip
    running = None if free else init_running(p.spec, p.dtype)
    initial = initial_arrays(p.x, p.t, p.params, running)
    return RunReport(d, "sharded free" if free else "sharded local", SHARDED, gradients, [], trajectories, findings,
                     final, extras, seconds, None, initial, histories, None, r)  # fmt: skip
