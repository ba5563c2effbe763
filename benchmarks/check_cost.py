"""What a check costs against the two steps it compares, per trajectory rule.

``fcgrad check --sizes 784,256,256,10 --batch 256 --steps 200 --activation A`` (float64, square loss,
seed 0) trains manual and judges every step against JAX. Its trajectory — manual's run, JAX's run and the
comparisons, as the engine's own ``Timings`` phases give them, JAX's compiling included, as a fresh
command pays it — is set against what the two sides cost alone, measured in the same run:

    ratio = trajectory seconds / ((median manual step + median jit step) × steps)

``manual`` and ``jit-step`` are the suite's variants (``benchmarks.variants``) on the check's own problem.
A ReLU network is judged by the ``local`` rule (one JAX step from each of manual's parameters, with the
kink bound), a tanh network by the ``global`` rule (JAX trains freely). Goal: a ratio of at most
``GOAL_FEW_CORES`` in both on a machine of fewer than ``MANY_CORES`` cores, ``GOAL_MANY_CORES`` on one of
more (there the host's manual chunk and JAX's run side by side). Finite differences are a phase of the check
but not of its trajectory: reported apart.

Each round clears JAX's compilation caches, runs the whole check (``fcgrad.engine.run.check``), then
times the two steps (``suite.measure_in_phases``); the figure is the median of the rounds' ratios.

Each round also times manual's step on the host's share of the cores (``manual-share``: its BLAS held as it is
beside JAX), and gives the overlap's floor: manual's steps that way plus the comparisons, the host's own work in
the trajectory, over the two sides. Where two cores scale a step well, manual on one of them takes about as
long as both sides on both, and no overlap brings the ratio much below 1 plus the comparisons' share.

Both sides' times move with other work on the machine, and not alike (NumPy's threads suffer more), so each
round states its conditions: the load average at its start and end, and the share of the cores other
processes used while it ran (``/proc/stat``'s busy time less this process's own). A run where others used
more than ``IDLE_OTHERS_SHARE`` of the cores in any round says it was too loaded to judge the goal.

    python -m fcgrad.benchmarks.check_cost --json benchmarks/results/check_cost_cpu.json
    python -m fcgrad.benchmarks.check_cost --quick        # 16-32-32-4, N=32, 50 steps, one round
"""

import datetime
import os
import sys
import time
from dataclasses import replace

import jax
import numpy as np

from fcgrad.benchmarks import machine, variants
from fcgrad.benchmarks.suite import measure_in_phases
from fcgrad.benchmarks.timing import FULL, QUICK
from fcgrad.benchmarks.workloads import Workload
from fcgrad.cli.args import OneLineParser
from fcgrad.engine import blas_threads
from fcgrad.engine.problems import Problem, random_problem
from fcgrad.engine.run import check
from fcgrad.manual.errors import FcgradError
from fcgrad.reference.precision import x64_for

SIZES, BATCH, STEPS = (784, 256, 256, 10), 256, 200
QUICK_SIZES, QUICK_BATCH, QUICK_STEPS = (16, 32, 32, 4), 32, 50
CASES = (("relu", "local"), ("tanh", "global"))  # (activation, the rule fcgrad check picks for it)
SEED = 0  # fcgrad check's default
ROUNDS, QUICK_ROUNDS = 5, 1  # a round's ratio moves by ±0.15 with its denominator: the median of 5
GOAL_FEW_CORES = 1.3  # the check's trajectory at most 1.3× the time of its two sides' steps, below MANY_CORES
GOAL_MANY_CORES = 1.0  # with MANY_CORES or more, the overlapped sides make checking nearly free
MANY_CORES = 4  # enough for manual's BLAS threads and XLA's to run at once without sharing a core
# Other processes' share of the cores during a round above which its times say nothing of an idle machine:
# a tenth of the cores (0.2 of a core here) is what a shell, an editor and the system use between runs
IDLE_OTHERS_SHARE = 0.1
TRAJECTORY = ("manual_run", "jax_run", "comparisons")  # the Timings phases of the trajectory
STEP_BUDGET = replace(FULL, per_variant_s=2.0)  # per round: two variants, a few seconds each

METHOD = {
    "ratio": "trajectory_s / ((manual_step_s + jit_step_s) * steps), each round's numbers from that round; the "
    "figure is the median over rounds",
    "trajectory_s": "the check's manual_run + jax_run + comparisons phases (fcgrad.engine.timing.Timings), JAX's "
    "compiling included: JAX's caches are cleared before each round, as a fresh fcgrad check starts",
    "ratio_without_compile": "the same with the JAX compiling counted inside those phases taken off",
    "compile_aside_s": "JAX compiling done in another thread while manual's first chunk ran: counted in no phase, "
    "its wall time hidden behind manual's",
    "check_s": "the whole check's wall time (fcgrad.engine.run.check): every phase, the finite differences and the "
    "gradients at the start included",
    "manual_step_s": "median of benchmarks.variants.manual_variant (manual.network.train_step, the training path "
    "manual.train runs) on the check's problem",
    "jit_step_s": "median of benchmarks.variants.jit_step_variant (reference.jit_step, compiled ahead) on the "
    "check's problem",
    "manual_share_step_s": "the manual variant again, its BLAS held to the host's share of the cores "
    "(fcgrad.engine.blas_threads.beside_jax), as manual runs beside JAX in the trajectory: timed alone, so at most "
    "what a step takes there",
    "host_path_s": "manual_share_step_s * steps + the comparisons phase: the work the trajectory's host thread "
    "does in turn, none of it hidden by the overlap, so a lower bound of trajectory_s",
    "floor_ratio": "host_path_s / sides_s: the least ratio the overlapped trajectory can have in that round",
    "finite_differences_s": "the check's finite-difference phase, not part of the trajectory",
    "manual_beside_jax": "whether manual's chunks ran beside JAX's, their BLAS held to the host's share "
    "(fcgrad.engine.blas_threads.can_limit: threadpoolctl importable); where false they ran after JAX's, the "
    "share step is manual's step unchanged, and the goal is not judged",
    "conditions": "per round: the 1, 5 and 15 min load average at its start and end (os.getloadavg, this run's "
    "own work included) and others_share, the share of the cores that other processes kept busy while it ran "
    "(/proc/stat's busy time less this process's, over the round's wall time × cores); the goal is judged only "
    "when every round's others_share is at most idle_others_share",
}


def goal(cores: int) -> float:
    return GOAL_MANY_CORES if cores >= MANY_CORES else GOAL_FEW_CORES


def _busy_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of every core since boot, from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
    return sum(ticks[:8]) - idle, sum(ticks[:8])  # user … steal; guest time is already in user


class Conditions:
    """The load average at a round's start and end, and others' share of the cores over the round."""

    def __init__(self):
        self.load_start = machine.load_average()
        self.cpu_start, self.ticks_start = _own_cpu_s(), _busy_jiffies()

    def end(self) -> dict:
        own = _own_cpu_s() - self.cpu_start
        ticks = _busy_jiffies()
        share = None
        if ticks is not None and self.ticks_start is not None and ticks[1] > self.ticks_start[1]:
            hz = os.sysconf("SC_CLK_TCK")
            busy, total = ((ticks[i] - self.ticks_start[i]) / hz for i in (0, 1))
            share = max(0.0, (busy - own) / total)
        return {"loadavg_at_start": self.load_start, "loadavg_at_end": machine.load_average(), "others_share": share}


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def make_problem(activation: str, quick: bool) -> Problem:
    """The problem ``fcgrad check --sizes ... --batch ... --steps ... --activation A`` builds."""
    sizes, batch, steps = (QUICK_SIZES, QUICK_BATCH, QUICK_STEPS) if quick else (SIZES, BATCH, STEPS)
    p = random_problem(sizes, activations=activation, loss="square", batch=batch, seed=SEED)
    return p.with_options(steps=steps)


def _workload(p: Problem) -> Workload:
    return Workload(tuple(p.sizes), p.batch, p.dtype, tuple(p.activations), p.loss, p.lr, p.x, p.t, p.params)


def host_share_variant(wl: Workload) -> variants.Variant:
    """``manual-share``: the manual variant with NumPy's BLAS held to the host's share of the cores, as manual's
    chunks run beside JAX's in the trajectory (``blas_threads.beside_jax``)."""
    manual = variants.manual_variant(wl)

    def run(k: int) -> None:
        with blas_threads.beside_jax():
            manual.run(k)

    return replace(manual, name="manual-share", run=run)


def one_round(p: Problem, steps_variants, budget, progress) -> dict:
    """One check from cold caches, then the two steps: the round's phases, steps and ratios."""
    conditions = Conditions()
    jax.clear_caches()
    start = time.perf_counter()
    report = check(p)
    check_s = time.perf_counter() - start
    if not report.ok:
        raise FcgradError(f"the check of {p.name} failed: its cost is measured on a passing check only")
    timings = report.timings
    phases = {k: v for k, v in timings.as_dict().items() if k != "jax_compile"}
    trajectory = sum(timings.seconds[k] for k in TRAJECTORY)
    compiling = timings.compile_in(*TRAJECTORY)
    with x64_for(p.dtype):
        manual, share, jit = measure_in_phases(steps_variants, budget, progress)
    sides = (manual.median + jit.median) * p.steps
    host_path = share.median * p.steps + timings.seconds["comparisons"]
    return {
        "rule": report.rule,
        "phases_s": phases,
        "trajectory_s": trajectory,
        "trajectory_compile_s": compiling,
        "compile_aside_s": timings.compile_aside_s,  # compiled in another thread while manual ran: in no phase
        "finite_differences_s": timings.seconds["finite_differences"],
        "check_s": check_s,
        "manual_step_s": manual.median,
        "manual_step_iqr_s": manual.iqr,
        "jit_step_s": jit.median,
        "jit_step_iqr_s": jit.iqr,
        "manual_share_step_s": share.median,
        "host_path_s": host_path,
        "sides_s": sides,
        "ratio": trajectory / sides,
        "floor_ratio": host_path / sides,
        "ratio_without_compile": (trajectory - compiling) / sides,
        "conditions": conditions.end(),
    }


# a round's numbers that a case gives as the median over its rounds
SUMMARY_KEYS = ("ratio", "ratio_without_compile", "trajectory_s", "trajectory_compile_s", "compile_aside_s",
                "finite_differences_s", "check_s", "manual_step_s", "jit_step_s", "sides_s", "manual_share_step_s",
                "host_path_s", "floor_ratio")  # fmt: skip


def _median(rounds: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rounds]))


def run_case(activation: str, rule: str, quick: bool, rounds: int, progress) -> dict:
    p = make_problem(activation, quick)
    budget = QUICK if quick else STEP_BUDGET
    with x64_for(p.dtype):
        wl = _workload(p)
        steps_variants = [variants.manual_variant(wl), host_share_variant(wl),
                          variants.jit_step_variant(wl, variants.jax_device("cpu"))]  # fmt: skip
    done = []
    for i in range(rounds):
        progress(f"{activation} ({rule} rule): round {i + 1}/{rounds}")
        r = one_round(p, steps_variants, budget, progress)
        if r["rule"] != rule:
            raise FcgradError(f"{activation}: expected fcgrad check to judge it by the {rule} rule, got {r['rule']}")
        progress(f"    trajectory {r['trajectory_s']:.2f} s, steps {r['sides_s']:.2f} s, ratio {r['ratio']:.2f} "
                 f"({_conditions_text(r['conditions'])})")  # fmt: skip
        done.append(r)
    summary = {key: _median(done, key) for key in SUMMARY_KEYS}
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
        "idle": _idle(done),  # the goal is judged only where this is true
        "manual_beside_jax": blas_threads.can_limit(),  # and where this is: the check as installed runs it
        "goal_met": summary["ratio"] <= goal(os.cpu_count() or 1),
        "rounds": done,
    }


def _idle(rounds: list[dict]) -> bool | None:
    """Whether others left the cores alone in every round (None: not measurable here)."""
    shares = [r["conditions"]["others_share"] for r in rounds]
    return None if None in shares else all(s <= IDLE_OTHERS_SHARE for s in shares)


def _conditions_text(c: dict) -> str:
    def load(v):
        return "?" if v is None else f"{v[0]:.2f}"

    share = "?" if c["others_share"] is None else f"{100 * c['others_share']:.0f}%"
    return f"load {load(c['loadavg_at_start'])} -> {load(c['loadavg_at_end'])}, others used {share} of the cores"


def _number(record: dict, key: str, scale: float = 1.0, unit: str = "") -> str:
    """``record[key]`` for the table, or "?" in a run recorded before that number was measured."""
    return f"{scale * record[key]:.2f}{unit}" if key in record else "?"


def table(cases: list[dict], quick: bool = False) -> str:
    head = ("rule", "activation", "trajectory s", "manual s", "JAX s", "compare s", "compiling s", "aside s",
            "manual step", "jit step", "sides s", "ratio", "w/o compile", "share step", "floor", "finite diff s",
            "check s")  # fmt: skip
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
            f"{c.get('compile_aside_s', 0.0):.2f}",
            f"{1e3 * c['manual_step_s']:.2f} ms",
            f"{1e3 * c['jit_step_s']:.2f} ms",
            f"{c['sides_s']:.2f}",
            f"{c['ratio']:.2f}",
            f"{c['ratio_without_compile']:.2f}",
            _number(c, "manual_share_step_s", 1e3, " ms"),
            _number(c, "floor_ratio"),
            f"{c['finite_differences_s']:.2f}",
            _number(c, "check_s"),
        )
        lines.append("  ".join(f"{x:>11}" for x in cells))
    lines.append("sides s = (manual step + jit step) x steps; ratio = trajectory s / sides s (median of the rounds)")
    apart = [c["rule"] for c in cases if not c.get("manual_beside_jax", True)]
    if apart:
        rules = f"{' and '.join(apart)} rule{'s' if len(apart) > 1 else ''}"
        lines.append(f"{rules}: threadpoolctl is not installed, so manual's BLAS could not be held to the host's "
                     "share: manual's chunks ran after JAX's, not beside them, and share step is manual's step on "
                     "all its BLAS threads")  # fmt: skip
    else:
        lines.append(f"share step: manual's step on the host's share of the cores ({blas_threads.host_share()} BLAS "
                     "thread(s)), as it runs beside JAX; floor = (share step x steps + compare s) / sides s, the "
                     "least ratio the overlap can have")  # fmt: skip
    target = goal(os.cpu_count() or 1)
    for c in cases:
        rounds = "; ".join(f"{r['ratio']:.2f} (floor {_number(r, 'floor_ratio')}, {_conditions_text(r['conditions'])})"
                           for r in c["rounds"])  # fmt: skip
        lines.append(f"{c['rule']} rule, each round: {rounds}")
    if quick:  # milliseconds of steps beside JAX's fixed costs (compiling, a thread): no ratio to judge a goal by
        lines.append(f"goal ({target}x) not judged: the quick problem's steps are too small; run without --quick")
        return "\n".join(lines)
    for c in cases:
        verdict = "met" if c["goal_met"] else "missed"
        line = f"goal: the check's trajectory <= {target}x its two sides' steps, {c['rule']} rule: {verdict} " \
               f"({c['ratio']:.2f})"  # fmt: skip
        if not c.get("manual_beside_jax", True):
            line += (", but manual ran apart from JAX (threadpoolctl is not installed), not as an installed fcgrad "
                     "runs the check: install threadpoolctl to judge the goal")  # fmt: skip
        elif c["idle"] is None:
            line += ", but others' use of the cores could not be read: the load averages above are all there is"
        elif not c["idle"]:
            line += (f", but other processes used more than {IDLE_OTHERS_SHARE:.0%} of the cores in a round: "
                     "too loaded to judge the goal, rerun on an idle machine")  # fmt: skip
        lines.append(line)
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
            "goal": goal(os.cpu_count() or 1),
            "idle_others_share": IDLE_OTHERS_SHARE,
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
    print(table(result["cases"], quick=args.quick))
    if args.json:
        from fcgrad.files.output import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
