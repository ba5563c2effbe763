"""Tables of a benchmark result, and the project's performance goals, met or missed.

``python -m fcgrad.benchmarks.report RESULT.json [--markdown]`` prints them for a saved run.
"""

import argparse
import json

# The project's performance goals (each judged on ratios measured side by side in one run)
BLOG_MANUAL_VS_MINIMAL_MAX = 1.3  # blog's size: manual at most 1.3× the time of minimal-numpy
BLOG_FUSED_VS_MINIMAL_MAX = 1.1  # blog's size: jit-fused at most 1.1× the time of minimal-jax
BLOG_FUSED_SPEEDUP_MIN = 30.0  # blog's size: jit-fused at least 30× faster per step than manual
WIDE_FLOOR_RATIO_MIN = 0.9  # at the wide sizes: floor_ratio of at least 0.9
BLOG_SIZES = "2-4-1"
CPU_WIDE_SIZES = "1024-1024-1024"
GPU_WIDE_SIZES = ("4096-4096-4096", "8192-8192-8192")

COLUMNS = (
    "sizes",
    "N",
    "dtype",
    "variant",
    "backend",
    "device",
    "s/step",
    "IQR",
    "compile",
    "GFLOP/s",
    "floor",
    "x minimal",
    "vs manual",
)


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _cells(r: dict) -> list[str]:
    where = r["device"] + ("" if r.get("precision") in (None, "default") else f"/{r['precision']}")
    return [
        r["sizes"],
        str(r["batch"]),
        r["dtype"],
        r["variant"],
        r["backend"],
        where,
        fmt_time(r["step_s_median"]),
        fmt_time(r["step_s_iqr"]),
        fmt_time(r["compile_s"]),
        f"{r['gflops']:.3g}",
        _ratio(r["floor_ratio"]),
        _ratio(r.get("vs_minimal")),
        _ratio(r["speedup_vs_manual"]),
    ]


def text_table(rows: list[dict]) -> str:
    cells = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def _find(rows, **match) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def goals(rows: list[dict]) -> list[dict]:
    """Each of the project's performance goals that this run can judge: {goal, case, value, limit, met}."""
    out = []

    def add(goal, case, value, limit, met):
        out.append({"goal": goal, "case": case, "value": value, "limit": limit, "met": bool(met)})

    default = lambda r: r.get("precision") in (None, "default")  # noqa: E731
    for dtype in ("float64", "float32"):
        for m in _find(rows, variant="manual", sizes=BLOG_SIZES, dtype=dtype):
            ratio, limit = m.get("vs_minimal"), BLOG_MANUAL_VS_MINIMAL_MAX
            if ratio is not None:
                add("blog's size: manual <= 1.3x minimal-numpy", dtype, ratio, limit, ratio <= limit)
        for f in _find(rows, variant="jit-fused", sizes=BLOG_SIZES, dtype=dtype):
            case = f"{dtype} {f['device']}" + ("" if default(f) else f" {f['precision']}")
            ratio, limit = f.get("vs_minimal"), BLOG_FUSED_VS_MINIMAL_MAX
            if ratio is not None:
                add("blog's size: jit-fused <= 1.1x minimal-jax", case, ratio, limit, ratio <= limit)
            if f["speedup_vs_manual"] is not None and default(f):
                limit = BLOG_FUSED_SPEEDUP_MIN
                speedup = f["speedup_vs_manual"]
                add("blog's size: jit-fused >= 30x faster than manual", case, speedup, limit, speedup >= limit)
        for name in ("manual", "jit-step"):
            for r in _find(rows, variant=name, sizes=CPU_WIDE_SIZES, dtype=dtype, device="cpu"):
                add(
                    f"wide CPU: {name} floor_ratio >= 0.9",
                    f"{CPU_WIDE_SIZES} {dtype}",
                    r["floor_ratio"],
                    WIDE_FLOOR_RATIO_MIN,
                    r["floor_ratio"] >= WIDE_FLOOR_RATIO_MIN,
                )
        for sizes in GPU_WIDE_SIZES:
            for name in ("jit-step", "jit-fused"):
                for r in _find(rows, variant=name, sizes=sizes, dtype=dtype, device="gpu"):
                    case = f"{sizes} {dtype}" + (f" {r['precision']}" if r.get("precision") else "")
                    add(
                        f"wide GPU: {name} floor_ratio >= 0.9",
                        case,
                        r["floor_ratio"],
                        WIDE_FLOOR_RATIO_MIN,
                        r["floor_ratio"] >= WIDE_FLOOR_RATIO_MIN,
                    )
    return out


# Other work already running when the benchmark starts: a 1-minute load average of half a process per core or
# more. Every timed variant uses all the cores (BLAS threads, XLA's pool), so from there on it shares them and its
# times, and every goal judged on them, are the load's as much as the code's. Half: a quiet machine here reads
# 0.0-0.3 per core, and two people's test suites on the 2-core VM read 1-2 per core.
BUSY_LOAD_PER_CORE = 0.5


def load_text(machine: dict | None) -> str:
    """The machine's load around the run, as the JSON keeps it, and when it was busy, what that means for the goals.
    Empty when the run kept no load (an older JSON, a platform without ``os.getloadavg``)."""
    machine = machine or {}
    start, end, cores = machine.get("loadavg_at_start"), machine.get("loadavg_at_end"), machine.get("cpu_count")
    if not start or not cores:
        return ""
    at_end = f", {end[0]:.2f} at the end" if end else ""
    line = f"the machine's 1-minute load average: {start[0]:.2f} at the start{at_end}, on {cores} cores"
    if start[0] < BUSY_LOAD_PER_CORE * cores:
        return line
    return (
        f"{line}: the machine was busy before the run began (≥ {BUSY_LOAD_PER_CORE:g} per core), so these times "
        "are shared with other work and a goal MISSED here may be the load's, not the code's; rerun on a quiet machine"
    )


def goals_text(rows: list[dict], machine: dict | None = None) -> str:
    """Each goal met or MISSED; then the machine's load (``result["machine"]``), which every timing depends on."""
    lines = ["the project's performance goals:"]
    for g in goals(rows):
        verdict = "met   " if g["met"] else "MISSED"
        lines.append(f"  {verdict}  {g['goal']:<48} {g['case']:<28} {g['value']:.3g} (limit {g['limit']:g})")
    load = load_text(machine)
    return "\n".join(lines + ([load] if load else []))


def device_text(rows: list[dict]) -> str:
    """Where one run has JAX rows on a GPU and on the CPU: GPU time / CPU time per variant (> 1: the GPU is slower)."""
    lines = []
    for r in rows:
        if r["backend"] != "jax" or r["device"] != "gpu" or r.get("precision") not in (None, "default"):
            continue
        same = {"variant": r["variant"], "sizes": r["sizes"], "batch": r["batch"], "dtype": r["dtype"]}
        cpu = _find(rows, backend="jax", device="cpu", **same)
        if cpu:
            ratio = r["step_s_median"] / cpu[0]["step_s_median"]
            case = f"{r['sizes']} N={r['batch']} {r['dtype']} {r['variant']}"
            lines.append(
                f"  {case:<44} gpu {fmt_time(r['step_s_median']):>9}  cpu {fmt_time(cpu[0]['step_s_median']):>9}"
                f"  gpu/cpu {ratio:.3g}"
            )
    if not lines:
        return ""
    return "\n".join(
        ["JAX on the GPU against JAX on the host CPU (time per step; gpu/cpu > 1: the GPU is slower):", *lines]
    )


def drift_text(drift: list[dict]) -> str:
    lines = []
    for d in drift:
        lines.append(f"gradient drift, {d['sizes']} N={d['batch']}, against {d['against']}:")
        for e in d["entries"]:
            label = (
                f"{e['impl']} {e['dtype']}" + (f" {e['precision']}" if e["precision"] else "") + f" on {e['device']}"
            )
            lines.append(f"  {label:<36} loss rel {e['loss']['rel']:.1e}   worst rel {e['worst_rel']:.1e}")
            for r in e["layers"]:
                lines.append(
                    f"      layer {r['layer']} {r['quantity']:<11} max|Δ| {r['max_abs']:.1e}  rel {r['rel']:.1e}"
                )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fcgrad.benchmarks.report", description="tables of a saved benchmark run"
    )
    parser.add_argument("result", help="a JSON file written by python -m fcgrad.benchmarks --json")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table instead of plain text")
    args = parser.parse_args(argv)
    with open(args.result) as f:
        result = json.load(f)
    rows = result["rows"]
    print(markdown_table(rows) if args.markdown else text_table(rows))
    if result.get("drift"):
        print()
        print(drift_text(result["drift"]))
    if device_text(rows):
        print()
        print(device_text(rows))
    print()
    print(goals_text(rows, result.get("machine")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
