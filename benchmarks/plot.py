"""One figure, two panels: time per step against problem size per variant (log-log), and the
blog's AND example's loss curves, manual against JAX. Needs matplotlib (the "plot" extra).

``python -m fcgrad.benchmarks.plot RESULT.json OUT.png`` redraws the figure of a saved run.
"""

import argparse
import json

import numpy as np

from fcgrad.benchmarks.flops import ALL, step_flops
from fcgrad.benchmarks.workloads import parse_spec

COLORS = {
    "manual": "tab:red",
    "minimal-numpy": "tab:orange",
    "minimal-jax": "tab:olive",
    "jit-step": "tab:blue",
    "jit-fused": "tab:green",
    "manual-jit": "tab:purple",
    "floor": "black",  # the NumPy floor is drawn in gray
}
SKIPPED = ("floor-needed",)  # in the JSON, left out of the figure to keep it readable


def blog_loss_curves() -> tuple[np.ndarray, np.ndarray]:
    """Losses per step of the blog's AND run (10,000 steps, float64): (manual, JAX)."""
    from fcgrad import reference
    from fcgrad.engine.problems import and_example
    from fcgrad.manual import network

    p = and_example()
    kw = {"activations": p.activations, "loss": p.loss, "lr": p.lr, "steps": p.steps, "record_params": False}
    manual_losses = network.train(p.params, p.x, p.t, **kw).losses
    jax_losses = reference.train(p.params, p.x, p.t, dtype="float64", **kw)["losses"]
    return manual_losses, jax_losses


def _series(rows):
    """{(variant, backend, device, dtype): sorted [(step FLOPs, seconds)]} (default precision only)."""
    series: dict = {}
    for r in rows:
        if r["variant"] in SKIPPED or r.get("precision") not in (None, "default"):
            continue
        sizes, batch = parse_spec(f"{r['sizes']}:{r['batch']}")
        key = (r["variant"], r["backend"], r["device"], r["dtype"])
        series.setdefault(key, []).append((step_flops(sizes, batch, ALL), r["step_s_median"]))
    return {k: sorted(v) for k, v in series.items()}


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(13, 5.2))
    devices = {r["device"] for r in result["rows"] if r["backend"] == "jax"}
    for (variant, backend, device, dtype), pts in _series(result["rows"]).items():
        xs, ys = zip(*pts)
        label = f"{variant}" + (f" ({backend})" if variant == "floor" else "")
        if backend == "jax" and len(devices) > 1:
            label += f" [{device}]"
        style = "-" if dtype == "float64" else "--"
        marker = "o" if device == "cpu" else "s"
        color = "gray" if (variant, backend) == ("floor", "numpy") else COLORS.get(variant, "gray")
        ax_t.plot(xs, ys, style, marker=marker, color=color, label=f"{label} {dtype}", ms=4)
    ax_t.set_xscale("log")
    ax_t.set_yscale("log")
    ax_t.set_xlabel("problem size: FLOPs of one step's matrix products (3 per layer)")
    ax_t.set_ylabel("median time per training step (s)")
    title = f"time per step — JAX on {result['device']['jax_device']}"
    ax_t.set_title(title + " (solid float64, dashed float32)", fontsize=10)
    ax_t.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=6, ncol=2)

    manual_losses, jax_losses = blog_loss_curves()
    steps = np.arange(1, len(manual_losses) + 1)
    ax_l.plot(steps, manual_losses, color="tab:red", lw=3, alpha=0.5, label="manual (NumPy)")
    ax_l.plot(steps, jax_losses, "--", color="tab:blue", lw=1.2, label="JAX (jax.grad, lax.scan)")
    gap = float(np.max(np.abs(manual_losses - jax_losses)))
    ax_l.set_xscale("log")
    ax_l.set_yscale("log")
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("square loss")
    ax_l.set_title(f"the blog's example (AND, 2-4-1, float64): max |Δ loss| = {gap:.1e}", fontsize=10)
    ax_l.grid(True, which="both", alpha=0.3)
    ax_l.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fcgrad.benchmarks.plot", description="draw the figure of a saved run"
    )
    parser.add_argument("result", help="a JSON file written by python -m fcgrad.benchmarks --json")
    parser.add_argument("out", help="the PNG to write")
    args = parser.parse_args(argv)
    with open(args.result) as f:
        plot(json.load(f), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
