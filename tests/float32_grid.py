"""The float32 grid: correct runs must never fail, broken derivations must always fail.

Not run by CI in full (a few minutes); ``python -m tests.float32_grid [--steps N] [--rules local,shadow]``
prints the grid's size and the worst ratio of max|Δ| to the tolerance, per rule, and writes
``tests/float32_grid.json``. tests/test_float32.py runs a small subset of the same cases.

Grid: depth 1-4 (widths up to 32, N = 32), every activation, both losses, learning rates at
0.1, 0.5 and 0.9 of 2/λ where λ is the loss's sharpness (largest Hessian eigenvalue) at the
initial parameters, so the last sits near the edge of stability; plus the two runs that once
failed on correct code (8-32-32-4 ReLU lr 0.1, cross-entropy lr 0.5).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fcgrad.engine.problems import random_problem
from fcgrad.engine.trajectory import compare_trajectories
from fcgrad.reference.model import loss as jax_loss

SIZES_BY_DEPTH = {1: (8, 4), 2: (8, 16, 4), 3: (8, 32, 32, 4), 4: (6, 16, 16, 8, 3)}
ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
LOSSES = ("square", "cross-entropy")
EDGE_FRACTIONS = (0.1, 0.5, 0.9)
BATCH = 32
OUT = Path(__file__).with_name("float32_grid.json")


def sharpness(p, iterations: int = 30) -> float:
    """Largest |eigenvalue| of the loss's Hessian at the initial parameters (power iteration, float64)."""
    with jax.enable_x64(True):
        params = [{k: jnp.asarray(v, jnp.float64) for k, v in layer.items()} for layer in p.params]
        x, t = jnp.asarray(p.x, jnp.float64), jnp.asarray(p.t, jnp.float64)
        grad = jax.grad(lambda q: jax_loss(q, x, t, tuple(p.activations), p.loss))
        hvp = jax.jit(lambda v: jax.jvp(grad, (params,), (v,))[1])
        rng = np.random.default_rng(0)
        v = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), params)
        value = 0.0
        for _ in range(iterations):
            norm = jnp.sqrt(sum(jnp.sum(a * a) for a in jax.tree.leaves(v)))
            v = jax.tree.map(lambda a, n=norm: a / n, v)
            hv = hvp(v)
            value = float(sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(hv))))
            v = hv
        return abs(value)


def grid_cases(steps: int):
    """(id, float32 problem) for every case of the grid."""
    for depth, sizes in SIZES_BY_DEPTH.items():
        for act in ACTIVATIONS:
            for loss in LOSSES:
                p = random_problem(sizes, activations=act, loss=loss, batch=BATCH, seed=depth)
                edge = 2.0 / sharpness(p)
                for frac in EDGE_FRACTIONS:
                    case = f"{'-'.join(map(str, sizes))}-{act}-{loss}-lr{frac:g}edge"
                    yield case, p.with_options(lr=frac * edge, steps=steps, dtype="float32")
    relu = random_problem((8, 32, 32, 4), activations="relu", batch=32)
    yield "8-32-32-4-relu-square-lr0.1", relu.with_options(lr=0.1, steps=steps, dtype="float32")
    ce = random_problem((8, 32, 32, 4), loss="cross-entropy", batch=8)
    yield "8-32-32-4-sigmoid-cross-entropy-lr0.5", ce.with_options(lr=0.5, steps=steps, dtype="float32")


def run_case(case: str, p, rules) -> dict:
    out = {"case": case, "lr": p.lr, "steps": p.steps}
    for rule in rules:
        start = time.perf_counter()
        c = compare_trajectories(p, rule=rule)
        worst = max(c.rows, key=lambda r: r.ratio if np.isfinite(r.ratio) else np.inf)
        out[rule] = {
            "ok": all(r.ok for r in c.rows) and (c.divergence is None or c.divergence.side == "both"),
            "worst_ratio": worst.ratio,
            "worst_row": f"layer {worst.layer} {worst.quantity}",
            "divergence": None if c.divergence is None else list(c.divergence),
            "seconds": round(time.perf_counter() - start, 2),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--rules", default="local,shadow")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--resume", action="store_true", help="keep the cases already in --out, run the rest")
    args = parser.parse_args(argv)
    rules = args.rules.split(",")
    results = json.loads(args.out.read_text())["cases"] if args.resume and args.out.exists() else []
    done = {r["case"] for r in results}
    for case, p in grid_cases(args.steps):
        if case in done:
            continue
        results.append(run_case(case, p, rules))
        row = results[-1]
        print(case, " ".join(f"{r}: ratio {row[r]['worst_ratio']:.3g} {'ok' if row[r]['ok'] else 'FAIL'}"
                             for r in rules), flush=True)
        args.out.write_text(json.dumps({"steps": args.steps, "cases": results}, indent=1) + "\n")  # as it goes
    summary = {}
    for rule in rules:
        ratios = [r[rule]["worst_ratio"] for r in results]
        summary[rule] = {
            "cases": len(results),
            "false_alarms": sum(not r[rule]["ok"] for r in results),
            "worst_ratio": max(ratios, key=lambda v: v if np.isfinite(v) else np.inf),
        }
        print(f"rule {rule}: {len(results)} correct float32 runs of {args.steps} steps, "
              f"{summary[rule]['false_alarms']} false alarms, worst max|Δ|/tol {summary[rule]['worst_ratio']:.3g}")
    args.out.write_text(json.dumps({"steps": args.steps, "summary": summary, "cases": results}, indent=1) + "\n")
    return 0 if all(s["false_alarms"] == 0 for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
