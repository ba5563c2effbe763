"""The catalogue on a network's rows: the context of a (layer, quantity), and names for the failing rows of a check.

``diagnose_rows(p, rows)`` is what ``fcgrad check`` (and any other comparison by layer and
quantity) calls on its failing rows: it recomputes both sides' numbers at the problem's
initial parameters and returns ``{(layer, quantity): [Diagnosis, ...]}`` for the rows that match
an entry of the catalogue. Rows that pass are never diagnosed.
"""

from fcgrad import manual, reference
from fcgrad.diagnosis.catalogue import Context, Diagnosis, diagnose
from fcgrad.manual.network import forward


def network_context(problem, ref: dict, layer: int, quantity: str, params=None) -> Context:
    """The context of one (layer, quantity) of a network problem at ``params`` (default: its initial ones).

    ``ref`` is ``reference.gradients`` at the same parameters; x, z, y come from the forward; ``others``
    holds the inputs and outputs of the other layers (a grad_w computed from the wrong one is named).
    """
    params = problem.params if params is None else params
    _, caches = forward(params, problem.x, problem.activations)
    top = len(params) - 1
    cache = caches[layer]
    g = ref["layers"][layer]
    upstream = ref["residual_y"] if layer == top else ref["layers"][layer + 1]["residual_x"]
    others = [("the network's input X", caches[0].x)] if layer > 0 else []
    others += [(f"layer {k}'s output", c.y) for k, c in enumerate(caches) if k not in (layer - 1, layer)]
    return Context(
        quantity=quantity,
        n=problem.batch,
        lr=problem.lr,
        x=cache.x,
        z=cache.z,
        y=cache.y,
        w=params[layer]["w"],
        upstream=upstream,
        residual_z=g["residual_z"],
        grad_w=g["grad_w"],
        activation=problem.activations[layer],
        others=tuple(others),
    )


def diagnose_rows(p, rows, params=None) -> dict[tuple[int, str], list[Diagnosis]]:
    """Catalogue names for the failing gradient rows (residual_y, residual_z, grad_w, grad_b, residual_x) of ``p``."""
    wanted = [r for r in rows if not r.ok and (r.quantity in manual.QUANTITIES or r.quantity == "residual_y")]
    if not wanted:
        return {}
    params = p.params if params is None else params
    m = manual.gradients(params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    ref = reference.gradients(params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    out = {}
    for r in wanted:
        if r.quantity == "residual_y":
            found = diagnose(m.residual_y, ref["residual_y"], Context(quantity="residual_y", n=p.batch, lr=p.lr))
        else:
            ctx = network_context(p, ref, r.layer, r.quantity, params)
            found = diagnose(getattr(m.layers[r.layer], r.quantity), ref["layers"][r.layer][r.quantity], ctx)
        if found:
            out[(r.layer, r.quantity)] = found
    return out


__all__ = ["diagnose_rows", "network_context"]
