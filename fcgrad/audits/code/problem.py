"""The problem ``audit --code`` runs a file on, and whether it can tell right from wrong.

Unless a problem is given, the audit draws one for the file's widths: X ~ N(0, 1) of N = 8 samples, the
targets of the file's loss (one-hot classes, every class the batch can hold present at least twice over
for a classifier; uniform in (0, 1) otherwise), random parameters. A problem *discriminates* when a
mistake in the backward must change a number the audit compares:

- N > 1, so that a missing or doubled 1/N changes the gradients;
- a classifier's targets hold at least two classes (one class: softmax's gradients are all 0);
- no layer's gradient is all 0 (every unit dead, or an output that cannot move the loss);
- not every unit of a sigmoid or tanh layer saturated on every sample (f'(z) ≈ 0 hides any formula of it).

``reasons(p, ref)`` lists what fails; an audit on such a problem says so, and ``--strict`` exits 1.
"""

from dataclasses import replace

import numpy as np

from fcgrad.engine.problems import CLASS_LOSSES, Problem
from fcgrad.manual.network import forward

BLOG_SIZES = (2, 4, 1)  # the widths of the problem drawn for a file that says none: the blog's network
# A sigmoid or tanh unit with |z| beyond this has f'(z) < 2e-6 (sigmoid: e^-13 ≈ 2.3e-6; tanh: 4e^-26), below
# the gradient's rounding relative to its other terms: a wrong formula of f' changes nothing measurable there.
SATURATED_Z = 13.0


def with_classes(p: Problem, seed: int) -> Problem:
    """``p`` with one-hot targets in which every class appears, as far as N allows (N ≥ 2 classes: two at least)."""
    n_out, n = p.t.shape
    rng = np.random.default_rng(seed)
    labels = np.resize(rng.permutation(n_out), n)  # every class once before any twice
    rng.shuffle(labels)
    return replace(p, t=np.eye(n_out)[:, labels])


def reasons(p: Problem, ref: dict) -> list[str]:
    """What keeps ``p`` from telling a right backward from a wrong one; [] when it discriminates."""
    out = []
    if p.batch < 2:
        out.append("N = 1: a missing 1/N changes nothing (expected N ≥ 2)")
    if p.loss in CLASS_LOSSES:
        classes = np.unique(np.argmax(p.t, axis=0)).size
        if p.t.shape[0] < 2:
            out.append(f"a {p.loss} classifier with one output: every gradient is 0 (expected two classes or more)")
        elif classes < 2:
            out.append(f"the targets hold one class of {p.t.shape[0]}: expected two or more")
    for i, layer in enumerate(ref["layers"]):
        if not np.any(layer["grad_w"]) and not np.any(layer["grad_b"]):
            out.append(f"layer {i}'s gradients are all 0: no mistake there can show")
    _, caches = forward(p.params, p.x, p.activations)
    for i, (act, c) in enumerate(zip(p.activations, caches)):
        if act in ("sigmoid", "tanh") and np.all(np.abs(c.z) > SATURATED_Z):
            out.append(f"layer {i}'s {act} units are all saturated (|z| > {SATURATED_Z:g}): f'(z) ≈ 0 hides f'")
    return out
