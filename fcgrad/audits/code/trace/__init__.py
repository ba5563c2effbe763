"""The file's training step, traced: every array it assigns matched to the quantity it should be.

``recording(folder)`` (``fcgrad.testing.record``, the recorder the layer helper uses too) keeps every array
the user's files assign while one step runs; ``trace_of`` matches each record by value to the quantities of
step 0 (``quantities``, ``match``), so that each mistake is reported at the first statement whose inputs are
right and whose value is not, in the file's own names.
"""

from dataclasses import replace

import numpy as np

from fcgrad.audits.code.layout import Layout
from fcgrad.audits.code.trace.match import (
    INHERITED,
    OK,
    ORIGIN,
    OWN,
    Line,
    Matcher,
    Trace,
    analyse,
    judge_updates,
    place_arguments,
)
from fcgrad.audits.code.trace.quantities import batch, output_probabilities
from fcgrad.manual.network import forward
from fcgrad.testing.record import Record, recording

__all__ = ["INHERITED", "OK", "ORIGIN", "OWN", "Line", "Record", "Trace", "recording", "trace_of"]


def contexts_for(p, ref: dict, caches, scale: float):
    """(layer, sample) -> the catalogue's context of that layer (blog layout), at the file's loss scale."""
    top = len(p.params) - 1
    memo = {}

    def ctx(i: int, n: int | None) -> dict:
        if (i, n) in memo:
            return memo[(i, n)]
        c = caches[i]
        up = ref["residual_y"] if i == top else ref["layers"][i + 1]["residual_x"]
        full = {
            "x": c.x,
            "z": c.z,
            "y": c.y,
            "upstream": scale * up,
            "residual_z": scale * ref["layers"][i]["residual_z"],
        }
        others = [("the network's input X", p.x)] if i > 0 else []
        others += [(f"layer {k}'s output", caches[k].y) for k in range(top + 1) if k not in (i, i - 1)]
        probabilities = output_probabilities(p, caches[top].y)
        if i == top and probabilities is not None:  # the output the file computes, its loss's softmax or sigmoid
            others.append((f"the layer's output {probabilities[0]}", probabilities[1]))
        if n is not None:
            full = {k: v[:, [n]] * (p.batch if k in ("upstream", "residual_z") else 1.0) for k, v in full.items()}
            others = [(words, a[:, [n]]) for words, a in others]
        grad_w = full["x"] @ full["residual_z"].T  # (in, N)·(N, out)
        memo[(i, n)] = {
            **full,
            "n": 1 if n is not None else p.batch,
            "lr": p.lr,
            "w": p.params[i]["w"],
            "grad_w": grad_w,
            "activation": p.activations[i],
            "others": tuple(others),
            "read_from_update": False,
        }
        return memo[(i, n)]

    return ctx


def unfolded(p, ref: dict):
    """A model whose top sigmoid was folded into bce-logits, as the file computes it: the top layer's output
    a = σ(z) and its loss's residual ∂L/∂a = ∂L/∂z / σ'(z), for the file's values to be read against."""
    acts = (*p.activations[:-1], "sigmoid")
    _, caches = forward(p.params, p.x, acts)
    a = caches[-1].y
    with np.errstate(divide="ignore", invalid="ignore"):
        return replace(p, activations=acts), {**ref, "residual_y": ref["residual_y"] / (a * (1 - a))}


def trace_of(
    records: list[Record], p, ref: dict, layout: Layout, scale: float = 1.0, after=None, output: str | None = None
) -> Trace:
    """The records of one step of the file at ``p.params`` on ``p.x``, matched (``scale``: its loss's factor;
    ``after``: the parameters the step left, the blog's layout, to judge the statements that wrote them;
    ``output``: ``"sigmoid"`` where the file's output is σ of the model's, folded into its bce-logits loss)."""
    if output == "sigmoid":
        p, ref = unfolded(p, ref)
    _, caches = forward(p.params, p.x, p.activations)
    quantities = batch(p, ref, caches, scale)
    matcher = Matcher(quantities, p, layout, scale, contexts_for(p, ref, caches, scale))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        trace = analyse(records, matcher, layout.give("data", p.x))
        if after is not None:
            mine = [{"w": layout.give("weight", a["w"]), "b": layout.give("bias", a["b"])} for a in p.params]
            new = [{"w": layout.give("weight", a["w"]), "b": layout.give("bias", a["b"])} for a in after]
            judge_updates(trace, mine, new, matcher)
    place_arguments(trace)
    return trace
