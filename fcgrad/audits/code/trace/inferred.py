"""A file's model read off the arrays its step computed: each layer's activation, from the input up.

For a step that runs its own forward inline (``step(params, X, T, lr)``), nothing but its values says what
it computes. From X, layer l's z = wᵀ·a + b (the blog's layout) is computed here; the layer's output is the
array the file computed that equals f(z) for one of the library's activations, in any orientation, and it
is the input of the layer above. The top layer may hand its z to a softmax (or a sigmoid) that belongs to
the loss: its output is then z itself, the library's cross-entropy (or bce-logits) taking the rest.
"""

import numpy as np

from fcgrad.audits.code.own import own_names
from fcgrad.audits.code.trace.match import orientations
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.testing.record import Record

# An activation the file computes equals the library's at the same z to a few ulps (measured rel ≤ 4e-16 on the
# step fixtures); 1e-9 tells the library's four apart and lets no other function through.
FORWARD_MATCH_TOL = 1e-9
ORDER = ("sigmoid", "tanh", "relu", "identity")  # identity last: a recorded z is no output when f(z) is recorded too


def _close(a, b) -> bool:
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    return a.shape == b.shape and float(np.max(np.abs(a - b), initial=0.0)) <= FORWARD_MATCH_TOL * scale


def _softmax(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _sigmoid(z):
    return ACTIVATIONS["sigmoid"].forward(z)


def _seen(values: list[np.ndarray], want: np.ndarray) -> bool:
    return any(_close(a, want) for v in values for a in orientations(v, want.shape))


def _feeding(values: list[np.ndarray], z: np.ndarray, params: list[dict], i: int, names, fed: bool = True):
    """The first of ``names`` whose f(z) the file computed and, below the top with ``fed``, whose value the next
    layer's z was then computed from (a derivative the backward computes, σ(z) for softplus, is seen too but feeds
    nothing); None if none."""
    seen = [f for f in names if _seen(values, ACTIVATIONS[f].forward(z))]
    if not fed or i + 1 == len(params):
        return seen[0] if seen else None
    for f in seen:
        nxt = params[i + 1]["w"].T @ ACTIVATIONS[f].forward(z) + params[i + 1]["b"]  # (out, N) of the layer above
        if _seen(values, nxt):
            return f
    return None


def read_forward(records: list[Record], params: list[dict], x: np.ndarray) -> tuple[tuple[str, ...], str | None] | None:
    """(each layer's activation, the output function the loss takes: ``softmax``, ``sigmoid`` or None), or None.

    ``params`` and ``x`` in the blog's layout, as the step was given them.
    """
    values = [r.value for r in records if r.value.size >= 2]
    a, acts, top = np.asarray(x, np.float64), [], len(params) - 1
    with np.errstate(over="ignore", invalid="ignore"):
        for i, layer in enumerate(params):
            z = layer["w"].T @ a + layer["b"]  # (out, in)·(in, N) + (out, 1)
            found = _feeding(values, z, params, i, ORDER)
            if found is None or (found == "identity" and i < top):  # the file's own functions, before z itself
                found = _feeding(values, z, params, i, own_names()) or found
            if found is None:  # computed, though nothing recorded shows the layer above reading it
                found = _feeding(values, z, params, i, ORDER, False)
                found = found or _feeding(values, z, params, i, own_names(), False)
            if i == top:
                for output, f in (("softmax", _softmax), ("sigmoid", _sigmoid)):
                    if z.shape[0] > 1 or output == "sigmoid":
                        if found in (None, "identity") and _seen(values, f(z)):
                            return (*acts, "identity"), output
                if found == "sigmoid" and _seen(values, _sigmoid(z)):
                    return (*acts, "sigmoid"), None
            if found is None:
                return None
            acts.append(found)
            a = ACTIVATIONS[found].forward(z)
    return tuple(acts), None
