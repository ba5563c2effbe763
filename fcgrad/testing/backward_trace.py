"""The line of a failing backward where it went wrong, found by running it once more under a recorder.

``assert_backward_matches`` calls ``lines_of_failure`` only after a gradient failed: the user's ``backward``
runs again on the same inputs while every assignment of the one file that defines it is recorded
(``fcgrad.testing.record``); a correct backward is never traced and pays nothing. The records are read in
the order they ran, each value held against what the helper knows (``Known``), in any orientation
(as it is, transposed, keepdims or not):

- **right**: the value is a known quantity: an input, the upstream ∂L/∂y, the layer's z, y and f'(z) (for
  a layer of inputs x, w, b with a library activation), JAX's residual_z and every gradient JAX derives;
- **origin**: not right, none of its inputs wrong, and the catalogue (``fcgrad.diagnosis.catalogue``) names
  it as residual_z or a failing gradient computed with a classic mistake: the first wrong value computed
  from right ones;
- **inherited**: computed from an origin's value (or an inherited one);
- **own**: anything else: a value the helper cannot judge (x̂ of a normalisation, a wrong z), right or not.

Each failing gradient is then followed back from the statement that assigned the value it returned: to
its origin; or to that statement itself when its value is a right quantity where another belongs
(``residual_x = residual_z``, a transposed or squeezed array); or, through own values, to the one
statement with right inputs that two failing values or more were computed from (``z = w @ x + b``, w where
wᵀ belongs: no entry names a wrong z, but the formulas below it are right and share it); else to the
statement that computed the failing value, with the own values it read. A gradient computed in the
``return`` expression has no statement of its own: the origins the catalogue named stand for it (one whose
value a later right value undid was no mistake), or the one statement the own values left for the return
come from. The message gives each such statement as ``line N of FILE: statement  (`target`)``, then the
catalogue's name for it, then why it was chosen.

Only the file that defines ``backward`` is recorded: a mistake made inside a function of another module
(yours, NumPy's) is placed at the statement of that file whose value first shows it.

σ' written as σ in a statement of its own (``sp = sigmoid(z)`` then ``residual_z = residual_y * sp``):
the line named is the residual_z line. ``sp`` is a right value, the layer's output y, which the forward
computes too; what is wrong is y used where σ'(z) belongs, and the first value that shows it is residual_z,
which the catalogue names ``sigmoid_prime_as_y``. The message then names the factor's own line (``it read
sp, which is the layer's output y, from line M: sp = sigmoid(z)``), where the fix goes. The same holds for
any factor that is a right value in the wrong place; a factor that is no known value at all
(``sp = z * (1 - z)``) is named as one the helper cannot judge, at its line.

Anything that keeps the trace from being read (a backward that raises, or returns other values when run
again) leaves the message as it was.
"""

import contextlib
import inspect
import io
import os
import tokenize
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcgrad.diagnosis.catalogue import Context, Diagnosis
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.testing import layer_checks
from fcgrad.testing.record import Record, recording

__tracebackhide__ = True  # pytest shows the user's test and the message, not these frames

# A recorded value is a known quantity when rel = ‖value − quantity‖ / ‖quantity‖ is at most this. A correct
# statement differs from JAX only by rounding: a whole correct backward stays within rel 7e-13 of jax.vjp
# (the measurements behind BACKWARD_REL_TOL), its intermediates no further; 1e-8 leaves 1e4× above that, and
# every mistake of the catalogue misses its quantity by rel ≥ 1e-3 on the helper's N(0, 1) inputs.
TRACE_MATCH_REL_TOL = 1e-8

RIGHT, ORIGIN, INHERITED, OWN, ZERO = "right", "origin", "inherited", "own", "zero"


@dataclass(frozen=True)
class Known:
    """A quantity the helper knows the correct value of, in the user's layout."""

    label: str  # words for it, e.g. "the layer's output y"
    value: np.ndarray
    forward: str = ""  # a forward value's symbol (z, y, f'(z)); "" for an input or a gradient
    gradient: str = ""  # JAX's gradient of this name (``grad_w``), or residual_z


@dataclass
class Step:
    """One record and what it is."""

    record: Record
    status: str  # RIGHT, ORIGIN, INHERITED, OWN or ZERO
    read_from: list[int | None]  # for each array it read (``record.reads``), the step that made it, if one did
    copy_of: int | None = None  # a value passed on: the step that made it
    argument: bool = False  # a function's argument, recorded at its def line
    known: Known | None = None  # what a right value is
    quantity: str | None = None  # an origin: what the catalogue says it should have been
    diagnoses: tuple[Diagnosis, ...] = ()
    origin: int | None = None  # an inherited value: the origin's step

    @property
    def parents(self) -> list[int]:
        """The steps it was computed from."""
        return [j for j in [*self.read_from, self.copy_of] if j is not None]


@dataclass
class Finding:
    """A statement the message names, and why."""

    step: int
    kind: str  # "named", "misplaced", "zero", "root", "computed"
    gradients: list[str] = field(default_factory=list)  # the failing gradients traced to it
    diagnoses: tuple[Diagnosis, ...] = ()
    words: str = ""


def readings(v: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
    """``v`` read as an array of ``shape``: as it is, with or without keepdims, or transposed."""
    if v.size != int(np.prod(shape)):
        return []
    out = []
    if v.shape == shape or tuple(d for d in v.shape if d != 1) == tuple(d for d in shape if d != 1):
        out.append(v.reshape(shape))
    if len(shape) == 2 and v.ndim == 2 and v.T.shape == shape:
        out.append(v.T)
    return out


def same(v: np.ndarray, q: np.ndarray) -> bool:
    """Whether ``v`` is ``q`` in some orientation, to ``TRACE_MATCH_REL_TOL``."""
    norm = float(np.linalg.norm(q))
    for a in readings(v, q.shape):
        if not np.all(np.isfinite(a)):
            return False
        if norm == 0.0:
            if not np.any(a):
                return True
        elif float(np.linalg.norm(a - q)) <= TRACE_MATCH_REL_TOL * norm:
            return True
    return False


def identical(v: np.ndarray, q: np.ndarray) -> bool:
    """Whether ``v`` holds exactly the numbers of ``q`` in some orientation (the same array, passed on)."""
    return any(np.array_equal(a, q) for a in readings(v, q.shape))


def _key(a: np.ndarray) -> tuple:
    """An array's exact numbers, whatever its ones in the shape (keepdims or not)."""
    return tuple(d for d in a.shape if d != 1), a.tobytes()


def _made_by(made: dict, a: np.ndarray) -> int | None:
    """The step that made ``a``'s exact numbers, as it is or transposed (``residual_z.T`` read after
    ``residual_z`` was assigned)."""
    found = made.get(_key(a))
    if found is None and a.ndim == 2:
        found = made.get(_key(a.T))
    return found


def _arguments(records: list[Record]) -> set[int]:
    """The records of a function's arguments: the first of its call, all at the line of its ``def``."""
    out, first = set(), {}
    for r in records:
        line = first.setdefault(r.frame, (r.line, True))
        if line[1] and r.line == line[0] and not r.reads:
            out.add(r.seq)
        else:
            first[r.frame] = (line[0], False)
    return out


Namer = Callable[[np.ndarray], tuple[str, tuple[Diagnosis, ...]] | None]


def analyse(records: list[Record], known: list[Known], namer: Namer) -> list[Step]:
    """Each record judged in the order it ran (see the module docstring)."""
    arguments = _arguments(records)
    steps: list[Step] = []
    made: dict[tuple, int] = {}  # an array's exact value -> the latest step that made it
    for r in records:
        read_from = [_made_by(made, v) for _, v in r.reads]
        earlier = _made_by(made, r.value)
        if earlier is not None:  # a value passed on: what made it is what it is
            e = steps[earlier]
            status = INHERITED if e.status in (ORIGIN, INHERITED) else e.status
            origin = earlier if e.status == ORIGIN else e.origin
            step = Step(r, status, read_from, earlier, r.seq in arguments, e.known, e.quantity, origin=origin)
        else:
            step = Step(r, OWN, read_from, None, r.seq in arguments)
            wrong = [j for j in step.parents if steps[j].status in (ORIGIN, INHERITED)]
            step.known = next((k for k in known if same(r.value, k.value)), None)
            if step.known is not None:
                step.status = RIGHT
            elif not np.any(r.value):
                step.status = ZERO  # an array of zeros to fill: neither right nor wrong yet
            elif wrong:
                first = steps[wrong[0]]
                step.status, step.origin = INHERITED, (wrong[0] if first.status == ORIGIN else first.origin)
            elif (named := namer(r.value)) is not None:
                step.status, (step.quantity, step.diagnoses) = ORIGIN, named
        steps.append(step)
        made[_key(r.value)] = len(steps) - 1
    return steps


def _producer(steps: list[Step], value: np.ndarray) -> int | None:
    """The latest step that assigned exactly ``value`` (in some orientation)."""
    for i in range(len(steps) - 1, -1, -1):
        if identical(steps[i].record.value, value):
            return i
    return None


def _roots(steps: list[Step], start: int) -> set[int]:
    """The own steps ``start`` was computed from (itself included) whose inputs are all right or unknown."""
    roots, seen, todo = set(), set(), [start]
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        own = [p for p in steps[i].parents if steps[p].status == OWN]
        if own:
            todo.extend(own)
        else:
            roots.add(i)
    return roots


def _undone(steps: list[Step], i: int) -> bool:
    """Whether a later right value was computed from step ``i``'s (its mistake undone, or no mistake at all)."""
    return any(s.status == RIGHT and i in s.parents for s in steps[i + 1 :])


def findings(steps: list[Step], failing: dict[str, np.ndarray], row_names: dict[str, tuple]) -> list[Finding]:
    """The statements to name for the failing gradients ``failing`` (name -> the value the backward returned).

    ``row_names``: gradient name -> the catalogue's diagnoses of its failing row.
    """
    out: dict[int, Finding] = {}
    own: dict[str, int] = {}  # gradient -> the own step that assigned it
    unresolved: list[str] = []  # gradients computed in the return expression (or passed through as an argument)
    for gname, value in failing.items():
        p = _producer(steps, value)
        if p is None or steps[p].argument:
            unresolved.append(gname)
            continue
        s = steps[p]
        if s.status in (ORIGIN, INHERITED):
            o = p if s.status == ORIGIN else s.origin
            f = out.setdefault(o, Finding(o, "named", diagnoses=steps[o].diagnoses))
            f.gradients.append(gname)
        elif s.status == RIGHT:
            if _itself(s, gname):
                continue  # its own value, off by less than the trace can see: nothing to place
            out.setdefault(p, Finding(p, "misplaced", [gname], row_names.get(gname, ()), _misplaced(s, gname)))
        elif s.status == ZERO:
            words = f"its value is 0 everywhere, and nothing the backward did after it changed {gname}"
            out.setdefault(p, Finding(p, "zero", [gname], row_names.get(gname, ()), words))
        else:
            own[gname] = p
    live = [i for i, s in enumerate(steps) if s.status == ORIGIN and not _undone(steps, i)]
    if unresolved:
        for i in live:
            out.setdefault(i, Finding(i, "named", diagnoses=steps[i].diagnoses))
    starts = list(own.values())
    shared = len(own)  # how many failing gradients the own values below account for
    if unresolved and not live:  # computed in the return expression from own values that nothing later read
        read = {p for s in steps for p in s.parents}
        starts += [i for i, s in enumerate(steps) if s.status == OWN and i not in read]
        shared += len(unresolved)
    roots = {i for start in starts for i in _roots(steps, start)}
    if shared >= 2 and len({steps[i].record.line for i in roots}) == 1:
        # several formulas wrong through one statement: the shared input is the suspect, not each formula
        root = min(roots)
        names = list(own) + (unresolved if unresolved and not live else [])
        words = (
            f"the catalogue has no name for it: its inputs are right and its value is none the helper knows; "
            f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} computed from it"
        )
        out.setdefault(root, Finding(root, "root", names, words=words))
    else:
        for gname, p in own.items():
            reads = zip((text for text, _ in steps[p].record.reads), steps[p].read_from)
            unknown = [text for text, j in reads if j is not None and steps[j].status == OWN]
            said = f"; it read {', '.join(unknown)}, which the helper cannot judge" if unknown else ""
            words = f"where {gname} is computed{said}"
            out.setdefault(p, Finding(p, "computed", [gname], row_names.get(gname, ()), words))
    return [out[i] for i in sorted(out)]


def _itself(s: Step, gname: str) -> bool:
    """Whether a right step is ``gname``'s own JAX value as it is (not transposed, not reshaped)."""
    v, q = s.record.value, s.known.value
    return s.known.gradient == gname and v.shape == q.shape and same(v.reshape(-1), q.reshape(-1))


def _misplaced(s: Step, gname: str) -> str:
    if s.known.gradient != gname:
        return f"its value is {s.known.label}, where {gname} belongs"
    if s.record.value.shape == s.known.value.shape:
        return f"its value is {s.known.label} transposed"
    return f"its value is {s.known.label} shaped {s.record.value.shape} (JAX's is {s.known.value.shape})"


def _code(statement: str) -> str:
    """A recorded statement without its trailing comment (``# (out, N)``)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(statement).readline):
            if token.type == tokenize.COMMENT:
                return statement[: token.start[1]].rstrip()
    except (tokenize.TokenError, SyntaxError):  # a statement cut short: keep it as it is
        pass
    return statement


def _place(path: str) -> str:
    """The file as the user would type it: relative to the working directory when inside it."""
    with contextlib.suppress(ValueError):
        rel = os.path.relpath(path)
        if not rel.startswith(".."):
            return rel
    return path


def _factors(steps: list[Step], i: int) -> list[str]:
    """What step ``i`` read that a statement of the file made: a forward value, or one the helper cannot judge."""
    out = []
    for (text, _), j in zip(steps[i].record.reads, steps[i].read_from):
        if j is None or steps[j].argument:
            continue
        s = steps[j]
        where = f"from line {s.record.line}: {_code(s.record.statement)}"
        if s.status == RIGHT and s.known.forward and s.known.forward != text:  # a right value under another name
            out.append(f"it read {text}, which is {s.known.label}, {where}")
        elif s.status == OWN:
            out.append(f"it read {text}, a value the helper cannot judge, {where}")
    return out


def render(steps: list[Step], found: list[Finding], shown: set[str] = frozenset()) -> list[str]:
    """The message's lines: ``line N of FILE: statement  (`target`)``, the catalogue's name, and why.

    ``shown``: the catalogue's messages the failing rows already print."""
    lines = []
    for f in found:
        r = steps[f.step].record
        text = [f"line {r.line} of {_place(r.file)}: {_code(r.statement)}  (`{r.target}`)"]
        for d in f.diagnoses[:1]:  # the catalogue's name; its words too unless a failing row already said them
            text.append(f"{d.name}, as named above" if d.message in shown else f"{d.name}: {d.message}")
        if f.kind == "named":
            text.append(f"the first wrong value computed from right ones ({steps[f.step].quantity} belongs there)")
            text += _factors(steps, f.step)
            if f.gradients:
                text.append(f"{', '.join(f.gradients)} {'follows' if len(f.gradients) == 1 else 'follow'} from it")
        else:
            text.append(f.words)
            if f.kind == "root":
                text += _factors(steps, f.step)
        lines.append("\n    ".join(text))
    return lines


def lines_of_failure(
    backward: Callable, kwargs: dict, first: dict, failing: list[str], known: list[Known], namer: Namer, row_names
) -> list[str]:
    """``backward(**kwargs)`` run again under the recorder, read, and put in words; [] when it cannot be.

    ``first``: what the failing run returned (gradient name -> array); ``failing``: the failing gradients.
    """
    try:
        path = inspect.getsourcefile(backward)
    except TypeError:  # a builtin, a partial: no file of its own to read
        return []
    if path is None or not Path(path).is_file():
        return []
    copies = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    try:
        with recording(path) as rec:
            again = backward(**copies)
        again = again._asdict() if hasattr(again, "_asdict") else dict(again)
    except Exception:  # the user's code, run a second time: what it does then is not the helper's to report
        return []
    values = {}
    for g in failing:
        if g not in again or g not in first:
            continue
        a, b = np.asarray(again[g]), np.asarray(first[g])
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            return []  # another value on the second run: the records do not describe the failure
        if a.dtype.kind in "biuf":
            values[g] = np.asarray(a, dtype=np.float64)
    if not rec.records:
        return []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        steps = analyse(rec.records, known, namer)
        shown = {d.message for names in row_names.values() for d in names[:1]}
        return render(steps, findings(steps, values, row_names), shown)


def layer_known(inputs: dict, upstream: str, residual_y, gradients: dict, context: Context, jax_side: dict):
    """What the helper knows at a failing trial: the inputs, ∂L/∂y, z, y and f'(z) of a layer, JAX's gradients.

    ``gradients``: gradient name -> (input name, JAX's gradient); ``jax_side``: JAX's residual_z when it has one.
    """
    known = [Known(f"the input {name}", np.asarray(a, np.float64)) for name, a in inputs.items()]
    known.append(Known(f"{upstream}, the ∂L/∂y the backward was given", np.asarray(residual_y, np.float64)))
    if context.z is not None:
        z = np.asarray(context.z, np.float64)
        known.append(Known(f"the layer's z = {context.view.formula('z')}", z, forward="z"))
    if context.y is not None:
        known.append(Known("the layer's output y", np.asarray(context.y, np.float64), forward="y"))
    if context.activation is not None and context.z is not None and context.y is not None:
        z, y = np.asarray(context.z, np.float64), np.asarray(context.y, np.float64)
        slope = ACTIVATIONS[context.activation].backward(np.ones_like(z), z, y)  # f'(z), entry by entry
        act = f"{context.activation}'(z)"
        known.append(Known(f"{act}, the activation's derivative", np.asarray(slope, np.float64), forward=act))
    if jax_side.get("residual_z") is not None:
        known.append(Known("JAX's residual_z (∂L/∂z)", np.asarray(jax_side["residual_z"]), gradient="residual_z"))
    for gname, (iname, ref) in gradients.items():
        known.append(Known(f"JAX's {gname} (∂L/∂{iname})", np.asarray(ref, np.float64), gradient=gname))
    return known


def layer_namer(candidates: dict, context: Context) -> Namer:
    """The catalogue's best name for a value, as one of ``candidates`` (name -> (input name, JAX's value)).

    Only a value with as many entries as the quantity is asked about, and any value for a bias gradient
    (summed over the wrong axis, it has N entries).
    """

    def name(v: np.ndarray):
        best = None
        for gname, (iname, ref) in candidates.items():
            if v.size != ref.size and layer_checks.ROLES.get(iname) != "grad_b":
                continue
            found = layer_checks.diagnoses_of(gname, iname, v, ref, context)
            if found and (best is None or found[0].residual < best[1][0].residual):
                best = (gname, tuple(found))
        return best

    return name


__all__ = ["TRACE_MATCH_REL_TOL", "Known", "layer_known", "layer_namer", "lines_of_failure", "same"]
