"""The model a user's file computes: each layer's activation and the loss, read off its forward or declared.

JAX must run the same model as the file. Where the file's forward can be run layer by layer, each layer's
activation is the library's one that reproduces ``y = f(wᵀx + b)``; where only the whole forward can be
run, the combination of activations that reproduces its output. The loss is the library's that reproduces
the value the file computes. A file may declare ``ACTIVATIONS`` (one name per layer) and ``LOSS``; a
declaration the forward contradicts, or an option asked for on the command line that the file does not
compute, is refused in one line rather than dropped.
"""

from dataclasses import dataclass
from itertools import product

import numpy as np

from fcgrad.audits.code.own import LIBRARY, LIBRARY_LOSSES, own_loss, own_names
from fcgrad.engine.compare import errors
from fcgrad.manual import validate
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.losses import LOSSES

# A layer's forward or the loss matches a library formula to a few ulps when it is that formula
# (measured rel ≤ 1e-16 on the fixtures); 1e-9 tells formulas apart without being fooled by rounding.
FORMULA_MATCH_TOL = 1e-9
# Reading the activations of a whole forward runs the file's forward once and the library's once per combination:
# 4 activations and 5 layers are 1,024 library forwards (measured 0.08 s on a 3-5-5-5-5-2 problem of 8 samples);
# a deeper file declares ACTIVATIONS instead of waiting 4× longer per layer.
MAX_COMBINATIONS = 1024


class LossName(str):
    """A library loss's name, carrying the constant by which the file's own loss differs from it (``scale``), and
    the function the file's output applies to the library's y before its loss (``output``: ``"sigmoid"``)."""

    scale: float = 1.0
    words: str = ""
    output: str | None = None


# A file's loss may be the library's times a constant and still be the same objective, written another way:
# the square loss without its ½, or averaged over the outputs as well as the samples (MSE over every entry).
# A sum over the samples is not among them: its update is N × the mean's, the missing 1/N the audit names.
def _conventions(loss: str, outputs: int) -> list[tuple[float, str]]:
    if loss == "square":
        out = [(2.0, "no ½: Σ (y − t)² / N")]
        if outputs > 1:
            out += [
                (2.0 / outputs, f"a mean over the {outputs} outputs too: Σ (y − t)² / (N·{outputs})"),
                (1.0 / outputs, f"a mean over the {outputs} outputs too, with the ½"),
            ]
        return out
    if loss == "mae" and outputs > 1:
        return [(1.0 / outputs, f"a mean over the {outputs} outputs too")]
    return []


# Binary cross-entropy written on a sigmoid output, −Σ (t·log a + (1 − t)·log(1 − a)) / N with a = σ(z), is the
# library's bce-logits on the logits z: the same objective, its σ folded into the loss. The file's output is then
# σ of the library's y (``Model.output``).
BCE_WORDS = "binary cross-entropy on the sigmoid output, the library's bce-logits on the logits"


def bce_on_probabilities(a, t) -> float:
    """−Σ (t·log a + (1 − t)·log(1 − a)) / N of outputs ``a`` in (0, 1), blog layout (out, N)."""
    a, t = np.asarray(a, np.float64), np.asarray(t, np.float64)
    return float(-np.sum(t * np.log(a) + (1 - t) * np.log(1 - a)) / a.shape[1])


@dataclass(frozen=True)
class Model:
    activations: tuple[str, ...]
    loss: str
    notes: tuple[str, ...] = ()  # where each came from when the file did not say it plainly
    scale: float = 1.0  # the file's loss is this × the library's (its own convention: no ½, a mean over outputs)
    output: str | None = None  # "sigmoid": the file's output is σ of the library's y, folded into bce-logits

    def __post_init__(self):
        if getattr(self.loss, "output", None) == "sigmoid" and self.activations and self.activations[-1] == "sigmoid":
            object.__setattr__(self, "activations", (*self.activations[:-1], "identity"))
            object.__setattr__(self, "output", "sigmoid")
            said = f"the loss: {BCE_WORDS} (the output layer's sigmoid taken into the loss)"
            object.__setattr__(self, "notes", (*self.notes, said))
        scale = getattr(self.loss, "scale", 1.0)
        if scale != 1.0:
            said = f"the file's loss is {scale:.6g} × the library's {self.loss} loss ({self.loss.words}): its own"
            object.__setattr__(self, "scale", float(scale))
            object.__setattr__(self, "notes", (*self.notes, said + "; the gradients it should compute are scaled so"))
        object.__setattr__(self, "loss", str(self.loss))


def _close(a, b) -> bool:
    return np.shape(a) == np.shape(b) and errors(a, b)[1] <= FORMULA_MATCH_TOL


def match_activation(y, z, what: str, file: str) -> str:
    """The library activation ``f`` with ``f(z) = y``, both in the blog's layout."""
    with np.errstate(over="ignore", invalid="ignore"):
        for name in _each_name():  # the library's first; then the file's own elementwise functions
            if _close(y, ACTIVATIONS[name].forward(z)):
                return name
    raise FcgradError(
        f"{file}: {what} matches none of {', '.join(LIBRARY)} and no elementwise function of the file's; "
        "expected one of them"
    )


def loss_value(model: Model, y, t) -> float:
    """The file's loss at its own output ``y`` (blog layout), in the library's terms (σ folded where it is)."""
    if model.output == "sigmoid":
        with np.errstate(divide="ignore", invalid="ignore"):
            return bce_on_probabilities(y, t)
    return float(LOSSES[model.loss].forward(y, t))


def match_loss(value: float, y, t, what: str, file: str) -> str | None:
    """The library loss with ``L(y, t) = value`` (blog layout), or a constant times it that is a convention of
    its own (a ``LossName`` with that ``scale``); binary cross-entropy of outputs in (0, 1) is bce-logits on their
    logits (``output`` ``"sigmoid"``: ``Model`` folds the top sigmoid into it); else the file's own function of
    (y, t) that computes it (``fcgrad.audits.code.own``); None when none does."""
    found = _library_loss(value, y, t)
    if found is None and np.all((np.asarray(y) > 0) & (np.asarray(y) < 1)):
        with np.errstate(divide="ignore", invalid="ignore"):
            if _close(np.float64(value), np.float64(bce_on_probabilities(y, t))):
                found = LossName("bce-logits")
                found.output, found.words = "sigmoid", BCE_WORDS
    if found is None:  # the file's own function of (y, t) that computes it, joined for the audit
        found = own_loss(value, y, t)
    return found


def _library_loss(value: float, y, t) -> str | None:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for scaled in (False, True):
            for name, loss in LOSSES.items():
                try:
                    expected = float(loss.forward(y, t))
                except (ValueError, FloatingPointError):
                    continue
                if not np.isfinite(expected):
                    continue
                for c, words in _conventions(name, np.shape(y)[0]) if scaled else [(1.0, "")]:
                    if _close(np.float64(value), np.float64(c * expected)):
                        found = LossName(name)
                        found.scale, found.words = c, words
                        return found
    return None


class OneOutputSoftmaxError(FcgradError):
    """The forward ends in a softmax over a single output (always 1): the problem needs more outputs."""


class Forward(tuple):
    """Each layer's activation, and ``output``: ``softmax`` where the forward ends in the probabilities that the
    library counts as part of its cross-entropy on the top layer's z (a sigmoid under binary cross-entropy is
    folded by ``Model`` instead)."""

    output: str | None = None

    def __new__(cls, acts, output: str | None = None):
        made = super().__new__(cls, acts)
        made.output = output
        return made


def _softmax(z):  # over the outputs of each column, the blog's layout
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def logits(y: np.ndarray, output: str | None) -> np.ndarray:
    """The top layer's z behind probabilities ``y`` (a softmax's up to a constant per column, which it ignores)."""
    if output == "softmax":
        with np.errstate(divide="ignore"):
            return np.log(y)
    return y


def summed_loss(value: float, y, t, n: int, file: str) -> LossName | None:
    """A loss written one value per entry and summed over the samples too (no reduction of its own): the library's
    loss (with the file's convention) times N, its objective, or None. Its gradient carries no 1/N, rightly."""
    per_sample = match_loss(value / n, y, t, "the loss", file)
    if per_sample is None:
        return None
    found = LossName(str(per_sample))
    found.scale = n * per_sample.scale
    found.words = "summed over the samples, as its per-entry loss adds up: its gradient carries no 1/N"
    found.words += f"; {per_sample.words}" if per_sample.words else ""
    return found


def whole_forward(run, p, what: str, file: str, declared: tuple[str, ...] | None) -> tuple[str, ...]:
    """The activations of a forward that runs only whole: ``run(params) -> y`` (blog layout); a forward that ends
    in a softmax over the outputs comes back as a ``Forward`` whose top layer is the identity, output ``softmax``."""
    from fcgrad.manual.network import forward

    n = len(p.params)
    y = run(p.params)
    if y.shape[0] == 1 and np.allclose(y, 1.0, rtol=0.0, atol=FORMULA_MATCH_TOL):
        raise OneOutputSoftmaxError(
            f"{file}: {what} is 1 for every sample: a softmax over one output; expected two outputs or more "
            "(--sizes with a wider last layer)"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        if declared is not None:
            if not _close(y, forward(p.params, p.x, declared)[0]):
                raise FcgradError(
                    f"{file}: {what} does not compute ACTIVATIONS = {list(declared)}; expected the "
                    "activations it declares"
                )
            return declared
        fits = _forward_fits(run, p, y)
        for names in _name_sets():
            if y.shape[0] > 1 and len(names) ** (n - 1) <= MAX_COMBINATIONS:
                for acts in product(names, repeat=n - 1):
                    if _close(y, _softmax(forward(p.params, p.x, (*acts, "identity"))[0])):
                        return Forward((*acts, "identity"), "softmax")
            found = _first_fitting(p, names, fits, file)
            if found is not None:
                return found
    raise FcgradError(
        f"{file}: {what} matches no combination of {', '.join(LIBRARY)} or the file's own elementwise functions "
        "after z = wᵀx + b; expected layers of such activations (softmax belongs to the cross-entropy loss, not to "
        "the forward)"
    )


def _each_name():
    yield from LIBRARY
    yield from own_names()  # joined only when no library activation matched


def _name_sets():
    """The library's activations; then, where the file has elementwise functions of its own, those with them."""
    yield LIBRARY
    if own_names():
        yield (*LIBRARY, *own_names())


def _first_fitting(p, names: tuple[str, ...], fits, file: str) -> tuple[str, ...] | None:
    """The first combination of ``names``, one per layer, for which ``fits(params, acts)`` holds at the problem's
    parameters (relu told from the identity where no z was negative); None when none does."""
    n = len(p.params)
    if len(names) ** n > MAX_COMBINATIONS:
        raise FcgradError(f"{file}: {n} layers; expected ACTIVATIONS = [...] (one name per layer) in the file")
    for acts in product(names, repeat=n):
        if fits(p.params, acts):
            return relu_or_identity(p, acts, fits)
    return None


def combinations_fitting(p, fits, file: str) -> tuple[str, ...] | None:
    """The activations, the library's first, then with the file's own, for which ``fits(params, acts)`` holds."""
    for names in _name_sets():
        found = _first_fitting(p, names, fits, file)
        if found is not None:
            return found
    return None


def relu_told_from_identity(p, acts: tuple[str, ...]) -> tuple[list[dict] | None, list[int]]:
    """Parameters at which each layer read as relu or identity has z of both signs, where at the problem's no z was
    negative (relu(z) = z there, so the values cannot say which the file computes), and those layers; (None, [])
    when none needs it.
    Each such layer's bias is moved by the median of its z, unit by unit: half its samples fall below 0."""
    params, a, moved = [dict(q) for q in p.params], p.x, []
    for i, f in enumerate(acts):
        z = params[i]["w"].T @ a + params[i]["b"]  # (out, in)·(in, N) + (out, 1)
        if f in ("relu", "identity") and np.all(z >= 0):
            params[i]["b"] = params[i]["b"] - np.median(z, axis=1, keepdims=True)
            z = params[i]["w"].T @ a + params[i]["b"]
            moved.append(i)
        with np.errstate(all="ignore"):
            a = ACTIVATIONS[f].forward(z)
    return (params if moved else None), moved


def relu_or_identity(p, acts: tuple[str, ...], fits) -> tuple[str, ...]:
    """``acts`` with each relu or identity layer whose z were all ≥ 0 at the problem (relu(z) = z there) told apart
    at parameters where they are not (``relu_told_from_identity``): ``fits(params, trial)`` says whether the file,
    run at ``params``, computes what the activations ``trial`` do. Unchanged when no choice, or more than one, fits."""
    shifted, tied = relu_told_from_identity(p, acts)
    if shifted is None:
        return acts
    found = []
    for choice in product(("relu", "identity"), repeat=len(tied)):
        trial = list(acts)
        for i, a in zip(tied, choice):
            trial[i] = a
        if fits(shifted, tuple(trial)):
            found.append(tuple(trial))
    return found[0] if len(found) == 1 else acts


def _forward_fits(run, p, y):
    """``fits(params, acts)``: whether the file's forward ``run`` at ``params`` (``y`` at the problem's) is what the
    library's forward of ``acts`` gives."""
    from fcgrad.manual.network import forward  # noqa: PLC0415

    ran = {id(p.params): y}  # the file's forward run once per set of parameters

    def fits(params, acts):
        if id(params) not in ran:
            ran[id(params)] = run(params)
        return _close(ran[id(params)], forward(params, p.x, acts)[0])

    return fits


def declared_activations(value, where: str, n: int) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple) and any(a not in ACTIVATIONS for a in value):
        own_names()  # a name the file declares may be one of its own functions
    try:
        return tuple(validate.check_activations(value, n))
    except FcgradError as exc:
        raise FcgradError(f"{where}: ACTIVATIONS: {exc}") from None


def declared_loss(value, where: str) -> str | None:
    if value is None:
        return None
    try:
        return validate.check_loss(value)
    except FcgradError as exc:
        raise FcgradError(f"{where}: LOSS: {exc}") from None


def refuse_overrides(model: Model, file: str, *, loss: str | None, activations) -> None:
    """An option asked for that the file does not compute is refused, never silently replaced by the file's."""
    if loss is not None and model.loss not in LIBRARY_LOSSES:
        raise FcgradError(
            f"--loss {loss}: {file} computes a loss of its own, {model.loss}, none of the library's; expected no "
            "--loss (the audit runs the file's own model)"
        )
    if loss is not None and validate.check_loss(loss) != model.loss:
        raise FcgradError(
            f"--loss {loss}: {file} computes the {model.loss} loss; expected --loss {model.loss} or no --loss "
            "(the audit runs the file's own model)"
        )
    if activations is not None:
        asked = tuple(validate.check_activations(activations, len(model.activations)))
        if asked != model.activations:
            raise FcgradError(
                f"--activation {','.join(asked)}: {file} computes {','.join(model.activations)}; expected that or "
                "no --activation (the audit runs the file's own model)"
            )
