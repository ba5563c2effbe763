"""The text of a ``ShardedReport``: every row names its side pair, layer and quantity (its JSON: ``RunReport``)."""

from fcgrad.engine.sharded import MISTAKES, ShardedReport
from fcgrad.reports.check import describe, table

TITLES = {
    "gradients": "gradients at the initial parameters (rel = ‖Δ‖/‖baseline‖)",
    "trajectory": "trajectory at every one of {steps} steps (tol scaled by max(1, max|param|))",
    "replicas": "replica parameters at every step, each against replica 0",
}


def text(report: ShardedReport) -> str:
    p = report.problem
    kind = report.devices[0].platform
    sizes = ", ".join(map(str, report.shard_sizes))
    parts = [
        f"fcgrad check --devices {len(report.devices)} — {describe(p)}",
        f"{len(report.devices)} {kind} device(s); the N={p.batch} columns in shards of {sizes}",
    ]
    for c in report.comparisons:
        parts += ["", table(f"{c.pair}: {TITLES[c.what].format(steps=p.steps)}", c.rows)]
    parts.append("")
    for f in report.findings:
        at = f" (first after step {f.step})" if f.step is not None else ""
        parts.append(f"FOUND {f.mistake} in {f.side}{at}: {f.detail} ({MISTAKES[f.mistake]})")
    if report.ok:
        parts.append(
            f"OK: all five sides agree (gradients and every one of {p.steps} steps) over {len(report.devices)} devices"
        )
    else:
        bad = ", ".join(
            f"{pair} layer {'all' if r.layer < 0 else r.layer} {r.quantity}" for pair, r in report.failures()
        )
        parts.append(f"FAILED: {len(report.failures())} mismatch(es): {bad}")
    return "\n".join(parts)
