"""Compared rows as text: the one table every report prints them in (check, sharded, toolbox, digits).

It lives beside ``Row`` rather than in ``fcgrad.reports`` so that the engine's own runners (the digits
example) print their rows the same way without reaching up into the reports.
"""

from fcgrad.engine.compare import Row


def layer_label(row: Row) -> str:
    """The layer column: its index, or ``all`` for a row over the whole network."""
    return "all" if row.layer < 0 else str(row.layer)


def _result(r: Row) -> str:
    if r.ok:
        return "ok"
    return "MISMATCH" if r.first_bad_step is None else f"MISMATCH from step {r.first_bad_step}"


def table(title: str, rows: list[Row], limit_name: str = "tol") -> str:
    """``title``, a header, then one line per row: layer, quantity, max|Δ|, rel, its limit, (rule,) result."""
    show_rule = any(r.rule != "rel" for r in rows)
    rule_head = f"{'rule':<8}" if show_rule else ""
    lines = [title, f"  {'layer':<6}{'quantity':<12}{'max|Δ|':>10}{'rel':>10}{limit_name:>10}  {rule_head}result"]
    for r in rows:
        rule = f"{r.rule:<8}" if show_rule else ""
        lines.append(
            f"  {layer_label(r):<6}{r.quantity:<12}{r.max_abs_err:>10.1e}{r.rel_err:>10.1e}{r.tol:>10.1e}  {rule}"
            + _result(r)
        )
    return "\n".join(lines)
