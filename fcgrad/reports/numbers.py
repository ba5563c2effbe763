"""Numbers as a report states them: never a negative zero.

IEEE arithmetic gives −0.0 for, say, ``max(max d, −min d)`` over a difference that is exactly zero; a report
that printed ``-0.0`` or ``-0.0e+00`` would state a sign no measurement has. Every JSON the commands write passes
through ``without_negative_zero``; the rows of the tables normalise their own numbers (``engine.compare.Row``).
"""


def without_negative_zero(value):
    """``value`` (JSON-shaped: dicts, lists, tuples, numbers, strings, None) with every −0.0 made 0.0."""
    if isinstance(value, float):
        return value + 0.0  # −0.0 + 0.0 is +0.0; every other float (NaN, inf included) is unchanged
    if isinstance(value, dict):
        return {k: without_negative_zero(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_negative_zero(v) for v in value]
    return value
