"""``fcgrad check`` options for spec networks, optimizers and mini-batches, and the digits example.

``add_toolbox_options(parser)`` adds ``--spec``, ``--optimizer`` with each hyperparameter,
``--batch-size``, ``--epochs`` and ``--l2``; ``wants_toolbox(args)`` says whether a run needs
this path (any of them given, or ``--example digits``); ``run_toolbox(args)`` runs it and
returns the exit status (0 agree, 1 mismatch). It reads the shared ``--lr``, ``--seed``,
``--dtype``, ``--loss``, ``--batch`` (samples of a random problem), ``--json`` and ``--save``.
"""

import argparse

import numpy as np

from fcgrad.engine.toolbox import ToolboxReport, check_toolbox, compare_spec_gradients, diagnose_gradients, make_problem
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.optimizers import DEFAULTS, OPTIMIZERS, make_optimizer
from fcgrad.manual.spec import format_spec, parse_spec
from fcgrad.reports.check import table

HYPER_OPTIONS = ("momentum", "decay", "eps", "eps_root", "initial_scale", "b1", "b2", "weight_decay")
TOOLBOX_DEFAULT_LR = 1e-3  # optax examples' usual Adam rate; the blog's 0.1 is for plain SGD
RANDOM_SAMPLES = 64  # samples of a random --spec problem when --batch is not given


def add_toolbox_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("spec networks, optimizers, mini-batches")
    g.add_argument("--spec", help="a network such as 64-32:relu:bn:drop0.1-10 (see docs/toolbox.md)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="optax's rule, hand-written on the manual side")
    for name in HYPER_OPTIONS:
        users = [o for o in OPTIMIZERS if name in DEFAULTS[o]]
        default = DEFAULTS[users[0]][name]
        g.add_argument(
            f"--{name.replace('_', '-')}", type=float, help=f"for {', '.join(users)} (default {default:g}, optax's)"
        )
    g.add_argument("--batch-size", type=int, help="mini-batch size (default: all samples every step)")
    g.add_argument("--epochs", type=int, help="passes over the data (default 1; digits 5)")
    g.add_argument("--l2", type=float, default=0.0, help="L2 weight decay λ: (λ/2)·Σ‖w‖² added to the loss")


def wants_toolbox(args: argparse.Namespace) -> bool:
    chosen = [args.spec, args.optimizer, args.batch_size, args.epochs]
    return any(v is not None for v in chosen) or args.l2 != 0.0 or getattr(args, "example", None) == "digits"


def _optimizer(args: argparse.Namespace, default: str, default_lr: float = TOOLBOX_DEFAULT_LR):
    name = args.optimizer or default
    given = {k: getattr(args, k) for k in HYPER_OPTIONS if getattr(args, k) is not None}
    unused = sorted(set(given) - set(DEFAULTS[name]))
    if unused:
        raise FcgradError(f"--{unused[0].replace('_', '-')} does not apply to {name}; it takes {list(DEFAULTS[name])}")
    return make_optimizer(name, args.lr if args.lr is not None else default_lr, **given)


def _random_data(spec, loss: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((spec[0].n_in, n))  # (in, N)
    out = spec[-1].n_out
    if loss in ("cross-entropy", "hinge"):
        return x, np.eye(out)[:, rng.integers(0, out, n)]  # one-hot columns
    return x, rng.uniform(0, 1, (out, n))


def text(report: ToolboxReport, gradient_rows, gradient_diagnoses: dict | None = None) -> str:
    p = report.problem
    lines = [
        f"fcgrad check — spec {format_spec(p.spec)}, {p.loss}, {p.optimizer.describe()}, N={p.x.shape[1]}, "
        f"batches of {p.batch_size or p.x.shape[1]}, {p.epochs} epoch(s) ({report.steps} steps), "
        f"l2 {p.l2:g}, {p.dtype}",
        "",
        table("gradients at the initial parameters, manual vs JAX (rel = ‖Δ‖/‖JAX‖)", gradient_rows),
        "",
        table(
            f"every one of {report.steps} steps, manual vs JAX+optax, each step from manual's own parameters, "
            "running averages and optimizer state (rule local; tol scaled by max(1, max|JAX|))",
            report.rows,
        ),
        "",
        f"final loss: manual {report.losses_manual[-1]:.10g}, JAX {report.losses_reference[-1]:.10g}; "
        f"time {report.seconds:.1f} s",
        "",
    ]
    named = {**(gradient_diagnoses or {}), **report.diagnoses}
    lines += [f"layer {layer} {key}: {found[0]}" for (layer, key), found in named.items()]
    bad = [r for r in list(gradient_rows) + report.rows if not r.ok]
    if bad:
        lines.append(f"FAILED: {len(bad)} mismatch(es): " + ", ".join(f"layer {r.layer} {r.quantity}" for r in bad))
    else:
        lines.append(f"OK: manual and JAX+optax agree (every step of {report.steps})")
    return "\n".join(lines)


def _save(path: str | None, report: ToolboxReport) -> None:
    """The ``--save`` archive, written atomically under the exact name (checked before the run)."""
    if path is None:
        return
    from fcgrad.files.output import write_npz

    arrays = {"X": report.problem.x, "T": report.problem.t}
    arrays["loss_manual"], arrays["loss_reference"] = report.losses_manual, report.losses_reference
    for i, (m, r) in enumerate(zip(report.params_manual, report.params_reference)):
        for key in m:
            arrays[f"{key}{i}_manual"], arrays[f"{key}{i}_reference"] = m[key], r[key]
    write_npz(path, lambda f: np.savez(f, **arrays))


def diagnoses_json(report: ToolboxReport, gradient_diagnoses: dict | None = None) -> list[dict]:
    """Every catalogue entry matched: the gradients' layer stages ("step": null, at the initial parameters),
    then the failing parameter rows at the trajectory's first failing step."""
    steps = [(gradient_diagnoses or {}, None), (report.diagnoses, report.first_failing_step)]
    return [
        {"layer": layer, "quantity": key, "step": step, "name": d.name, "message": d.message}
        for named, step in steps
        for (layer, key), found in named.items()
        for d in found
    ]


def run_toolbox(args: argparse.Namespace) -> int:
    from fcgrad.cli.main import emit_results, output_paths, quiet_text

    if getattr(args, "plot", None) is not None:
        raise FcgradError("--plot draws the blog-shaped networks' runs: expected no --plot with a spec network")
    save, json_path = output_paths(args)  # before any work
    if getattr(args, "example", None) == "digits":
        from fcgrad.engine import digits

        if args.spec is not None or args.loss is not None:
            raise FcgradError("--example digits fixes its network and loss; got --spec or --loss as well")
        report = digits.run_digits(
            optimizer=_optimizer(args, "adam", digits.DIGITS_LR),
            epochs=digits.DIGITS_EPOCHS if args.epochs is None else args.epochs,
            batch_size=digits.DIGITS_BATCH if args.batch_size is None else args.batch_size,
            seed=args.seed,
            dtype=args.dtype,
        )
        _save(save, report.check)
        out = digits.text(report)
        emit_results(args, json_path, digits.as_json(report), quiet_text(out) if args.quiet else out)
        return 0 if report.ok else 1
    if args.spec is None:
        raise FcgradError("--optimizer, --batch-size, --epochs and --l2 need --spec (or --example digits)")
    spec = parse_spec(args.spec)
    loss = args.loss or "cross-entropy"
    x, t = _random_data(spec, loss, RANDOM_SAMPLES if args.batch is None else args.batch, args.seed)
    p = make_problem(
        spec, x, t, loss=loss, optimizer=_optimizer(args, "sgd"), batch_size=args.batch_size,
        epochs=1 if args.epochs is None else args.epochs, seed=args.seed, l2=args.l2, dtype=args.dtype,
    )  # fmt: skip
    gradient_rows = compare_spec_gradients(p)
    named = diagnose_gradients(p, gradient_rows)
    report = check_toolbox(p)
    _save(save, report)
    out = {
        "ok": report.ok and all(r.ok for r in gradient_rows),
        "diagnoses": diagnoses_json(report, named),
        "problem": p.summary(),
        "gradients": [r.as_dict() for r in gradient_rows],
        "trajectory": {"steps": report.steps, "rows": [r.as_dict() for r in report.rows]},
        "final_loss": {"manual": float(report.losses_manual[-1]), "reference": float(report.losses_reference[-1])},
        "seconds": report.seconds,
    }
    shown = text(report, gradient_rows, named)
    emit_results(args, json_path, out, quiet_text(shown) if args.quiet else shown)
    return 0 if report.ok and all(r.ok for r in gradient_rows) else 1
