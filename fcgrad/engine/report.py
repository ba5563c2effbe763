"""One report for every run ``fcgrad check`` makes, whatever form of the engine computed it.

``RunReport`` holds what a reader of any run needs, in one shape: the sides that ran (``manual``, ``jax``
and, over devices, ``manual-sharded``, ``jax-jit-sharded``, ``jax-shard_map-sharded``); the gradients at
the initial parameters, the finite differences and the trajectories, each a list of ``Comparison`` (a side
held against its baseline under a rule, row by row); the catalogue's ``Finding``s; each side's history of
every step; the loss each side's last step computed; the final loss (manual's, after the last step,
where the form computes it); the ``Extras`` of one form or another (held-out accuracy, devices and
shard sizes, the network's output); the timings; ok. A thing a form does not compute is empty or None.

``as_json()`` is the object of ``--json`` less its ``meta`` (``JSON_KEYS``, ``docs/run.schema.json``);
``arrays()`` the ``--save`` archive less its ``meta`` (``docs/run.npz.json``).
"""

from dataclasses import dataclass, field

import numpy as np

from fcgrad.engine.compare import Row

# the --json object's keys, every one present in every run (a thing that did not run: null or [])
JSON_KEYS = ("meta", "form", "ok", "sides", "gradients", "finite_differences", "trajectories", "findings",
             "last_step_loss", "divergence", "extras", "timings")  # fmt: skip
FORMS = ("network", "toolbox", "digits", "sharded free", "sharded local")


@dataclass(frozen=True)
class Comparison:
    """One side held against its baseline: at one point (rule ``rel``) or at every step (``global``, ``local``)."""

    sides: tuple[str, str]  # (the side judged, its baseline)
    rule: str
    rows: list[Row]
    steps: int | None = None  # the steps compared; None for a comparison at one point
    kink_steps: tuple[int, ...] = ()  # steps judged again on manual's side of every ReLU kink

    @property
    def pair(self) -> str:
        return f"{self.sides[0]} vs {self.sides[1]}"

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def first_bad_step(self) -> int | None:
        return min((r.first_bad_step for r in self.rows if r.first_bad_step is not None), default=None)

    def as_dict(self) -> dict:
        return {
            "sides": list(self.sides),
            "rule": self.rule,
            "steps": self.steps,
            "ok": self.ok,
            "first_bad_step": self.first_bad_step,
            "kink_steps": list(self.kink_steps),
            "rows": [_row_dict(r) for r in self.rows],
        }


@dataclass(frozen=True)
class Finding:
    """A mistake named from the numbers: the catalogue's entry, where it was seen, and its one-line message."""

    name: str  # "missing_1_over_n", "momentum_lr_applied_twice", "mean of per-shard means", ...
    message: str
    side: str | None = None  # the side it was found in
    layer: int | None = None
    quantity: str | None = None
    step: int | None = None  # the step it was seen at; None: at the initial parameters, or over the whole run

    def as_dict(self) -> dict:
        return {"name": self.name, "message": self.message, "side": self.side, "layer": self.layer,
                "quantity": self.quantity, "step": self.step}  # fmt: skip


@dataclass(frozen=True)
class Extras:
    """What one form measures beside the comparisons; None where it does not."""

    devices: tuple[str, ...] | None = None  # the devices of a run over several
    shard_sizes: tuple[int, ...] | None = None  # the columns of X each device holds
    held_out: int | None = None  # digits: the images kept out of training
    accuracy: dict | None = None  # digits: each side's accuracy on them
    predictions_differ: int | None = None  # digits: held-out images the sides label differently
    all_gradients_zero: bool | None = None  # every compared gradient exactly zero on both sides
    output: dict | None = None  # network: the loss and the output at manual's parameters after the last step

    def as_dict(self) -> dict:
        return {
            "devices": None if self.devices is None else list(self.devices),
            "shard_sizes": None if self.shard_sizes is None else [int(n) for n in self.shard_sizes],
            "held_out": self.held_out,
            "accuracy": self.accuracy,
            "predictions_differ": self.predictions_differ,
            "all_gradients_zero": self.all_gradients_zero,
            "output": self.output,
        }


@dataclass
class RunReport:
    description: object  # the RunDescription that was run
    form: str  # one of FORMS
    sides: tuple[str, ...]
    gradients: list[Comparison]  # at the initial parameters
    finite_differences: list[Comparison]
    trajectories: list[Comparison]  # every step
    findings: list[Finding]
    # side -> the loss its last step computed, at the parameters that step starts from (entry K-1 of its loss
    # history), None if not finite. Not "the final loss": that is the loss after the last step (Extras.output)
    last_step_loss: dict
    extras: Extras
    seconds: float  # the whole check, both sides
    divergence: tuple[str, int] | None = None  # (side or "both", step) where a loss stopped being finite
    initial: dict = field(default_factory=dict, repr=False)  # X, T, {key}{i}_init, running_{key}{i}_init
    histories: dict = field(default_factory=dict, repr=False)  # "{side}/loss", "{side}/w0", ... when kept
    timings: object = field(default=None, repr=False)  # a Timings, where the form keeps its phases
    detail: object = field(default=None, repr=False)  # the form's own report, which its text is drawn from

    @property
    def comparisons(self) -> list[Comparison]:
        return self.gradients + self.finite_differences + self.trajectories

    @property
    def ok(self) -> bool:
        agree = all(c.ok for c in self.comparisons) and not self.findings and self.divergence is None
        return agree and not self.extras.predictions_differ

    def failures(self) -> list[tuple[str, Row]]:
        """(pair, row) of every row that is not ok."""
        return [(c.pair, r) for c in self.comparisons for r in c.rows if not r.ok]

    def as_json(self) -> dict:
        """The ``--json`` object less ``meta``: every key of JSON_KEYS in every form."""
        phases = {} if self.timings is None else self.timings.as_dict()
        divergence = None if self.divergence is None else {"side": self.divergence[0], "step": self.divergence[1]}
        return {
            "form": self.form,
            "ok": self.ok,
            "sides": list(self.sides),
            "gradients": [c.as_dict() for c in self.gradients],
            "finite_differences": [c.as_dict() for c in self.finite_differences],
            "trajectories": [c.as_dict() for c in self.trajectories],
            "findings": [f.as_dict() for f in self.findings],
            "last_step_loss": {side: finite_or_none(self.last_step_loss.get(side)) for side in self.sides},
            "divergence": divergence,
            "extras": self.extras.as_dict(),
            "timings": {"seconds": self.seconds, "phases": {k: float(v) for k, v in phases.items()}},
        }

    @property
    def final_loss(self) -> float | None:
        """The final loss: manual's loss at its parameters after the last step, where the form computes it
        (the network form: ``extras.output.loss``); None otherwise. The one number every report calls so."""
        return None if self.extras.output is None else self.extras.output["loss"]

    def arrays(self) -> dict:
        """The ``--save`` archive less ``meta``: the data, the initial state, and every side's kept steps."""
        return {**self.initial, **self.histories}


def finite_or_none(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _row_dict(r: Row) -> dict:
    return {k: (int(v) if isinstance(v, np.integer) else v) for k, v in r.as_dict().items()}
