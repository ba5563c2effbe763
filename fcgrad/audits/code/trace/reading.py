"""The file's step read in its own names: each statement that computed a backward quantity, and what it is.

One entry per statement and name it assigned (``line 41 `delta` = ∂L/∂z of layer 1 ✓``), in the order the
step first ran it: a statement run once per sample or per layer reads as the quantities it made, each once.
The worst of its records decides its mark: an origin (✗), a value that carries an origin's error (inherited
from that line), else right.
"""

from pathlib import Path

from fcgrad.audits.code.trace.match import INHERITED, OK, ORIGIN, WORDS, Trace

RANK = {OK: 0, INHERITED: 1, ORIGIN: 2}


def reading(trace: Trace | None) -> list[dict]:
    """``[{file, line, target, statement, is, per_sample, status, from_line}]`` for every statement whose value is a
    backward quantity (right, an origin, or inherited), in the order the step first ran it."""
    if trace is None:
        return []
    entries: dict[tuple, dict] = {}
    for line in trace.lines:
        q, r = line.quantity, line.record
        known = q is not None and q.backward
        if line.status not in RANK or not (known or (line.status == INHERITED and r.value.size > 1)):
            continue
        key = (r.file, r.line, r.target)
        entry = entries.setdefault(key, _entry(r))
        if known:
            words = f"{WORDS[q.name]} of layer {q.layer}"
            if words not in entry["is"]:
                entry["is"].append(words)
            entry["per_sample"] |= q.sample is not None
        if RANK[line.status] > RANK[entry["status"]]:
            entry["status"] = line.status
            entry["from_line"] = line.origin.record.line if line.status == INHERITED and line.origin else None
    return list(entries.values())


def _entry(r) -> dict:
    return {
        "file": r.file,
        "line": r.line,
        "target": r.target,
        "statement": r.statement,
        "is": [],
        "per_sample": False,
        "status": OK,
        "from_line": None,
    }


def reading_lines(trace: Trace | None) -> list[str]:
    """The reading as text, one statement a line."""
    out = []
    for e in reading(trace):
        mark = {OK: "✓", ORIGIN: "✗ origin", INHERITED: f"carries line {e['from_line']}'s error"}[e["status"]]
        sample = " (one sample at a time)" if e["per_sample"] else ""
        what = f" = {' / '.join(e['is'])}" if e["is"] else ""
        out.append(f"  {Path(e['file']).name}:{e['line']} `{e['target']}`{what}{sample} {mark}")
    return out
