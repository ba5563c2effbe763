"""What a check costs against the two steps it compares, per trajectory rule.

``fcgrad check --sizes 784,256,256,10 --batch 256 --steps 200 --activation A`` (float64, square loss,
seed 0) trains manual and judges every step against JAX. Its trajectory — manual's run, JAX's run and the
comparisons, as the engine's own ``Timings`` phases give them, JAX's compiling included, as a fresh
command pays it — is set against what the two sides cost alone, measured in the same run:

    ratio = trajectory seconds / ((median manual step + median jit step) × steps)

``manual`` and ``jit-step`` are the suite's variants (``benchmarks.variants``) on the check's own problem.
A ReLU network is judged by the ``local`` rule (one JAX step from each of manual's parameters, with the
kink bound), a tanh network by the ``global`` rule (JAX trains freely). Goal: a ratio of at most
``GOAL`` in both. Finite differences are a phase of the check but not of its trajectory: reported apart.

Each round clears JAX's compilation caches, runs the whole check (``fcgrad.engine.run.check``), then
times the two steps (``suite.measure_in_phases``); the figure is the median of the rounds' ratios.

    python -m fcgrad.benchmarks.check_cost --json benchmarks/results/check_cost_cpu.json
    python -m fcgrad.benchmarks.check_cost --quick        # 16-32-32-4, N=32, 50 steps, one round
"""

import datetime
import sys
from dataclasses import replace

import jax
import numpy as np

from fcgrad.benchmarks import machine, variants
from fcgrad.benchmarks.suite import measure_in_phases
from fcgrad.benchmarks.timing import FULL, QUICK
from fcgrad.benchmarks.workloads import Workload
from fcgrad.cli.args import OneLineParser
from fcgrad.engine.problems import Problem, random_problem
from fcgrad.engine.run import check
from fcgrad.manual.errors import FcgradError
from fcgrad.reference.precision import x64_for

SIZES, BATCH, STEPS = (784, 256, 256, 10), 256, 200
QUICK_SIZES, QUICK_BATCH, QUICK_STEPS = (16, 32, 32, 4), 32, 50
CASES = (("relu", "local"), ("tanh", "global"))  # (activation, the rule fcgrad check picks for it)
SEED = 0  # fcgrad check's default
ROUNDS, QUICK_ROUNDS = 3, 1
GOAL = 1.5  # the check's trajectory at most 1.5× the time of its two sides' steps
TRAJECTORY = ("manual_run", "jax_run", "comparisons")  # the Timings phases of the trajectory
STEP_BUDGET = replace(FULL, per_variant_s=2.0)  # per round: two variants, a few seconds each

METHOD = {
    "ratio": "trajectory_s / ((manual_step_s + jit_step_s) * steps), each round's numbers from that round; the "
    "figure is the median over rounds",
    "trajectory_s": "the check's manual_run + jax_run + comparisons phases (fcgrad.engine.timing.Timings), JAX's "
    "compiling included: JAX's caches are cleared before each round, as a fresh fcgrad check starts",
    "ratio_without_compile": "the same with the JAX compiling counted inside those phases taken off",
    "manual_step_s": "median of benchmarks.variants.manual_variant (manual.network.train_step, the training path "
    "manual.train runs) on the check's problem",
    "jit_step_s": "median of benchmarks.variants.jit_step_variant (reference.jit_step, compiled ahead) on the "
    "check's problem",
    "finite_differences_s": "the check's finite-difference phase, not part of the trajectory",
}


def make_problem(activation: str, quick: bool) -> Problem:
    """The problem ``fcgrad check --sizes ... --batch ... --steps ... --activation A`` builds."""
    sizes, batch, steps = (QUICK_SIZES, QUICK_BATCH, QUICK_STEPS) if quick else (SIZES, BATCH, STEPS)
    p = random_problem(sizes, activations=activation, loss="square", batch=batch, seed=SEED)
    return p.with_options(steps=steps)


def _workload(p: Problem) -> Workload:
    return Workload(tuple(p.sizes), p.batch, p.dtype, tuple(p.activations), p.loss, p.lr, p.x, p.t, p.params)


def one_round(p: Problem, steps_variants, budget, progress) -> dict:
    """One check from cold caches, then the two steps: the round's phases, steps and ratios."""
    jax.clear_caches()
    report = check(p)
    if not report.ok:
        raise FcgradError(f"the check of {p.name} failed: its cost is measured on a passing check only")
    timings = report.timings
    phases = {k: v for k, v in timings.as_dict().items() if k != "jax_compile"}
    trajectory = sum(timings.seconds[k] for k in TRAJECTORY)
    compiling = timings.compile_in(*TRAJECTORY)
    with x64_for(p.dtype):
        manual, jit = measure_in_phases(steps_variants, budget, progress)
    sides = (manual.median + jit.median) * p.steps
    return {
        "rule": report.rule,
        "phases_s": phases,
        "trajectory_s": trajectory,
        "trajectory_compile_s": compiling,
        "finite_differences_s": timings.seconds["finite_differences"],
        "manual_step_s": manual.median,
        "manual_step_iqr_s": manual.iqr,
        "jit_step_s": jit.median,
        "jit_step_iqr_s": jit.iqr,
        "sides_s": sides,
        "ratio": trajectory / sides,
        "ratio_without_compile": (trajectory - compiling) / sides,
    }


def _median(rounds: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rounds]))


def run_case(activation: str, rule: str, quick: bool, rounds: int, progress) -> dict:
    p = make_problem(activation, quick)
    budget = QUICK if quick else STEP_BUDGET
    with x64_for(p.dtype):
        wl = _workload(p)
        steps_variants = [variants.manual_variant(wl), variants.jit_step_variant(wl, variants.jax_device("cpu"))]
    done = []
    for i in range(rounds):
        progress(f"{activation} ({rule} rule): round {i + 1}/{rounds}")
        r = one_round(p, steps_variants, budget, progress)
        if r["rule"] != rule:
            raise FcgradError(f"{activation}: expected fcgrad check to judge it by the {rule} rule, got {r['rule']}")
        progress(f"    trajectory {r['trajectory_s']:.2f} s, steps {r['sides_s']:.2f} s, ratio {r['ratio']:.2f}")
        done.append(r)
    keys = ("ratio", "ratio_without_compile", "trajectory_s", "trajectory_compile_s", "finite_differences_s",
            "manual_step_s", "jit_step_s", "sides_s")  # fmt: skip
    summary = {key: _median(done, key) for key in keys}
    summary["phases_s"] = {k: _median([r["phases_s"] for r in done], k) for k in done[0]["phases_s"]}
    return {
        "activation": activation,
        "rule": rule,
        "sizes": "-".join(map(str, p.sizes)),
        "batch": p.batch,
        "steps": p.steps,
        "dtype": p.dtype,
        "loss": p.loss,
        **summary,
        "goal_met": summary["ratio"] <= GOAL,
        "rounds": done,
    }


def table(cases: list[dict]) -> str:
    head = ("rule", "activation", "trajectory s", "manual s", "JAX s", "compare s", "compiling s",
            "manual step", "jit step", "sides s", "ratio", "w/o compile", "finite diff s")  # fmt: skip
    lines = ["  ".join(f"{h:>11}" for h in head)]
    for c in cases:
        ph = c["phases_s"]
        cells = (
            c["rule"],
            c["activation"],
            f"{c['trajectory_s']:.2f}",
            f"{ph['manual_run']:.2f}",
            f"{ph['jax_run']:.2f}",
            f"{ph['comparisons']:.2f}",
            f"{c['trajectory_compile_s']:.2f}",
            f"{1e3 * c['manual_step_s']:.2f} ms",
            f"{1e3 * c['jit_step_s']:.2f} ms",
            f"{c['sides_s']:.2f}",
            f"{c['ratio']:.2f}",
            f"{c['ratio_without_compile']:.2f}",
            f"{c['finite_differences_s']:.2f}",
        )
        lines.append("  ".join(f"{x:>11}" for x in cells))
    lines.append("sides s = (manual step + jit step) x steps; ratio = trajectory s / sides s (median of the rounds)")
    for c in cases:
        verdict = "met" if c["goal_met"] else "missed"
        lines.append(f"goal: the check's trajectory <= {GOAL}x its two sides' steps, {c['rule']} rule: "
                     f"{verdict} ({c['ratio']:.2f})")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m fcgrad.benchmarks.check_cost",
        description="What fcgrad check's trajectory costs against (manual step + jit step) x steps, per rule.",
    )
    parser.add_argument("--json", metavar="PATH", help="write the run (cases, rounds, machine) as JSON")
    parser.add_argument("--quick", action="store_true", help="smoke run: 16-32-32-4, N=32, 50 steps, one round")
    parser.add_argument("--rounds", type=int, metavar="R", help=f"checks per case (default {ROUNDS}, quick 1)")
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (QUICK_ROUNDS if args.quick else ROUNDS)
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if rounds < 1:
            raise FcgradError(f"--rounds: expected a positive count, got {rounds}")
        if args.json:
            from fcgrad.files.output import check_output_path

            check_output_path(args.json, "--json", ".json")
        result = {
            "benchmark": "check_cost",
            "quick": args.quick,
            "goal": GOAL,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "method": METHOD,
            "machine": machine.machine(),
            "device": machine.device("cpu"),
            "versions": machine.versions(),
        }
        result["cases"] = [run_case(act, rule, args.quick, rounds, progress) for act, rule in CASES]
    except FcgradError as exc:
        print(f"python -m fcgrad.benchmarks.check_cost: error: {exc}", file=sys.stderr)
        return 2
    result["machine"]["loadavg_at_end"] = machine.load_average()
    print(table(result["cases"]))
    if args.json:
        from fcgrad.files.output import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
