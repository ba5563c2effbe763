"""What tracing costs an audit: ``audit --code`` with every array the file assigns recorded and matched,
against the same audit with the recorder off (the audit as it was before it traced: step-level judging only).

The files are ``tests/fixtures/step_net.py`` (``step(params, X, T, lr)``, the whole batch at once) and
``tests/fixtures/published/network.py`` (the textbook's, one sample at a time through ``backprop``), each on a
64-32-10 problem of N = 64 samples, 30 steps, float64. Each round runs both audits once, JAX's compilation
caches cleared before each (a fresh command compiles them too); the figure is the median over the rounds of
traced seconds / untraced seconds. Goal: at most ``GOAL``.

    python -m fcgrad.benchmarks.audit_cost [--rounds 3] [--json PATH]
"""

import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import jax

from fcgrad.audits import code
from fcgrad.cli.args import OneLineParser
from fcgrad.engine.problems import random_problem

ROOT = Path(__file__).resolve().parent.parent
FILES = {
    "a step function (step_net.py)": ROOT / "tests" / "fixtures" / "step_net.py",
    "one sample at a time (network.py)": ROOT / "tests" / "fixtures" / "published" / "network.py",
}
SIZES, BATCH, STEPS = (64, 32, 10), 64, 30
GOAL = 2.0  # the traced audit costs at most twice the untraced one


class _Off:
    records: list = []


@contextlib.contextmanager
def _no_recorder(_folder):
    yield _Off()


def _seconds(path: Path, traced: bool) -> float:
    problem = random_problem(list(SIZES), batch=BATCH, seed=0)
    patch = contextlib.nullcontext() if traced else mock.patch.object(code, "recording", _no_recorder)
    jax.clear_caches()
    with patch, contextlib.redirect_stdout(sys.stderr):
        start = time.perf_counter()
        code.audit_code(str(path), problem, steps=STEPS)
        return time.perf_counter() - start


def measure(rounds: int) -> dict:
    load = os.getloadavg()[0]
    out = {"sizes": list(SIZES), "batch": BATCH, "steps": STEPS, "goal": GOAL, "load_start": load, "files": {}}
    for words, path in FILES.items():
        _seconds(path, True)  # warm: JAX's compiling, the imports
        pairs = [(_seconds(path, True), _seconds(path, False)) for _ in range(rounds)]
        ratios = [t / u for t, u in pairs]
        out["files"][words] = {
            "traced_s": statistics.median(t for t, _ in pairs),
            "untraced_s": statistics.median(u for _, u in pairs),
            "ratio": statistics.median(ratios),
            "ratios": ratios,
        }
    out["load_end"] = os.getloadavg()[0]
    return out


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m fcgrad.benchmarks.audit_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per file (default 3)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    args = parser.parse_args(argv)
    result = measure(args.rounds)
    print(f"audit --code on {'-'.join(map(str, SIZES))}, N={BATCH}, {STEPS} steps, float64; "
          f"load {result['load_start']:.1f} -> {result['load_end']:.1f} (cores {os.cpu_count()})")
    for words, r in result["files"].items():
        verdict = "met" if r["ratio"] <= GOAL else "MISSED"
        print(f"  {words}: traced {r['traced_s']:.2f} s, untraced {r['untraced_s']:.2f} s, "
              f"ratio {r['ratio']:.2f} (goal <= {GOAL:g}: {verdict})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
