"""The trace's origins as the audit's findings, each at its file, line and statement.

A traced origin is the finding for its (layer, quantity); a finding the step-level judgement made that
comes after a traced origin in backward order is what that origin passes on and is dropped (its row is
then inherited). A step-level finding before every traced origin (the trace saw no statement for it:
an update that moves w the wrong way, a gradient never applied) stays, placed at the statement that
wrote the parameter, where one did.
"""

from dataclasses import replace

import numpy as np

from fcgrad.audits.blog import backward_order
from fcgrad.audits.code.judge import END_TO_END, CodeFinding
from fcgrad.audits.code.trace.match import INHERITED, OK, UPDATE_WORDS, Line, Trace, factor_entry, factor_of
from fcgrad.engine.compare import errors, worst_index

WORDS = {
    "residual_y": "∂L/∂y",
    "residual_z": "∂L/∂z",
    "grad_w": "∂L/∂w",
    "grad_b": "∂L/∂b",
    "residual_x": "∂L/∂x",
}


def _finding(o: Line) -> CodeFinding:
    q, r = o.quantity, o.record
    value, expected = (r.value if o.shown is None else o.shown), o.expected
    index = shown = exp = None
    max_abs = rel = float("nan")
    if expected is not None:
        hit = [a for a in _oriented(value, expected)]
        if hit:
            a = hit[0]
            max_abs, rel = errors(a, expected)
            index = worst_index(a, expected)
            shown, exp = float(a[index]), float(expected[index])
    sample = f", sample {q.sample} alone" if q.sample is not None else ""
    how = f"traced: line {r.line} `{r.target}` in {r.function}(){sample}, from inputs that are right"
    return CodeFinding(
        q.layer,
        q.name,
        max_abs,
        rel,
        tuple(o.diagnoses),
        "",
        how,
        index,
        shown,
        exp,
        r.file,
        r.line,
        r.statement,
        r.target,
    )


def _named_own(f: CodeFinding) -> bool:
    """A finding named by the catalogue as a mistake of its own kind, not merely a constant factor off."""
    return bool(f.diagnoses) and f.diagnoses[0].name not in ("scaled", "constant_factor")


def _oriented(value: np.ndarray, expected: np.ndarray):
    if value.shape == expected.shape:
        yield value
    elif value.size == expected.size:
        if value.ndim == 2 and value.T.shape == expected.shape:
            yield value.T
        else:
            yield value.reshape(expected.shape)


def traced_findings(trace: Trace) -> list[CodeFinding]:
    """One finding per origin statement and quantity (a statement run once per sample is one finding)."""
    out, seen = [], set()
    for o in trace.origins:
        named = o.diagnoses[0].name if o.diagnoses else None
        key = (o.record.file, o.record.line, named) if named else (o.record.file, o.record.line, o.quantity.layer)
        if key not in seen:
            seen.add(key)
            out.append(_finding(o))
    return sorted(out, key=lambda f: (backward_order((f.layer, f.quantity)), f.line))


def writer_of(trace: Trace, value_user: np.ndarray) -> Line | None:
    """The last statement that assigned ``value_user`` (the file's own array after the step), if one did."""
    for line in reversed(trace.lines):
        hit = factor_of(line.record.value, value_user)
        if hit is not None and abs(hit[0] - 1.0) <= 1e-12:
            return line
    return None


# Names that say only what constant a value is off by; the trace's wrong N (1/M where 1/N belongs, placed where M
# was computed) tells more about the same factor when M happens to make it 2 or N.
FACTOR_NAMES = ("scaled", "constant_factor", "square_loss_half", "missing_1_over_n")


def _at(f: CodeFinding, o: CodeFinding) -> CodeFinding:
    """``f`` placed at the statement of ``o``; ``o``'s names where ``f`` has none, or only a constant factor's that
    the trace traced to a wrong N."""
    wrong_n = bool(o.diagnoses) and o.diagnoses[0].name == "one_over_wrong_n"
    factor_only = bool(f.diagnoses) and f.diagnoses[0].name in FACTOR_NAMES
    names = o.diagnoses if wrong_n and factor_only else (f.diagnoses or o.diagnoses)
    return replace(
        f, diagnoses=names, judged_from=o.judged_from, file=o.file, line=o.line, statement=o.statement, target=o.target
    )


def _gradient_it_read(trace: Trace, writer: Line | None, new: np.ndarray) -> Line | None:
    """The statement that made the gradient an update read (not the parameter itself), where one did."""
    if writer is None:
        return None
    at = trace.lines.index(writer)
    for _, v in writer.record.reads:
        if v.shape == np.shape(new) and v.size > 1:
            continue  # the parameter, as it was
        for line in reversed(trace.lines[:at]):
            if line.record.value.shape == v.shape and np.array_equal(line.record.value, v):
                return line
    return None


def first_writer(trace: Trace, value_user: np.ndarray) -> Line | None:
    """The first statement that assigned exactly ``value_user`` (a value the file exposes), if one did."""
    value_user = np.asarray(value_user, dtype=np.float64)
    for line in trace.lines:
        if line.record.value.shape == value_user.shape and np.array_equal(line.record.value, value_user):
            return line
    return None


# A factor read off two arrays equal to rounding (the trace's MATCH_REL_TOL is 1e-8): 1e-9 relative tells N from
# any other constant a backward carries.
SAME_FACTOR_REL = 1e-9


def per_sample(trace: Trace, seen, ref: dict, layout, n: int) -> bool:
    """Whether the file's residuals are per sample (N × JAX's) though its top layer's gradients are not right: the
    statement that made the top residual it exposes is right at N × JAX's, and its grad_w is no N × JAX's (a 1/N
    left out everywhere below that residual is a mistake, not a convention)."""
    if n < 2 or seen is None or not trace.lines:
        return False
    top = seen.layers[-1].values
    truth = ref["layers"][-1]["grad_w"]
    grad_w = layout.read("weight", top["grad_w"], truth.shape) if "grad_w" in top else None
    hit = None if grad_w is None else factor_of(grad_w, truth)
    if grad_w is None or (hit is not None and abs(hit[0] - n) <= SAME_FACTOR_REL * n):
        return False
    for value in (seen.residual_y, top.get("residual_z"), top.get("residual_x")):
        made = None if value is None else first_writer(trace, value)
        q = None if made is None else made.quantity
        if made is not None and made.status == OK and q is not None and q.sample is None and q.name.startswith("resid"):
            return abs(made.factor - n) <= SAME_FACTOR_REL * n
    return False


def merge(
    judged: list[CodeFinding], trace: Trace | None, rows, updated: list[dict] | None = None, seen=None, n: int = 1
) -> list[CodeFinding]:
    """The findings: the step-level ones placed at their statements, and the origins only the trace saw.

    A step-level finding (judged on the whole batch, from the file's own inputs) keeps its numbers and names
    and takes the statement of the traced origin of the same quantity; one the trace shows to carry another
    origin's error, with no name of its own, is dropped for that origin. A traced origin of a quantity whose
    row is right is not one (a per-sample value the catalogue mistook); one of a quantity the file exposes no
    row for is added.
    """
    if trace is None:
        return judged
    traced = {}
    for f in traced_findings(trace):
        traced.setdefault((f.layer, f.quantity), f)
    by_name = {f.diagnoses[0].name: key for key, f in traced.items() if f.diagnoses}
    right = {(r.layer, r.quantity) for r in rows if r.ok}
    out, used = [], set()
    for f in judged:
        key = (f.layer, f.quantity)
        if key not in traced and f.diagnoses and f.diagnoses[0].name in by_name:
            key = by_name[f.diagnoses[0].name]  # the same mistake, placed by the trace at another layer's line
        if key in traced:
            if key not in used:  # the traced origin of a quantity that feeds this one (a residual): the trace's own
                upstream = backward_order(key) < backward_order((f.layer, f.quantity))
                out.append(traced[key] if upstream else _at(f, traced[key]))
                used.add(key)
            continue
        after_origin = traced and backward_order(key) > min(backward_order(k) for k in traced)
        if after_origin and f.judged_from == END_TO_END:
            continue  # judged only end to end, after a traced origin: the trace judged its statements from their inputs
        exposed = None  # the value the file exposes for it (a residual, or a gradient it returns), where it does
        if seen is not None:
            exposed = seen.residual_y if f.quantity == "residual_y" else seen.layers[f.layer].values.get(f.quantity)
        made = None if exposed is None else first_writer(trace, exposed)
        if after_origin and made is not None and made.status == INHERITED and not _named_own(f):
            continue  # made from a traced origin's error, with no name of its own: it carries that one
        writer = None
        if updated is not None and f.quantity in ("grad_w", "grad_b"):
            writer = writer_of(trace, updated[f.layer][f.quantity[-1]])
            writer = _gradient_it_read(trace, writer, updated[f.layer][f.quantity[-1]]) or writer
        writer = writer or made  # a value the file exposes: where it was computed
        if writer is None and f.diagnoses and f.diagnoses[0].name == "missing_1_over_n":
            writer = factor_entry(trace, float(n))  # the residual the 1/N was left out of
        if writer is not None:
            r = writer.record
            how = f.judged_from
            if how == END_TO_END:
                how = f"traced: line {r.line} `{r.target}` in {r.function}()"
            f = replace(f, file=r.file, line=r.line, statement=r.statement, target=r.target, judged_from=how)
        if trace.lines and "the audit cannot see" in f.note:  # the trace saw every statement
            f = replace(f, note="; ".join(n for n in f.note.split("; ") if "the audit cannot see" not in n))
        out.append(f)
    summed = {key for key, f in traced.items() if f.diagnoses and f.diagnoses[0].name == "missing_1_over_n"}
    # an update judged against the gradient it read is a mistake of its own, though the gradient (its row) is right
    updates = {key for key, f in traced.items() if f.diagnoses and UPDATE_WORDS in f.diagnoses[0].message}
    out += [f for key, f in traced.items() if key not in used and (key not in right or key in summed | updates)]
    named = {(f.file, f.line): f.diagnoses for f in out if f.line is not None and f.diagnoses}
    out = [  # one statement, one mistake: a quantity it made wrong without a name of its own takes the statement's
        f if f.diagnoses or (f.file, f.line) not in named else replace(f, diagnoses=named[(f.file, f.line)])
        for f in out
    ]
    out = _one_derivative_left_out(out)
    return sorted(out, key=lambda f: backward_order((f.layer, f.quantity)))


# The activation's derivative left out of a layer's ∂L/∂z shows again in the grad_w and grad_b computed from it:
# one mistake, its finding at ∂L/∂z, the gradients' rows inherited from it.
LEFT_OUT = ("activation_derivative_missing", "activation_derivative_dropped", "gradient_without_activation_derivative")


def _one_derivative_left_out(findings: list[CodeFinding]) -> list[CodeFinding]:
    def left_out(f):
        return bool(f.diagnoses) and f.diagnoses[0].name in LEFT_OUT

    layers = {f.layer for f in findings if f.quantity == "residual_z" and left_out(f)}
    return [f for f in findings if not (f.quantity in ("grad_w", "grad_b") and f.layer in layers and left_out(f))]
