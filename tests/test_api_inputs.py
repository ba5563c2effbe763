"""How the two sides read their inputs: one activation name for every layer, and a transposed w blamed on w."""

import numpy as np
import pytest

from fcgrad import manual, reference
from fcgrad.engine.problems import random_problem
from fcgrad.manual.errors import FcgradError

SIZES = (3, 5, 2)
# float64 round-off between two calls of the same jitted function on the same inputs: measured 0.0;
# the bound only keeps the comparison off exact float equality.
SAME_CALL_ABS_TOL = 1e-15


def _problem():
    p = random_problem(SIZES, batch=6, seed=1)
    return [dict(layer) for layer in p.params], p.x, p.t


def _assert_same_gradients(a: dict, b: dict) -> None:
    for i, (la, lb) in enumerate(zip(a["layers"], b["layers"])):
        for q in la:
            np.testing.assert_allclose(la[q], lb[q], rtol=0, atol=SAME_CALL_ABS_TOL, err_msg=f"layer {i} {q}")


def test_reference_gradients_take_one_activation_name_for_every_layer():
    params, x, t = _problem()
    one = reference.gradients(params, x, t, activations="tanh")
    each = reference.gradients(params, x, t, activations=["tanh", "tanh"])
    _assert_same_gradients(one, each)
    sigmoid = reference.gradients(params, x, t, activations="sigmoid")
    assert abs(sigmoid["loss"] - one["loss"]) > 1e-3, "the name must select the activation, not be ignored"


def test_reference_train_takes_one_activation_name_for_every_layer():
    params, x, t = _problem()
    one = reference.train(params, x, t, activations="relu", steps=3, record_params=False)
    each = reference.train(params, x, t, activations=("relu", "relu"), steps=3, record_params=False)
    np.testing.assert_allclose(one["losses"], each["losses"], rtol=0, atol=SAME_CALL_ABS_TOL)


@pytest.mark.parametrize(
    "activations,expected",
    [
        ("sigmod", ["activation of layer 0", "expected one of", "'sigmod'"]),
        (["sigmoid", "softplus"], ["activation of layer 1", "'softplus'"]),
        (["sigmoid"], ["expected one name for all layers or 2", "('sigmoid',)"]),
        (["tanh", "tanh", "tanh"], ["or 2 (one per layer)", "('tanh', 'tanh', 'tanh')"]),
    ],
    ids=["misspelt-name", "unknown-second-layer", "too-few-names", "too-many-names"],
)
@pytest.mark.parametrize("entry", ["gradients", "train"])
def test_reference_rejects_bad_activations_in_one_line(entry, activations, expected):
    params, x, t = _problem()
    with pytest.raises(ValueError) as info:
        getattr(reference, entry)(params, x, t, activations=activations)
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def _transposed(params, layer: int):
    params = [dict(p) for p in params]
    params[layer]["w"] = params[layer]["w"].T.copy()
    return params


@pytest.mark.parametrize(
    "sizes,layer,expected,received",
    [
        (SIZES, 0, "(3, 5)", "(5, 3)"),
        (SIZES, 1, "(5, 2)", "(2, 5)"),
        ((3, 5, 4, 2), 2, "(4, 2)", "(2, 4)"),
        ((3, 2), 0, "(3, 2)", "(2, 3)"),
    ],
    ids=["first-layer", "last-layer", "middle-of-three", "lone-layer"],
)
def test_transposed_w_is_reported_as_a_problem_of_w_naming_both_shapes(sizes, layer, expected, received):
    p = random_problem(sizes, batch=6, seed=2)
    with pytest.raises(FcgradError) as info:
        manual.gradients(_transposed(p.params, layer), p.x, p.t)
    message = str(info.value)
    assert message.startswith(f"layer {layer} w:"), message
    assert f"expected shape {expected}" in message and f"got {received}" in message, message
    assert "transpose" in message and "\n" not in message


def test_a_wrong_b_under_a_right_w_is_still_a_problem_of_b():
    params, x, t = _problem()
    params[0]["b"] = np.zeros((3, 1))  # b with as many rows as w (3, 5) has inputs: b is wrong, w is right
    with pytest.raises(FcgradError, match=r"^layer 0 b: expected shape \(5, 1\) to match w \(3, 5\), got \(3, 1\)"):
        manual.gradients(params, x, t)


def test_a_w_that_fits_neither_neighbour_names_the_rows_it_expected():
    params, x, t = _problem()
    params[1]["w"] = np.zeros((4, 3))  # neither (5, 2) nor its transpose
    with pytest.raises(FcgradError, match=r"^layer 1 w: expected 5 input rows .* got shape \(4, 3\)"):
        manual.gradients(params, x, t)


@pytest.mark.parametrize(
    "sizes,layer,expected,received",
    [(SIZES, 0, "(3, 5)", "(5, 3)"), (SIZES, 1, "(5, 2)", "(2, 5)"), ((3, 2), 0, "(3, 2)", "(2, 3)")],
    ids=["first-layer", "last-layer", "lone-layer"],
)
def test_reference_reports_a_transposed_w_as_a_problem_of_w(sizes, layer, expected, received):
    p = random_problem(sizes, batch=6, seed=2)
    with pytest.raises(ValueError) as info:
        reference.gradients(_transposed(p.params, layer), p.x, p.t, activations="sigmoid")
    message = str(info.value)
    assert message.startswith(f"layer {layer} w: expected shape {expected}"), message
    assert f"got {received}, its transpose" in message
