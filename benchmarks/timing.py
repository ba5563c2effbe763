"""Interleaved repeated timing: medians and interquartile ranges of the time per training step.

Each variant first runs once (warm-up) and is calibrated: the number of calls per timed
block grows until a block lasts at least ``min_block_s``, so the clock's resolution and
the loop's own cost stay negligible. Then the variants are timed in rounds, one block of
each per round in an order rotated every round, so a slow spell of a shared machine hits
every variant alike; the ratios of one run compare numbers taken side by side.
"""

import math
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Budget:
    min_block_s: float  # shortest timed block
    per_variant_s: float  # time to spend timing one variant (sets the repeats, within the bounds below)
    min_repeats: int
    max_repeats: int


QUICK = Budget(min_block_s=0.002, per_variant_s=0.1, min_repeats=3, max_repeats=7)
FULL = Budget(min_block_s=0.05, per_variant_s=4.0, min_repeats=9, max_repeats=41)
MAX_CALLS_PER_BLOCK = 1_000_000


@dataclass(frozen=True)
class Timing:
    median: float  # seconds per training step
    q1: float
    q3: float
    repeats: int  # blocks timed
    calls_per_block: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def _time_block(run, calls: int) -> float:
    start = time.perf_counter()
    run(calls)
    return time.perf_counter() - start


def calibrate(run, min_block_s: float) -> tuple[int, float]:
    """Calls per block so that a block lasts at least ``min_block_s`` -> (calls, seconds per call)."""
    run(1)  # warm-up: first-call costs (allocation, executable load) stay out of the numbers
    calls = 1
    while True:
        secs = _time_block(run, calls)
        if secs >= min_block_s or calls >= MAX_CALLS_PER_BLOCK:
            return calls, secs / calls
        calls = min(MAX_CALLS_PER_BLOCK, max(2 * calls, math.ceil(calls * 1.2 * min_block_s / max(secs, 1e-9))))


def measure(variants, budget: Budget, progress=None) -> list[Timing]:
    """Time every variant (each needs ``.run(k)`` and ``.steps_per_call``); one ``Timing`` each, in order."""
    plans = []
    for v in variants:
        calls, per_call = calibrate(v.run, budget.min_block_s)
        repeats = int(np.clip(round(budget.per_variant_s / (calls * per_call)), budget.min_repeats, budget.max_repeats))
        plans.append((calls, repeats))
        if progress:
            per_step = per_call / v.steps_per_call
            progress(f"    calibrated {v.name:<12} {per_step:.3g} s/step, {calls} call(s) per block, {repeats} blocks")
    samples: list[list[float]] = [[] for _ in variants]
    rounds = max(r for _, r in plans)
    for r in range(rounds):
        order = [(i + r) % len(variants) for i in range(len(variants))]
        for i in order:
            calls, repeats = plans[i]
            if len(samples[i]) < repeats:
                samples[i].append(_time_block(variants[i].run, calls) / (calls * variants[i].steps_per_call))
    timings = []
    for (calls, _), s in zip(plans, samples):
        q1, med, q3 = np.percentile(s, [25, 50, 75])
        timings.append(Timing(float(med), float(q1), float(q3), len(s), calls))
    return timings
