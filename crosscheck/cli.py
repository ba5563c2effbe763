"""The ``fcgrad`` command: ``check`` (manual vs JAX vs finite differences), ``audit``, ``bench``.

Exit status: 0 when everything agrees, 1 when a comparison fails, 2 for bad input
(the message goes to stderr, without a traceback).
"""

import argparse
import json
import sys

from crosscheck.problems import EXAMPLES, Problem, example, random_problem
from manual.activations import ACTIVATIONS
from manual.errors import FcgradError
from manual.losses import LOSSES


def _int_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 2,4,1, got {text!r}") from None


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def add_problem_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose a problem; shared by ``check`` and ``audit``."""
    g = parser.add_argument_group("problem")
    g.add_argument("--example", choices=EXAMPLES, help="a built-in problem (default: and, the blog's)")
    g.add_argument("--sizes", type=_int_list, help="layer widths for a random problem, e.g. 3,7,5,2")
    g.add_argument(
        "--activation",
        help=f"one of {','.join(ACTIVATIONS)} for every layer, or a comma list with one per layer",
    )
    g.add_argument("--loss", choices=sorted(LOSSES), help="default: square")
    g.add_argument("--batch", type=int, help="samples in a random problem (default 8)")
    g.add_argument("--seed", type=_seed, default=0, help="random seed for data and initial parameters (default 0)")
    g.add_argument("--lr", type=float, help="learning rate (default: the example's, else 0.1)")
    g.add_argument("--steps", type=int, help="training steps (default: 10000 for examples, 1000 for --sizes)")
    g.add_argument("--dtype", choices=["float64", "float32"], default="float64")


def problem_from_args(args: argparse.Namespace) -> Problem:
    acts = args.activation.split(",") if args.activation else None
    if acts is not None and len(acts) == 1:
        acts = acts[0]  # one name: every layer
    if args.sizes is not None:
        if args.example is not None:
            raise FcgradError(f"--example {args.example} and --sizes: expected one of the two, got both")
        p = random_problem(
            args.sizes,
            activations=acts,
            loss=args.loss or "square",
            batch=8 if args.batch is None else args.batch,
            seed=args.seed,
        )
    else:
        for name in ("activation", "loss", "batch"):
            if getattr(args, name) is not None:
                raise FcgradError(
                    f"--{name} needs --sizes: the built-in examples fix their network; got --{name} without --sizes"
                )
        p = example(args.example or "and", seed=args.seed)
    return p.with_options(lr=args.lr, steps=args.steps, dtype=args.dtype)


def cmd_check(args: argparse.Namespace) -> int:
    from crosscheck.report import as_json, text
    from crosscheck.run import check, save_npz

    p = problem_from_args(args)
    report = check(p, keep_history=args.save is not None)
    if args.save:
        save_npz(args.save, p, report.histories)
    print(json.dumps(as_json(report), indent=2) if args.json else text(report))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcgrad", description="Hand-derived matrix backprop, verified against JAX autodiff."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{check,audit,bench}")
    c = sub.add_parser("check", help="compare manual backprop with JAX and finite differences")
    add_problem_options(c)
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    c.add_argument("--save", metavar="PATH.npz", help="write initial params, data and both trajectories")
    c.set_defaults(run=cmd_check)
    for extra in ("crosscheck.audit_cli", "benchmarks.cli"):
        try:
            module = __import__(extra, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != extra:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except FcgradError as exc:
        print(f"fcgrad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. --save into a missing folder
        print(f"fcgrad {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
