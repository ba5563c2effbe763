"""``fcgrad check`` options for spec networks, optimizers and mini-batches, and the toolbox run's text report.

``add_toolbox_options(parser)`` adds ``--spec``, ``--optimizer`` with each hyperparameter,
``--batch-size``, ``--epochs`` and ``--l2`` (every default None: the run description fills them in);
``text`` renders a toolbox run (its JSON is the one ``RunReport``'s, ``fcgrad.engine.report``).
"""

import argparse
from typing import TYPE_CHECKING

from fcgrad.engine.description import HYPER_OPTIONS
from fcgrad.manual.optimizers import DEFAULTS, OPTIMIZERS
from fcgrad.manual.spec import format_spec

if TYPE_CHECKING:  # the toolbox imports JAX: not needed to build the command's options
    from fcgrad.engine.toolbox import ToolboxReport


def add_toolbox_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("spec networks, optimizers, mini-batches")
    g.add_argument("--spec", help="a network such as 64-32:relu:bn:drop0.1-10 (see docs/toolbox.md)")
    g.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="optax's rule, hand-written on the manual side (default: sgd; digits: adam)",
    )
    for name in HYPER_OPTIONS:
        users = [o for o in OPTIMIZERS if name in DEFAULTS[o]]
        default = DEFAULTS[users[0]][name]
        g.add_argument(
            f"--{name.replace('_', '-')}", type=float, help=f"for {', '.join(users)} (default {default:g}, optax's)"
        )
    g.add_argument("--batch-size", type=int, help="mini-batch size (default: all samples every step; digits 64)")
    g.add_argument(
        "--epochs", type=int, help="passes over the data, instead of --steps: an epoch is ceil(N / batch size) steps"
    )
    g.add_argument("--l2", type=float, help="L2 weight decay λ: (λ/2)·Σ‖w‖² added to the loss (default 0)")


def text(report: "ToolboxReport", gradient_rows, gradient_diagnoses: dict | None = None) -> str:
    from fcgrad.reports.check import table

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
        f"loss at the last step: manual {report.losses_manual[-1]:.10g}, JAX {report.losses_reference[-1]:.10g}; "
        f"time {report.seconds:.1f} s",
        "",
    ]
    if report.kink_steps:
        shown = ", ".join(map(str, report.kink_steps[:10])) + (", ..." if len(report.kink_steps) > 10 else "")
        lines.append(
            f"{len(report.kink_steps)} step(s) judged again with JAX on manual's side of every ReLU kink "
            f"(an entry within rounding of 0 may take either side): {shown}"
        )
    named = {**(gradient_diagnoses or {}), **report.diagnoses}
    lines += [f"layer {layer} {key}: {found[0]}" for (layer, key), found in named.items()]
    bad = [r for r in list(gradient_rows) + report.rows if not r.ok]
    if bad:
        lines.append(f"FAILED: {len(bad)} mismatch(es): " + ", ".join(f"layer {r.layer} {r.quantity}" for r in bad))
    else:
        lines.append(f"OK: manual and JAX+optax agree (every step of {report.steps})")
    return "\n".join(lines)

