"""``fcgrad audit --code FILE.py``: a user's own NumPy network against JAX, every mistake located and named.

The package's modules are the audit's steps, in order:

1. **find** the network and its training call: ``load`` (the file loaded within ``imports``' time limit, its
   shape recognised), ``params`` (its parameters wherever it holds them), ``layout`` (its arrays' layout), and
   one driver per shape: ``layers``, ``train``, ``step``, ``functions``, ``returns``, ``build``, ``script``;
2. **run it traced**: one step of the file's own training under the recorder, each array it assigns kept
   (``trace``), and its drift against JAX over ``p.steps`` steps;
3. **differentiate the file's forward**: ``model`` (the library's activations and loss that reproduce what
   the file computes, with its own convention), ``problem`` (a problem that can tell right from wrong), then
   JAX's gradients of that model;
4. **match**: each recorded array against the quantity it should be (``trace.match``), each exposed quantity
   judged from its inputs (``judge``, ``seen``), the origins placed at their statements (``trace.findings``);
5. **report**: ``report`` (text and JSON, the file's backward read in its own names: ``trace.reading``);
   ``many`` runs the command over several files or a folder, one process each.

This module runs them (``audit_code``). The first layer's ``residual_x`` (∂L/∂X) trains nothing and is left
out, as in ``audit``.
"""

import contextlib
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fcgrad import reference
from fcgrad.audits.blog import Divergence, _checkpoint_steps, _param_diff_per_entry, backward_order
from fcgrad.audits.code import own as own_functions
from fcgrad.audits.code.judge import CodeFinding, judge, residual_scale
from fcgrad.audits.code.layers import LayeredNet
from fcgrad.audits.code.layout import Layout, check_samples, check_weights, kind_of
from fcgrad.audits.code.load import build, declarations, load_module, user_folder
from fcgrad.audits.code.model import (
    Model,
    OneOutputSoftmaxError,
    combinations_fitting,
    match_loss,
    refuse_overrides,
    relu_or_identity,
)
from fcgrad.audits.code.params import OtherLayoutError
from fcgrad.audits.code.problem import BLOG_SIZES, reasons, with_classes
from fcgrad.audits.code.trace import INHERITED, ORIGIN, Trace, recording, trace_of
from fcgrad.audits.code.trace.findings import merge, per_sample
from fcgrad.audits.code.trace.inferred import read_forward
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import Row
from fcgrad.engine.problems import CLASS_LOSSES, Problem, random_problem
from fcgrad.manual import validate
from fcgrad.manual.errors import FcgradError
from fcgrad.reports.html import CodeAuditHtml

SOFTMAX_OUTPUTS = 3  # the classes of the problem drawn for a file whose forward ends in a softmax and sizes itself
NEVER_APPLIED = {  # what leaves w and b unchanged, when a layer's gradients read back as exactly 0
    "classes": "its backward leaves w and b as they were, and nothing has an update(lr) or step(lr) to apply "
    "what it stored",
    "store-then-update": "its backward and update leave w and b as they were",
    "step": "step returns w and b as they came",
}

__all__ = ["CodeAuditReport", "CodeFinding", "Inherited", "audit_code"]


@dataclass(frozen=True)
class Inherited:
    """A quantity that differs from JAX only because of an origin above it (``origin``: its finding's location)."""

    layer: int
    quantity: str
    origin: tuple[int, str] | None
    judged: bool = True  # False: the file exposes no upstream for it, so it was not judged on its own


@dataclass
class CodeAuditReport(CodeAuditHtml):
    file: str
    protocol: str  # classes, store-then-update, train_step, step or functions
    problem: Problem
    end_to_end: list[Row]  # step 0, the file's own numbers flowing down
    isolated: list[Row]  # each layer fed JAX's upstream (the layered classes only)
    findings: list[CodeFinding]  # the origins
    drift: Divergence
    histories: dict = field(default_factory=dict, repr=False)  # loss_code, loss_reference, param_maxdiff per step
    layout: Layout = field(default_factory=Layout)
    inherited: list[Inherited] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the audit took from where, when the file did not say
    layout_from: str = "the blog's, the default"  # where the layout was declared
    trace: Trace | None = None  # every array the file's step assigned, matched to what it should be
    cannot_tell: list[str] = field(default_factory=list)  # why the problem cannot tell right from wrong, if it cannot

    @property
    def ok(self) -> bool:
        return not self.findings and all(r.ok for r in self.end_to_end + self.isolated)


def resolve_layout(declared: dict, weights: str | None, samples: str | None) -> tuple[Layout, list[str]]:
    """The layout the file declares and the one asked for, which must agree; and where it came from."""
    chosen, said = {}, []
    for key, asked, check, option in (
        ("WEIGHTS", weights, check_weights, "--weights"),
        ("SAMPLES", samples, check_samples, "--samples"),
    ):
        mine = declared.get(key)
        value = check(mine[0], f"{mine[1]}: {key}") if mine else None
        if asked is not None:
            asked = check(asked, option)
            if value is not None and asked != value:
                raise FcgradError(
                    f"{option} {asked}: {mine[1]} declares {key} = {value!r}; expected one layout, "
                    f"the same in both places or in one"
                )
        chosen[key] = value or asked
        if value or asked:
            said.append(f"{key} = {value or asked!r} at {mine[1]}" if value else f"{option} {asked}")
    layout = Layout(chosen["WEIGHTS"] or "in,out", chosen["SAMPLES"] or "columns")
    return layout, said


def _sizes_declared(declared: dict) -> tuple[int, ...] | None:
    if "SIZES" not in declared:
        return None
    value, where = declared["SIZES"]
    try:
        return tuple(validate.check_sizes(list(value)))
    except (FcgradError, TypeError) as exc:
        raise FcgradError(f"{where}: SIZES: expected the layer widths, e.g. (2, 4, 1); {exc}") from None


def _layout_shown(driver, layout: Layout, said: list[str]) -> tuple[Layout, list[str]]:
    """The layout the file's own arrays showed the driver, where nothing declared one; a declared one they contradict
    is refused."""
    shown = getattr(driver, "layout", layout)
    if shown == layout:
        return layout, said
    for part, words in (("weights", ("WEIGHTS", "--weights")), ("samples", ("SAMPLES", "--samples"))):
        asked = [s for s in said if s.startswith(words)]
        if asked and getattr(shown, part) != getattr(layout, part):
            raise FcgradError(f"{asked[0]}: the file's own arrays are {shown.describe()}; expected that layout")
    return shown, [*said, getattr(driver, "layout_from", None) or "the file's own arrays"]


def _problem_for(sizes, problem: Problem | None, file: str, *, lr=None, batch=None, seed=None) -> Problem:
    if problem is not None:
        if sizes is not None and tuple(problem.sizes) != tuple(sizes):
            raise FcgradError(
                f"{file}: the network has sizes {'-'.join(map(str, sizes))}, the problem "
                f"{'-'.join(map(str, problem.sizes))}; expected the same widths"
            )
        return problem
    sizes = tuple(sizes or BLOG_SIZES)
    p = random_problem(list(sizes), batch=8 if batch is None else batch, seed=0 if seed is None else seed)
    return p.with_options(lr=lr)


def _scaled(ref: dict, scale: float) -> dict:
    """JAX's gradients of ``scale`` × the library's loss: every residual and gradient times ``scale``."""
    if scale == 1.0:
        return ref
    layers = [{q: scale * v for q, v in layer.items()} for layer in ref["layers"]]
    return {**ref, "loss": scale * ref["loss"], "residual_y": scale * ref["residual_y"], "layers": layers}


def drift(stepper, p: Problem, scale: float = 1.0) -> tuple[Divergence, dict]:
    """``stepper(params) -> (loss, new params)`` and JAX, ``p.steps`` steps from ``p.params``, every step compared.

    ``scale``: the file's loss is that × the library's, so JAX steps with ``scale·lr`` on the library's loss."""
    params, losses, history, diverged = p.params, [], [p.params], None
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(p.steps):
            value, params = stepper(params)
            if not np.isfinite(value):
                diverged = k
                break
            losses.append(value)
            history.append(params)
    done = len(losses)
    common = dict(activations=p.activations, loss=p.loss)
    r = reference.train(p.params, p.x, p.t, lr=p.lr * scale, steps=done, **common)
    if diverged is None:  # entry k of each: the loss at the parameters after k steps
        with np.errstate(over="ignore", invalid="ignore"):
            losses.append(stepper(params)[0])
    final_ref = reference.gradients(r["final"], p.x, p.t, **common)["loss"]
    mine = [{q: np.stack([h[i][q] for h in history[: done + 1]]) for q in ("w", "b")} for i in range(len(p.params))]
    dp, scale = _param_diff_per_entry(mine, r["params"])  # (done + 1,)
    lc, lj = np.asarray(losses, np.float64), np.append(r["losses"], final_ref)[: len(losses)]
    over = np.flatnonzero(dp[1:] > tol.TRAJ_ABS_TOL_F64 * max(1.0, scale))
    checkpoints = [
        {"step": m, "loss_blog": _finite(lc, m), "loss_jax": _finite(lj, m), "param_max_abs_diff": float(dp[m])}
        for m in _checkpoint_steps(done)
        if m <= done
    ]
    div = Divergence(
        steps=done,
        diverged_at_step=diverged,
        loss_max_abs_diff=float(np.max(np.abs(lc[:done] - lj[:done]))) if done else 0.0,
        param_max_abs_diff=float(np.max(dp)),
        first_step_params_differ=int(over[0]) + 1 if over.size else None,
        final_loss_blog=_finite(lc, done),
        final_loss_jax=_finite(lj, done),
        final_param_max_abs_diff=float(dp[-1]),
        checkpoints=checkpoints,
    )
    return div, {"loss_code": lc, "loss_reference": lj, "param_maxdiff": dp}


def _step_model(driver, p: Problem, path: str, model):
    """A step function's model read off the values it computes (its activations, its loss), where it declares none."""
    from fcgrad.manual.network import forward  # noqa: PLC0415

    with recording(str(Path(path).resolve().parent)) as rec:
        value = driver.run(p.params, p)[0]
    fits = _loss_fits(driver, p, path, value)
    read = read_forward(rec.records, p.params, p.x)
    if read is not None:
        acts, output = relu_or_identity(p, read[0], fits), read[1]
        said = "the activations read off the values step computes"
    else:
        acts, output = _activations_off_the_loss(p, path, value, fits), None
        said = "the activations read off the loss step returns (no array it binds is a layer's output)"
        if acts is None:
            return model
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        y = forward(p.params, p.x, acts)[0]
        loss = match_loss(value, y, p.t, "step", path)
    if output is not None and loss not in ({"softmax": "cross-entropy", "sigmoid": "bce-logits"}[output], None):
        loss = None
    if loss is None:
        return Model(acts, model.loss, (said, *(n for n in model.notes if "activations" not in n)))
    return Model(acts, loss, (f"{said}; the loss, off the value it returns",))


def _loss_fits(driver, p: Problem, path: str, value):
    """``fits(params, acts)``: whether the loss step returns at ``params`` (``value`` at the problem's) is the one
    the output of ``acts`` gives, a library loss or the file's own."""
    from fcgrad.manual.network import forward  # noqa: PLC0415

    def fits(params, acts):
        v = value if params is p.params else driver.run(params, p)[0]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return match_loss(v, forward(params, p.x, acts)[0], p.t, "step", path) is not None

    return fits


def _activations_off_the_loss(p: Problem, path: str, value, fits) -> tuple[str, ...] | None:
    """Where the step's values do not show its forward (``xs.append(np.tanh(z))`` binds no name), the activations
    whose output gives the loss it returns; None where that loss is not a number. None fits: refused in one line."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(value):
        return None
    found = combinations_fitting(p, fits, path)
    if found is None:
        raise FcgradError(
            f"{path}: the activations of step could be read neither off the arrays it binds nor off the loss it "
            "returns; expected ACTIVATIONS = [...] (one name per layer) in the file"
        )
    return found


def _summed_entry(trace: Trace):
    """The traced statement where a 1/N was left out and never restored (the file steps along the gradient of the
    sum over the samples), if the trace placed one; None otherwise."""
    for line in trace.lines:
        if line.status == ORIGIN and line.diagnoses and line.diagnoses[0].name == "missing_1_over_n":
            q = line.quantity
            if q is not None and q.sample is None and q.name.startswith("residual"):
                return line
    return None


def _modulo(entry, n: int) -> str:
    r = entry.record
    return (
        f"the file steps along N = {n} × the gradient of the mean loss (a sum over the samples, from line {r.line} "
        f"`{r.target}` on): one finding there, and every other quantity judged against N × JAX's"
    )


def _finite(values: np.ndarray, k: int) -> float | None:
    return float(values[k]) if k < len(values) and np.isfinite(values[k]) else None


def _carried_from(trace: Trace | None, findings: list[CodeFinding]) -> dict[tuple, tuple]:
    """(layer, quantity) -> the finding whose error the trace saw it carry: the origin of the statement that
    computed it, where that origin is a finding's statement."""
    if trace is None:
        return {}
    at_line = {(f.file, f.line): (f.layer, f.quantity) for f in findings if f.line is not None}
    out: dict[tuple, tuple] = {}
    for line in trace.lines:
        q, origin = line.quantity, line.origin
        if line.status != INHERITED or q is None or origin is None or not q.backward:
            continue
        found = at_line.get((origin.record.file, origin.record.line))
        if found is not None and (q.sample is None or (q.layer, q.name) not in out):
            out[(q.layer, q.name)] = found
    return out


def _inherited(tables: list[list[Row]], findings: list[CodeFinding], unjudged: set, trace=None) -> list[Inherited]:
    """Each wrong row that is no origin, with the finding it inherits from: the one whose error the trace saw it
    carry, else the nearest origin above it in backward order."""
    origins = sorted(((f.layer, f.quantity) for f in findings), key=backward_order)
    carried = _carried_from(trace, findings)
    out, seen = [], set(origins)
    for r in (r for rows in tables for r in rows):
        key = (r.layer, r.quantity)
        if r.ok or key in seen:
            continue
        seen.add(key)
        above = [o for o in origins if backward_order(o) <= backward_order(key)]
        origin = carried.get(key, above[-1] if above else None)
        out.append(Inherited(r.layer, r.quantity, origin, key not in unjudged))
    return sorted(out, key=lambda h: backward_order((h.layer, h.quantity)))


def audit_code(
    path: str,
    problem: Problem | None = None,
    *,
    steps: int | None = None,
    weights: str | None = None,
    samples: str | None = None,
    loss: str | None = None,
    activations=None,
    lr: float | None = None,
    batch: int | None = None,
    seed: int | None = None,
) -> CodeAuditReport:
    """Audit the network in ``path`` on ``problem`` (default: the blog's AND for a 2-4-1 net, else a random one).

    ``weights`` (``"in,out"`` or ``"out,in"``) and ``samples`` (``"columns"`` or ``"rows"``): the file's layout,
    unless it declares ``WEIGHTS`` / ``SAMPLES`` itself (a different one is refused). ``loss`` and ``activations``:
    what the caller expects the file to compute (refused when it computes another); ``lr``, ``batch``, ``seed``:
    for the problem chosen when none is given. The file's prints go to stderr, leaving stdout to the report.
    """
    with user_folder(path), contextlib.redirect_stdout(sys.stderr):
        return _audit(path, problem, steps, weights, samples, loss, activations, lr, batch, seed)


def _built(module, path: str, layout: Layout, said: list[str], hint, lr: float):
    """The file's driver and its layout: where the file declares none, the one its parameters' shapes join in."""
    read: list[str] = []
    for _ in range(3):  # weights, then samples, each read at most once
        try:
            driver, declared = build(module, path, layout, hint, lr)
            _ = driver.sizes  # the widths read in this layout: a layout they do not join in raises OtherLayoutError
            return driver, declared, layout, read
        except OtherLayoutError as other:
            changed = "WEIGHTS" if other.layout.weights != layout.weights else "SAMPLES"
            if any(s.startswith((changed, "--weights" if changed == "WEIGHTS" else "--samples")) for s in said):
                raise FcgradError(f"{path}: {other.why}, not as declared ({'; '.join(said)})") from None
            layout = other.layout
            read.append(f"{other.why} (read off the shapes)")
    raise FcgradError(f"{path}: its parameters join in no layout of w (in, out) or (out, in)")


def _audit(path, problem, steps, weights, samples, loss, activations, lr, batch, seed) -> CodeAuditReport:
    module = load_module(path)
    with own_functions.offered(module, path) as offered:
        report = _audit_module(module, path, problem, steps, weights, samples, loss, activations, lr, batch, seed)
        report.notes[:0] = offered.notes((*report.problem.activations, report.problem.loss))
        return report


def _audit_module(module, path, problem, steps, weights, samples, loss, activations, lr, batch, seed):
    declared = declarations(module, path)
    layout, said = resolve_layout(declared, weights, samples)
    sizes_said = _sizes_declared(declared)
    hint = tuple(problem.sizes) if problem is not None else (sizes_said or BLOG_SIZES)
    for widened in (False, True):
        try:
            rate = problem.lr if problem else lr or 0.1
            driver, declared, layout, read = _built(module, path, layout, said, hint, rate)
            if own_functions.current() is not None:
                own_functions.current().layout = layout  # a loss of the file's own takes its arrays as it holds them
            if problem is not None and hasattr(driver, "resize"):  # a net the file's script built, at other widths
                driver.resize(tuple(problem.sizes))
            sizes = driver.sizes if driver.sizes is not None else sizes_said
            p = _problem_for(sizes, problem, path, lr=lr, batch=batch, seed=seed)
            model = driver.model(p, declared)
            chosen = widened or problem is not None or sizes_said is not None
            if not chosen and model.loss in CLASS_LOSSES and p.sizes[-1] == 1:
                raise OneOutputSoftmaxError(f"{path}: a classifier of one output")  # drawn again, wider
            break
        except OneOutputSoftmaxError:
            if widened or problem is not None or sizes_said is not None:
                raise
            hint = (*hint[:-1], SOFTMAX_OUTPUTS)  # widths the file takes from the data: classes to tell apart
    said += read
    layout, said = _layout_shown(driver, layout, said)
    if getattr(driver, "own_params", None) is not None:  # the file makes its weights itself: both sides start there
        p = replace(p, params=driver.own_params)
    if driver.protocol == "step" and "ACTIVATIONS" not in declared:
        model = _step_model(driver, p, path, model)
    refuse_overrides(model, path, loss=loss, activations=activations)
    p = replace(p, activations=model.activations, loss=model.loss, trainable=None, dtype="float64")
    drawn_for_another = problem is None or problem.loss not in CLASS_LOSSES  # --sizes draws square-loss targets
    if drawn_for_another and p.loss in CLASS_LOSSES:  # the targets drawn for the file's loss: classes, each present
        p = with_classes(p, 0 if seed is None else seed)
    p = p.with_options(steps=steps, dtype="float64")
    ref = _scaled(reference.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss), model.scale)
    cannot_tell = reasons(p, ref)
    with recording(str(Path(path).resolve().parent)) as rec:
        chained = driver.chain(p)
    own = chained[1]
    after = chained[2] if len(chained) > 2 else (driver.params(p.params) if hasattr(driver, "params") else None)
    output = model.output  # "sigmoid": the file's output is σ of the model's, folded into its bce-logits
    trace = trace_of(rec.records, p, ref, layout, after=after, output=output)  # ref: at the file's loss scale
    summed = _summed_entry(trace)
    if summed is not None:  # one finding, named with its factor N; everything else judged modulo it
        ref = _scaled(ref, float(p.batch))
        trace = trace_of(rec.records, p, ref, layout, after=after, output=output)
        at = next(i for i, line in enumerate(trace.lines) if line.record is summed.record)
        trace.lines[at] = summed
        model = replace(model, scale=model.scale * p.batch, notes=(*model.notes, _modulo(summed, p.batch)))
    updated = None if after is None else [{q: layout.give(kind_of(q), a[q]) for q in ("w", "b")} for a in after]
    scale = residual_scale(own, ref, layout, p.batch)
    if scale == 1.0 and per_sample(trace, own, ref, layout, p.batch):  # its gradients wrong, its residuals right
        scale = float(p.batch)
    words = None  # the functions protocol returns its gradients: nothing is read back from an update
    if driver.protocol not in ("functions", "loss_grads"):
        step = getattr(getattr(driver, "step", None), "__name__", "its step")
        words = NEVER_APPLIED.get(driver.protocol, f"{step} leaves w and b as they were")
    e2e = judge(own, p, ref, layout, scale=scale, never_applied=words)
    iso_rows, result = [], e2e
    if isinstance(driver, LayeredNet):
        top = len(p.params) - 1
        ups = [scale * (ref["residual_y"] if i == top else ref["layers"][i + 1]["residual_x"]) for i in range(top + 1)]
        result = judge(driver.fed(p, ups, own.residual_y), p, ref, layout, scale=scale, never_applied=words)
        iso_rows = result.rows
    notes = list(model.notes) + list(getattr(driver, "notes", []))
    if scale != 1.0:
        notes.append(
            f"the file's residuals are per sample (N × JAX's, its gradients carry the 1/N): each is read "
            f"divided by N = {p.batch}"
        )
    div, histories = drift(driver.stepper(p), p, model.scale)
    findings = merge(result.findings, trace, e2e.rows + iso_rows, updated, own, p.batch)
    unjudged = set() if trace.lines else e2e.unjudged | result.unjudged  # traced: each judged from its inputs
    inherited = _inherited([e2e.rows, iso_rows], findings, unjudged, trace)
    return CodeAuditReport(
        path,
        driver.protocol,
        p,
        e2e.rows,
        iso_rows,
        findings,
        div,
        histories,
        layout,
        inherited,
        notes,
        "; ".join(said) or "the blog's, the default",
        trace,
        cannot_tell,
    )
