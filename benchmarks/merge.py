"""``python -m fcgrad.benchmarks.merge BASE.json NEW.json OUT.json``: a partial rerun merged into an earlier run.

Every (sizes, batch, dtype) measured in NEW replaces that workload's rows of BASE; each ratio
is recomputed within its own workload, so every ratio still compares numbers of one run.
NEW's drift replaces BASE's where NEW has one. ``merged_from`` records both runs' dates.
"""

import argparse
import json

from fcgrad.benchmarks import report
from fcgrad.benchmarks.suite import add_ratios


def merge(base: dict, new: dict) -> dict:
    case = lambda r: (r["sizes"], r["batch"], r["dtype"])  # noqa: E731
    replaced = {case(r) for r in new["rows"]}
    rows = [dict(r) for r in base["rows"] if case(r) not in replaced] + [dict(r) for r in new["rows"]]
    order = {c: i for i, c in enumerate(dict.fromkeys(case(r) for r in base["rows"] + new["rows"]))}
    rows.sort(key=lambda r: order[case(r)])
    add_ratios(rows)
    merged = {**base, "rows": rows, "goals": report.goals(rows)}
    label = lambda c: f"{c[0]} N={c[1]} {c[2]}"  # noqa: E731
    kept = {case(r) for r in base["rows"]} - replaced
    merged["merged_from"] = [
        {"date": run.get("date"), "device": run.get("device"), "workloads": sorted(label(c) for c in cases)}
        for run, cases in ((base, kept), (new, replaced))
    ]
    if new.get("drift"):
        merged["drift"] = new["drift"]
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fcgrad.benchmarks.merge", description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    with open(args.base) as f:
        base = json.load(f)
    with open(args.new) as f:
        new = json.load(f)
    with open(args.out, "w") as f:
        json.dump(merge(base, new), f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
