"""One description of a run: what both sides compute and how they are judged, built once and checked whole.

``describe(options)`` takes the options a user gave (by their command-line names, only those given)
and returns a ``RunDescription``: the network (the blog's 2-4-1 sigmoid net is the spec
``2-4:sigmoid-1:sigmoid``; ``--sizes`` and ``--activation`` are shorthand that build a spec), the loss,
the data and where it comes from, the initial parameters, the optimizer and its settings (SGD by
default), L2, the batches, the number of steps, the dtype, the tolerances and the devices. A
combination that cannot be honoured is refused here, before any array is built, in one line that names
the options that clash. ``build(description)`` then draws or loads the arrays; ``summary()`` is what the
report's header, the JSON's ``meta`` and the npz's ``meta`` state, so a reader sees exactly what ran.

Every option is read here and nowhere else, so none can be dropped on the way to the engine.
"""

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from fcgrad.engine.problems import BLOG_STEPS, RANDOM_STEPS, default_activations, draw_data
from fcgrad.manual import validate
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.optimizers import DEFAULTS, OPTIMIZERS, Optimizer, make_optimizer
from fcgrad.manual.spec import LayerSpec, Spec, format_spec, parse_spec

EXAMPLES = ("and", "xor", "mazur", "digits")
HYPER_OPTIONS = ("momentum", "decay", "eps", "eps_root", "initial_scale", "b1", "b2", "weight_decay")

SIZES_SAMPLES = 8  # samples of a random problem drawn for --sizes
SPEC_SAMPLES = 64  # samples of a random problem drawn for --spec (batch norm wants a few columns)
SGD_LR = 0.1  # the blog's rate, for plain SGD and momentum
ADAPTIVE_LR = 1e-3  # optax examples' usual rate for RMSProp, Adam and AdamW
BLOG_HIDDEN = 4  # the blog's hidden width, for a data file that gives no widths

# the built-in examples: network, loss, samples, optimizer and learning rate without --optimizer and --lr, steps
# (digits: epochs of mini-batches)
EXAMPLE_NETWORKS = {
    "and": ("2-4:sigmoid-1:sigmoid", "square", 4, "sgd", 0.1, BLOG_STEPS),
    "xor": ("2-4:sigmoid-1:sigmoid", "square", 4, "sgd", 0.1, BLOG_STEPS),
    "mazur": ("2-2:sigmoid-2:sigmoid", "square", 1, "sgd", 0.5, BLOG_STEPS),
    # 1,797 digits less the 359 held out
    "digits": ("64-32:relu:bn:drop0.1-10:identity", "cross-entropy", 1438, "adam", 0.01, None),
}
DIGITS_BATCH, DIGITS_EPOCHS = 64, 5

# What each check option means, for help texts and for the option-matrix test.
CHECK_OPTIONS = (
    "example", "sizes", "activation", "spec", "loss", "batch", "data", "targets", "seed", "lr", "steps", "epochs",
    "batch_size", "optimizer", *HYPER_OPTIONS, "l2", "dtype", "rtol", "atol", "devices",
)  # fmt: skip


class Data(NamedTuple):
    """A data set given by the user: ``x`` (in, N), ``t`` (out, N), and the initial parameters or None."""

    name: str  # the file, as the report names it
    x: np.ndarray
    t: np.ndarray
    params: list | None = None


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class RunDescription:
    """Everything a check runs, and nothing else decides it."""

    source: str  # "and", "xor", "mazur", "digits", "random" or "file"
    spec: Spec  # the network, layer by layer
    loss: str
    samples: int  # N, the columns of X
    optimizer: Optimizer  # its name, learning rate and every hyperparameter
    steps: int  # training steps compared
    batch_size: int | None = None  # None: every step sees all N columns
    epochs: int | None = None  # given when the steps were counted in epochs
    l2: float = 0.0
    seed: int | None = 0  # draws data, parameters, batches and masks; None: nothing is drawn
    dtype: str = "float64"
    rtol: float | None = None  # None: the tolerances' defaults for the dtype
    atol: float | None = None
    devices: int | None = None  # None: one device
    data_file: str | None = None
    targets: tuple[str, ...] | None = None
    init: str = "N(0, 1/in)"  # how the initial parameters come
    trainable: tuple[tuple[bool, bool], ...] | None = None  # per layer (train w, train b); None: everything
    finite_differences: bool = True
    _arrays: tuple | None = field(default=None, repr=False, compare=False)  # (x, t, params) read from a file

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.spec[0].n_in, *(layer.n_out for layer in self.spec))

    @property
    def activations(self) -> tuple[str, ...]:
        return tuple(layer.activation for layer in self.spec)

    @property
    def plain(self) -> bool:
        """Layers of the blog's kind only: z = wᵀx + b and an activation, no normalisation, no dropout."""
        return all(not layer.norm and not layer.dropout for layer in self.spec)

    @property
    def kind(self) -> str:
        """Which form of the engine runs it: ``network`` (full-batch SGD on plain layers, with every
        quantity of the derivation compared and finite differences), ``toolbox`` (normalisation, dropout,
        optimizers, mini-batches, L2) or ``sharded`` (either over several devices, five sides)."""
        if self.devices is not None:
            return "sharded"
        return "network" if self.full_batch_sgd else "toolbox"

    @property
    def full_batch_sgd(self) -> bool:
        """The blog's training: plain layers, SGD on every column at every step, no L2."""
        return self.plain and self.optimizer.name == "sgd" and self.batch_size is None and self.l2 == 0

    @property
    def step_form(self) -> str:
        """How the steps of a sharded run are judged: ``free`` (float64 full-batch SGD on plain layers without a
        kink: every side trains freely, the data-parallel mistakes are named) or ``local`` (every side's step
        from the one-device manual state: float32, a kink, an optimizer, mini-batches, L2, dropout, layer norm)."""
        from fcgrad.engine.tolerances import default_rule

        free = self.full_batch_sgd and default_rule(self.dtype, self.activations, self.loss) == "global"
        return "free" if free else "local"

    @property
    def n_params(self) -> int:
        n = 0
        for layer in self.spec:
            n += layer.n_in * layer.n_out  # w
            n += (layer.n_out if layer.has_bias else 0) + (2 * layer.n_out if layer.norm else 0)  # b; γ and β
        return n

    def summary(self) -> dict:
        """The whole description, as the report's header, the JSON's meta and the npz's meta state it."""
        return {
            "source": self.source,
            "data_file": self.data_file,
            "targets": list(self.targets) if self.targets else None,
            "spec": format_spec(self.spec),
            "sizes": list(self.sizes),
            "activations": list(self.activations),
            "loss": self.loss,
            "samples": self.samples,
            "init": self.init,
            "trainable": "every parameter" if self.trainable is None else [{"w": w, "b": b} for w, b in self.trainable],
            "optimizer": self.optimizer.name,
            "lr": self.optimizer.lr,
            "hyperparameters": dict(self.optimizer.hyper),
            "l2": self.l2,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "steps": self.steps,
            "seed": self.seed,
            "dtype": self.dtype,
            "rtol": self.rtol,
            "atol": self.atol,
            "devices": self.devices,
            "engine": self.kind,
        }

    def header(self) -> str:
        """One line: the whole run, as the text report's first line states it."""
        where = self.source if self.data_file is None else f"file {self.data_file}"
        batches = "full batch" if self.batch_size is None else f"batches of {self.batch_size}"
        epochs = "" if self.epochs is None else f" ({self.epochs} epochs)"
        parts = [
            f"{where}: sizes {'-'.join(map(str, self.sizes))}",
            f"activations {','.join(self.activations)} (spec {format_spec(self.spec)})",
            f"loss {self.loss}",
            f"N={self.samples}",
            self.optimizer.describe(),
            f"{batches}, steps {self.steps}{epochs}",
            f"l2 {self.l2:g}",
            self.dtype,
            f"seed {self.seed}" if self.seed is not None else "nothing drawn",
        ]
        if self.devices is not None:
            parts.append(f"{self.devices} devices")
        if self.trainable is not None:
            parts.append("biases fixed" if all(not b for _, b in self.trainable) else "some parameters fixed")
        return ", ".join(parts)


def _refuse(message: str):
    raise FcgradError(message)


def _sizes_spec(sizes, activations, loss: str) -> Spec:
    sizes = validate.check_sizes(sizes)
    n = len(sizes) - 1
    if activations is None:
        acts = default_activations(n, loss)
    else:
        names = activations.split(",") if isinstance(activations, str) else list(activations)
        acts = tuple(validate.check_activations(names[0] if len(names) == 1 else names, n))
    return tuple(LayerSpec(a, b, act) for a, b, act in zip(sizes[:-1], sizes[1:], acts))


def _steps(given: dict, default: int | None, samples: int, batch_size: int | None) -> tuple[int, int | None]:
    """(steps, epochs): ``--steps`` as given, or ``--epochs`` passes over the N samples, or the default."""
    if "steps" in given and "epochs" in given:
        _refuse("--steps and --epochs: expected one of the two (an epoch is ceil(N / batch size) steps), got both")
    if "epochs" in given:
        epochs = given["epochs"]
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            _refuse(f"--epochs: expected a positive integer, got {epochs!r}")
        per_epoch = 1 if batch_size is None else math.ceil(samples / batch_size)
        return int(epochs) * per_epoch, int(epochs)
    steps = given.get("steps", default)
    return validate.check_steps(steps), None


def _optimizer(given: dict, default_lr: float | None, default: str = "sgd") -> Optimizer:
    name = given.get("optimizer", default)
    if name not in OPTIMIZERS:
        _refuse(f"--optimizer: expected one of {list(OPTIMIZERS)}, got {name!r}")
    hyper = {k: given[k] for k in HYPER_OPTIONS if k in given}
    unused = [k for k in hyper if k not in DEFAULTS[name]]
    if unused:
        takes = ", ".join(flag(k) for k in DEFAULTS[name]) or "no hyperparameter"
        _refuse(f"{flag(unused[0])} does not apply to --optimizer {name}: it takes {takes}")
    if "lr" in given:
        lr = given["lr"]
    elif default_lr is not None:
        lr = default_lr
    else:
        lr = SGD_LR if name in ("sgd", "momentum", "nesterov") else ADAPTIVE_LR
    return make_optimizer(name, validate.check_lr(lr), **hyper)


def _check_together(given: dict) -> None:
    """Pairs that can never be honoured together, refused before anything else."""
    example = given.get("example")
    networks = [o for o in ("example", "sizes", "spec") if o in given]
    if len(networks) > 1:
        a, b = networks[:2]
        _refuse(f"{flag(a)} and {flag(b)}: expected one network, got both")
    if "data" in given and example is not None:
        _refuse(f"--example {example} and --data: expected one of the two, got both")
    if "activation" in given and "sizes" not in given and ("data" not in given or "spec" in given):
        where = "--spec names each layer's activation" if "spec" in given else "the examples fix their network"
        _refuse(f"--activation needs --sizes or --data ({where}); got --activation without them")
    if example is not None:
        for o in ("loss", "batch"):
            if o in given:
                _refuse(f"--example {example} fixes its {'loss' if o == 'loss' else 'samples'}: expected no {flag(o)}")
    elif not networks and "data" not in given:
        for o in ("loss", "batch", "activation"):
            if o in given:
                _refuse(
                    f"{flag(o)} needs --sizes, --spec or --data: the default run (--example and, the blog's) fixes "
                    f"its network; got {flag(o)} without them"
                )
    if "batch" in given and ("data" in given):
        _refuse("--batch draws the samples of a random problem: expected no --batch with --data (its N is the file's)")
    if "targets" in given and "data" not in given:
        _refuse("--targets names the columns of a CSV: expected it with --data FILE.csv, got no --data")
    if "devices" in given and example == "digits":
        _refuse(
            "--devices and --example digits: batch norm's statistics over a sharded batch are another computation "
            "than the one-device one; expected no --devices with digits"
        )


def describe(given: dict | None = None, **options) -> RunDescription:
    """The run that the options ask for, checked whole: ``describe({"spec": "4-8-3", "optimizer": "adam"})``
    or ``describe(spec="4-8-3", optimizer="adam")``, with the command line's names (``batch_size`` for
    ``--batch-size``; ``data`` a ``Data(name, x, t, params)``). Only the options given count."""
    given = {k: v for k, v in {**(given or {}), **options}.items() if v is not None}
    unknown = sorted(set(given) - set(CHECK_OPTIONS))
    if unknown:
        raise ValueError(f"describe: unknown option(s) {unknown}")
    _check_together(given)
    dtype = validate.check_dtype(given.get("dtype", "float64")).name
    seed = validate.check_seed(given.get("seed", 0))
    batch_size = given.get("batch_size")
    l2 = given.get("l2", 0.0)
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not (np.isfinite(l2) and l2 >= 0):
        _refuse(f"--l2: expected a non-negative finite number, got {l2!r}")
    common = dict(
        dtype=dtype, l2=float(l2), rtol=given.get("rtol"), atol=given.get("atol"), devices=given.get("devices")
    )
    example = given.get("example")
    if example is None and not any(o in given for o in ("sizes", "spec", "data")):
        example = "and"  # the blog's own run
    if example is not None:
        d = _example(example, given, seed, batch_size, common)
    elif "data" in given:
        d = _file(given, seed, batch_size, common)
    else:
        d = _random(given, seed, batch_size, common)
    _check_description(d, given)
    return d


def _batch_size(batch_size, samples: int) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        _refuse(f"--batch-size: expected a positive integer, got {batch_size!r}")
    if batch_size > samples:
        _refuse(f"--batch-size: expected at most the {samples} samples, got {batch_size}")
    return None if batch_size == samples else int(batch_size)


def _example(name: str, given: dict, seed: int, batch_size, common: dict) -> RunDescription:
    if name not in EXAMPLES:
        _refuse(f"--example: expected one of {list(EXAMPLES)}, got {name!r}")
    spec_text, loss, samples, optimizer_name, lr, steps = EXAMPLE_NETWORKS[name]
    if name == "digits":
        batch_size = DIGITS_BATCH if batch_size is None else batch_size
        if "steps" not in given and "epochs" not in given:
            given = {**given, "epochs": DIGITS_EPOCHS}
    batch_size = _batch_size(batch_size, samples)
    n_steps, epochs = _steps(given, steps, samples, batch_size)
    init = {"and": "the blog's randn (std 1)", "xor": "the blog's randn (std 1)", "mazur": "the post's w1..w8"}
    trainable = ((True, False), (True, False)) if name == "mazur" else None
    optimizer = _optimizer(given, lr, optimizer_name)
    return RunDescription(
        name, parse_spec(spec_text), loss, samples, optimizer, n_steps, batch_size, epochs,
        seed=None if name == "mazur" else seed, init=init.get(name, "N(0, 1/in)"), trainable=trainable, **common,
    )  # fmt: skip


def _random(given: dict, seed: int, batch_size, common: dict) -> RunDescription:
    if "spec" in given:
        spec = parse_spec(given["spec"])
        loss = validate.check_loss(given.get("loss", "cross-entropy"))
        samples = given.get("batch", SPEC_SAMPLES)
    else:
        loss = validate.check_loss(given.get("loss", "square"))
        spec = _sizes_spec(given.get("sizes", (2, 4, 1)), given.get("activation"), loss)
        samples = given.get("batch", SIZES_SAMPLES)
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        _refuse(f"--batch: expected a positive number of samples, got {samples!r}")
    batch_size = _batch_size(batch_size, int(samples))
    steps, epochs = _steps(given, RANDOM_STEPS, int(samples), batch_size)
    return RunDescription(
        "random", spec, loss, int(samples), _optimizer(given, None), steps, batch_size, epochs, seed=seed, **common
    )


def _file(given: dict, seed: int, batch_size, common: dict) -> RunDescription:
    data = given["data"]
    if not isinstance(data, Data):
        raise TypeError("describe: data must be a Data(name, x, t, params) (the command line reads the file)")
    path, x, t, params = data
    targets = tuple(given["targets"].split(",")) if isinstance(given.get("targets"), str) else given.get("targets")
    samples = x.shape[1]
    if "spec" in given:
        spec = parse_spec(given["spec"])
        loss = validate.check_loss(given.get("loss", "cross-entropy"))
        if params is not None and not all(not layer.norm for layer in spec):
            _refuse(f"--data {path} holds w0, b0, ...: expected a --spec without bn or ln to start from them")
    else:
        loss = validate.check_loss(given.get("loss", "square"))
        if params is not None:
            widths = (params[0]["w"].shape[0], *(p["w"].shape[1] for p in params))
            if "sizes" in given and tuple(given["sizes"]) != widths:
                have, ask = "-".join(map(str, widths)), "-".join(map(str, given["sizes"]))
                _refuse(f"--data {path} holds parameters {have}; --sizes asks {ask}")
            sizes = widths
        else:
            sizes = given.get("sizes", (x.shape[0], BLOG_HIDDEN, t.shape[0]))
        spec = _sizes_spec(sizes, given.get("activation"), loss)
    if spec[0].n_in != x.shape[0] or spec[-1].n_out != t.shape[0]:
        _refuse(
            f"--data {path}: X has {x.shape[0]} rows and T {t.shape[0]}; the network takes {spec[0].n_in} inputs "
            f"and gives {spec[-1].n_out} outputs"
        )
    if params is not None:
        params = [dict(p) for p in params]
        for layer, p in zip(spec, params):
            if not layer.has_bias:
                p.pop("b")
    batch_size = _batch_size(batch_size, samples)
    steps, epochs = _steps(given, RANDOM_STEPS, samples, batch_size)
    init = "the file's w, b" if params is not None else "N(0, 1/in)"
    return RunDescription(
        "file", spec, loss, samples, _optimizer(given, None), steps, batch_size, epochs, seed=seed,
        data_file=str(path), targets=targets, init=init, _arrays=(x, t, params), **common,
    )  # fmt: skip


def _draws_anything(d: RunDescription) -> bool:
    drawn_data = d.source in ("random",)
    drawn_init = d.init == "N(0, 1/in)" or d.init.startswith("the blog's")
    return drawn_data or drawn_init or d.batch_size is not None or any(layer.dropout for layer in d.spec)


def _check_description(d: RunDescription, given: dict) -> None:
    """Refusals that depend on the run as a whole."""
    if d.trainable is not None and (not d.full_batch_sgd or (d.kind == "sharded" and d.step_form == "local")):
        blocking = ("optimizer", "batch_size", "epochs", "l2", *HYPER_OPTIONS, "devices", "dtype")
        o = next((o for o in blocking if o in given), "optimizer")
        _refuse(
            f"--example {d.source} trains its weights only (its biases stay the post's): expected no {flag(o)} here, "
            "since the step-by-step (local) check trains every parameter"
        )
    if "seed" in given and not _draws_anything(d):
        _refuse(
            f"--seed {given['seed']}: nothing in this run is drawn ({d.source}'s weights and data are fixed "
            "and every step sees the whole batch); expected no --seed"
        )
    if d.kind == "sharded" and any(layer.norm == "batch" for layer in d.spec):
        _refuse(
            "--devices and a --spec with bn: batch norm's statistics over a sharded batch are another computation "
            "than the one-device one; expected no bn with --devices"
        )
    if d.kind == "sharded" and d.batch_size is not None and d.batch_size < d.devices:
        _refuse(f"--devices {d.devices} and --batch-size {d.batch_size}: expected at least one column per device")
    if d.kind == "sharded" and d.samples % (d.batch_size or d.samples) and (d.samples % d.batch_size) < d.devices:
        _refuse(
            f"--devices {d.devices} and --batch-size {d.batch_size}: the last batch of an epoch has "
            f"{d.samples % d.batch_size} samples; expected at least one column per device"
        )
    if d.devices is not None and (isinstance(d.devices, bool) or not isinstance(d.devices, int) or d.devices < 1):
        _refuse(f"--devices: expected a positive number of devices, got {d.devices!r}")
    if d.kind == "sharded" and d.samples < d.devices:
        n = d.samples
        if d.source == "random":
            n_from = f"--batch {n}" if "batch" in given else f"the default --batch {n}"
        else:
            n_from = f"--data {d.data_file} (N = {n})" if d.data_file else f"--example {d.source} (N = {n})"
        _refuse(f"--devices {d.devices} and {n_from}: expected at most {n} devices, one sample each")


def build(d: RunDescription) -> tuple[np.ndarray, np.ndarray, list]:
    """``(x (in, N), t (out, N), initial params)`` of the description, in its dtype."""
    from fcgrad.manual.network import init_params
    from fcgrad.manual.spec import init_spec_params

    dt = np.dtype(d.dtype)
    if d.source in ("and", "xor"):
        x = np.array([[0, 0, 1, 1], [0, 1, 0, 1]], dtype=np.float64)  # 4 samples by column
        t = np.array([[0, 0, 0, 1]] if d.source == "and" else [[0, 1, 1, 0]], dtype=np.float64)
        params = init_params(d.sizes, seed=d.seed, std=1.0)  # the blog draws w from randn and starts b at 0
    elif d.source == "mazur":
        from fcgrad.engine.problems import mazur_example

        m = mazur_example()
        x, t, params = m.x, m.t, m.params
    elif d.source == "digits":
        from fcgrad.engine.digits import load_digits_columns

        x, t, _, _ = load_digits_columns(d.seed)
        params = init_spec_params(d.spec, seed=d.seed)
    elif d.source == "file":
        x, t, params = d._arrays
        if params is None:
            params = _initial(d)
    else:
        x, t = draw_data(d.sizes[0], d.sizes[-1], d.loss, d.samples, np.random.default_rng(d.seed))
        params = _initial(d)
    if x.shape[1] != d.samples:  # the description states N before any array exists: it must be the data's
        raise AssertionError(f"{d.source}: the description says N={d.samples}, the data has {x.shape[1]} columns")
    cast = [{k: np.asarray(v, dt) for k, v in layer.items()} for layer in params]
    return np.asarray(x, dt), np.asarray(t, dt), cast


def _initial(d: RunDescription) -> list:
    from fcgrad.manual.network import init_params
    from fcgrad.manual.spec import init_spec_params

    if d.plain and all(layer.has_bias for layer in d.spec):
        # a random problem draws its data from the seed and its parameters from the next one; a file's, from it
        return init_params(d.sizes, seed=d.seed + 1 if d.source == "random" else d.seed)
    return init_spec_params(d.spec, seed=d.seed)


def describe_problem(p) -> RunDescription:
    """The description of a ``Problem`` built in Python (``fcgrad.example``, ``random_problem``, a file's):
    full-batch SGD on its plain layers, so that every report states its run the same way."""
    spec = tuple(LayerSpec(a, b, act) for a, b, act in zip(p.sizes[:-1], p.sizes[1:], p.activations))
    source = p.name if p.name in EXAMPLES else "random" if p.seed is not None else "given"
    trainable = None if p.trainable is None else tuple((bool(m["w"]), bool(m["b"])) for m in p.trainable)
    return RunDescription(
        source, spec, p.loss, p.batch, make_optimizer("sgd", p.lr), p.steps, seed=p.seed, dtype=p.dtype,
        trainable=trainable, init="given",
    )  # fmt: skip
