"""Matt Mazur, "A Step by Step Backpropagation Example" (2015), against its published figures.

https://mattmazur.com/2015/03/17/a-step-by-step-backpropagation-example/
A 2-2-2 sigmoid network, one sample (0.05, 0.10) with targets (0.01, 0.99), square loss,
lr 0.5, biases 0.35 and 0.60 shared by each layer's units and never trained. The post's
hidden-layer update uses the original (pre-update) output weights, as ours does. Its
w1..w8 map onto the ``(in, out)`` layout as layer 0 ``[[w1, w3], [w2, w4]]`` and layer 1
``[[w5, w7], [w6, w8]]`` (see fcgrad.engine.problems.mazur_example).
"""

import numpy as np
import pytest

from fcgrad import manual, reference
from fcgrad.engine.problems import mazur_example

# The post's forward pass and total error (its "The Forward Pass" section).
OUT_H1, OUT_H2 = 0.593269992, 0.596884378
OUT_O1, OUT_O2 = 0.75136507, 0.772928465
E_TOTAL = 0.298371109
# The post's weights after one update (its "The Backwards Pass" section).
W_AFTER_ONE_STEP = {
    "w1": 0.149780716, "w2": 0.19956143, "w3": 0.24975114, "w4": 0.29950229,
    "w5": 0.35891648, "w6": 0.408666186, "w7": 0.511301270, "w8": 0.561370121,
}  # fmt: skip
# The post prints 8 or 9 significant digits, rounded: half a unit of the 8th decimal is 5e-9.
MAZUR_ABS_TOL = 1e-8

# After 10,000 steps the post reports "the error plummets to 0.0000351085" and outputs
# 0.015912196 (target 0.01) and 0.984065734 (target 0.99).
E_AFTER_10000 = 0.0000351085
E_AFTER_10000_ROUNDING = 0.5e-10  # half a unit of the last of its 6 significant digits
OUT_AFTER_10000 = (0.015912196, 0.984065734)
# Our loss at step index 9999 (the 10,000th forward pass) is 3.510854812e-05, matching the
# post's error to all 6 digits it prints. Our outputs are 0.01591419 / 0.98406371 at those
# parameters and 0.01591362 / 0.98406427 after the 10,000th update: the post's outputs differ
# from both in the 6th decimal (about 2e-6), and they do not fit the post's own error either:
# ½[(0.015912196 − 0.01)² + (0.984065734 − 0.99)²] = 3.50848e-05, not 3.51085e-05. They come
# from an earlier version of the post's code, not from the run it describes.
# So the error is asserted to its published digits and the outputs only to this bound.
OUT_AFTER_10000_ABS_TOL = 5e-6


def _weights(params) -> dict[str, float]:
    (w1, w3), (w2, w4) = params[0]["w"]
    (w5, w7), (w6, w8) = params[1]["w"]
    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5, "w6": w6, "w7": w7, "w8": w8}


def _close(a, b, tol) -> bool:
    return bool(np.all(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) <= tol))


def test_forward_matches_the_post():
    p = mazur_example()
    y, caches = manual.forward(p.params, p.x, p.activations)
    assert _close(caches[0].y[:, 0], [OUT_H1, OUT_H2], MAZUR_ABS_TOL)
    assert _close(y[:, 0], [OUT_O1, OUT_O2], MAZUR_ABS_TOL)
    with reference.x64_for("float64"):
        params, x, _ = reference.as_jax(p.params, p.x, p.t, "float64")
        y_jax = np.asarray(reference.forward(params, x, p.activations))
    assert _close(y_jax[:, 0], [OUT_O1, OUT_O2], MAZUR_ABS_TOL)


def test_total_error_matches_the_post():
    # the post's E_total = Σ ½(target − out)², one sample: our Σ (y − t)² / N / 2 with N = 1
    p = mazur_example()
    assert abs(manual.gradients(p.params, p.x, p.t, activations=p.activations).loss - E_TOTAL) <= MAZUR_ABS_TOL
    ref = reference.gradients(p.params, p.x, p.t, activations=p.activations)
    assert abs(ref["loss"] - E_TOTAL) <= MAZUR_ABS_TOL


@pytest.mark.parametrize("side", ["manual", "jax"])
def test_one_step_weights_match_the_post(side):
    p = mazur_example()
    common = dict(activations=p.activations, loss=p.loss, lr=p.lr, steps=1, trainable=p.trainable)
    if side == "manual":
        final = manual.train(p.params, p.x, p.t, **common).final
    else:
        final = reference.train(p.params, p.x, p.t, **common)["final"]
    got = _weights(final)
    wrong = {k: (got[k], v) for k, v in W_AFTER_ONE_STEP.items() if abs(got[k] - v) > MAZUR_ABS_TOL}
    assert not wrong, f"(ours, the post's): {wrong}"
    for layer, init in zip(final, p.params):
        assert np.array_equal(layer["b"], init["b"])  # untrained: the same numbers, no arithmetic done


@pytest.mark.parametrize("side", ["manual", "reference"])
def test_after_10000_steps_error_matches_the_post(side, example_check):
    report = example_check("mazur")  # both sides trained freely for 10,000 steps (the global rule), run once
    p, h = report.problem, report.histories
    assert p.steps == 10_000 and report.rule == "global"
    losses = h[f"loss_{side}"]
    history = [{key: h[f"{key}{i}_{side}"] for key in ("w", "b")} for i in range(len(p.params))]
    assert abs(losses[9999] - E_AFTER_10000) <= E_AFTER_10000_ROUNDING
    for k in (9999, 10_000):  # the parameters of the 10,000th forward pass, and after the 10,000th update
        params = [{key: layer[key][k] for key in ("w", "b")} for layer in history]
        y, _ = manual.forward(params, p.x, p.activations)
        assert _close(y[:, 0], OUT_AFTER_10000, OUT_AFTER_10000_ABS_TOL)
