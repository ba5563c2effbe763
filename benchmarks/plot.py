"""The figure of a benchmark run: manual or jit, per device and dtype, at a glance.

One column of panels per (device, dtype) the run measured — ``cpu`` is the host (NumPy, and JAX on
the CPU), ``gpu`` JAX on the GPU — with the variants' median time per step against problem size on
top, and below each variant's floor_ratio (its backend's floor time / its time: 1 is at the floor,
the ratio the JSON holds). Every variant has one colour in every panel (``VARIANT_COLORS``); NumPy
variants are drawn with circles and solid lines, JAX variants with squares and dashed lines. A last
column shows the blog's AND example's loss curves, manual against JAX. float32 panels show JAX's
default matmul precision (TF32 on an NVIDIA GPU); ``highest`` stays in the JSON. Needs matplotlib (the
"plot" extra).

``python -m fcgrad.benchmarks.plot RESULT.json OUT.png`` redraws the figure of a saved run.
"""

import argparse
import functools
import json

import numpy as np

from fcgrad.benchmarks.flops import ALL, step_flops
from fcgrad.benchmarks.workloads import parse_spec

# series name -> colour, the same in every panel and every figure ("floor (numpy)" and "floor (jax)" are
# the two backends' floors: the floor a variant's ratio is taken against is the one of its own backend)
VARIANT_COLORS = {
    "manual": "tab:red",
    "minimal-numpy": "tab:orange",
    "floor (numpy)": "tab:gray",
    "jit-step": "tab:blue",
    "jit-fused": "tab:green",
    "minimal-jax": "tab:olive",
    "manual-jit": "tab:purple",
    "floor (jax)": "black",
}
SKIPPED = ("floor-needed",)  # in the JSON, left out of the figure to keep it readable
DEVICES = ("cpu", "gpu")
DTYPES = ("float64", "float32")
PANEL_WIDTH, TIME_HEIGHT, RATIO_HEIGHT = 3.6, 3.4, 2.2  # inches
LEGEND_ENTRY_WIDTH = 1.45  # inches: a legend entry at font size 8


def series_name(row: dict) -> str:
    return f"floor ({row['backend']})" if row["variant"] == "floor" else row["variant"]


def panels(rows: list[dict]) -> list[tuple[str, str]]:
    """The (device, dtype) pairs a run measured, in a fixed order: cpu before gpu, float64 before float32."""
    seen = {(r["device"], r["dtype"]) for r in rows}
    return [(d, t) for d in DEVICES for t in DTYPES if (d, t) in seen]


def _size_key(row: dict) -> tuple[int, str, int]:
    sizes, batch = parse_spec(f"{row['sizes']}:{row['batch']}")
    return step_flops(sizes, batch, ALL), row["sizes"], batch


def size_axis(rows: list[dict]) -> list[tuple[str, int]]:
    """Every (sizes, batch) of the run, smallest step first (by its FLOPs): x positions 0, 1, ... of every panel."""
    return [(sizes, batch) for _, sizes, batch in sorted({_size_key(r) for r in rows})]


def series(rows: list[dict], device: str, dtype: str, key: str = "step_s_median") -> dict:
    """{series name: [(x position on ``size_axis``, value)]} of one panel (default precision, values not None),
    in ``VARIANT_COLORS``' order."""
    where = {size: i for i, size in enumerate(size_axis(rows))}
    out: dict = {}
    for r in rows:
        if r["variant"] in SKIPPED or r.get("precision") not in (None, "default"):
            continue
        if (r["device"], r["dtype"]) != (device, dtype) or r.get(key) is None:
            continue
        out.setdefault(series_name(r), []).append((where[(r["sizes"], r["batch"])], r[key]))
    return {name: sorted(out[name]) for name in VARIANT_COLORS if name in out}


def _size_label(sizes: str, batch: int) -> str:
    """``784-256-256-10`` on two lines of two widths each; a short one (``2-4-1``) on one."""
    widths = sizes.split("-")
    lines = [sizes] if len(sizes) <= 9 else ["-".join(widths[i : i + 2]) for i in range(0, len(widths), 2)]
    return "-\n".join(lines) + f"\nN={batch}"


MARKERS = {"manual": "o", "minimal-numpy": "v", "floor (numpy)": ".", "jit-step": "s", "jit-fused": "D",
           "minimal-jax": "^", "manual-jit": "x", "floor (jax)": "+"}  # fmt: skip
MAIN = ("manual", "jit-step", "jit-fused")  # the question the figure answers: drawn last, thicker


def _style(name: str) -> dict:
    jax_side = name in ("jit-step", "jit-fused", "minimal-jax", "manual-jit", "floor (jax)")
    main = name in MAIN
    return {"color": VARIANT_COLORS[name], "marker": MARKERS[name], "linestyle": "--" if jax_side else "-",
            "markersize": 5 if main else 4, "linewidth": 2.0 if main else 1.0, "alpha": 1.0 if main else 0.8,
            "zorder": 3 if main else 2, "label": name}  # fmt: skip


@functools.cache
def blog_loss_curves() -> tuple[np.ndarray, np.ndarray]:
    """Losses per step of the blog's AND run (10,000 steps, float64): (manual, JAX), read-only; trained once per
    process, however many figures it draws."""
    from fcgrad import reference
    from fcgrad.engine.problems import and_example
    from fcgrad.manual import network

    p = and_example()
    kw = {"activations": p.activations, "loss": p.loss, "lr": p.lr, "steps": p.steps, "record_params": False}
    manual_losses = network.train(p.params, p.x, p.t, **kw).losses
    jax_losses = reference.train(p.params, p.x, p.t, dtype="float64", **kw)["losses"]
    for losses in (manual_losses, jax_losses):
        losses.flags.writeable = False
    return manual_losses, jax_losses


def _panel_title(result: dict, device: str, dtype: str) -> str:
    if device == "gpu":
        where = f"JAX on {result['device'].get('jax_device', 'the GPU')}"
        return f"{where}, {dtype}" + (" (TF32)" if dtype == "float32" else "")
    cpu = result["device"].get("numpy", "host cpu").removeprefix("host cpu: ")
    return f"CPU ({cpu}), {dtype}"


def figure(result: dict):
    """The figure of ``result`` (a run's JSON): a matplotlib ``Figure``, not yet written."""
    from matplotlib.figure import Figure

    rows = result["rows"]
    cols = panels(rows)
    fig = Figure(figsize=(PANEL_WIDTH * (len(cols) + 1.1), TIME_HEIGHT + RATIO_HEIGHT + 0.9), layout="constrained")
    grid = fig.add_gridspec(2, len(cols) + 1, height_ratios=(TIME_HEIGHT, RATIO_HEIGHT),
                            width_ratios=(1,) * len(cols) + (1.1,))  # fmt: skip
    axis = size_axis(rows)
    time_axes, ratio_axes = [], []
    for j, (device, dtype) in enumerate(cols):
        ax_t = fig.add_subplot(grid[0, j], sharey=time_axes[0] if time_axes else None)
        ax_r = fig.add_subplot(grid[1, j], sharex=ax_t, sharey=ratio_axes[0] if ratio_axes else None)
        time_axes.append(ax_t)
        ratio_axes.append(ax_r)
        for name, pts in series(rows, device, dtype).items():
            ax_t.plot(*zip(*pts), **_style(name))
        for name, pts in series(rows, device, dtype, "floor_ratio").items():
            if not name.startswith("floor"):  # a floor's ratio to itself is 1
                ax_r.plot(*zip(*pts), **_style(name))
        ax_r.axhline(1.0, color="black", linewidth=0.8, alpha=0.6)
        ax_t.set_title(_panel_title(result, device, dtype), fontsize=9)
        for ax in (ax_t, ax_r):
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
        ax_t.tick_params(labelbottom=False)
        ax_r.set_xticks(range(len(axis)), [_size_label(*size) for size in axis], fontsize=6)
        ax_r.set_xlim(-0.4, len(axis) - 0.6)
    time_axes[0].set_ylabel("median time per training step (s)")
    ratio_axes[0].set_ylabel("floor_ratio (1 = at the floor)")
    for ax in ratio_axes:
        ax.set_xlabel("network and batch N, smallest step first", fontsize=8)
    handles = {line.get_label(): line for ax in time_axes + ratio_axes for line in ax.get_lines() if line.get_label()
               in VARIANT_COLORS}  # fmt: skip
    order = [name for name in VARIANT_COLORS if name in handles]
    rows = -(-len(order) // max(2, int(fig.get_figwidth() / LEGEND_ENTRY_WIDTH)))  # as the figure's width holds
    fig.legend([handles[n] for n in order], order, loc="outside upper center", ncol=-(-len(order) // rows), fontsize=8)

    ax_l = fig.add_subplot(grid[:, -1])
    manual_losses, jax_losses = blog_loss_curves()
    steps = np.arange(1, len(manual_losses) + 1)
    ax_l.plot(steps, manual_losses, color=VARIANT_COLORS["manual"], lw=3, alpha=0.5, label="manual (NumPy)")
    ax_l.plot(steps, jax_losses, "--", color=VARIANT_COLORS["jit-step"], lw=1.2, label="JAX (jax.grad, lax.scan)")
    gap = float(np.max(np.abs(manual_losses - jax_losses)))
    ax_l.set_xscale("log")
    ax_l.set_yscale("log")
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("square loss")
    ax_l.set_title(f"the blog's AND example (2-4-1, float64)\nmax |Δ loss| = {gap:.1e}", fontsize=9)
    ax_l.grid(True, which="both", alpha=0.3)
    ax_l.legend(fontsize=8)
    return fig


def plot(result: dict, path: str) -> None:
    figure(result).savefig(path, dpi=110)


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
