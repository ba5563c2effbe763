"""The layer helper in the four layouts: each passes a correct layer as written, and names a wrong one in its terms.

Layers as users write them: the blog's (x (in, N), w (in, out)), the Coursera course's (w (out, in),
A (n, m)), a per-sample textbook's with samples by row (x (N, in), w (in, out)), and PyTorch's
(x (N, in), w (out, in), ``x @ w.T + b``), each with ``weights=`` and ``samples=`` declared once.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from test_diagnosis_mistakes import GRAD_B, GRAD_W, LAYOUT_IDS, LAYOUTS, RESIDUAL_X, Z

from fcgrad.manual.errors import FcgradError
from fcgrad.testing import assert_backward_matches


def shapes_in(view, n_in=3, n_out=4, n=6) -> dict:
    return {
        "x": (n, n_in) if view.rows else (n_in, n),
        "w": (n_in, n_out) if view.weights == "in,out" else (n_out, n_in),
        "b": (n_out,) if view.rows else (n_out, 1),
    }


def layer(view, plant=None):
    """(forward, backward) of a tanh layer written in ``view``'s layout; ``plant`` chooses one mistake."""
    key = (view.weights, view.samples)

    def forward(x, w, b):
        return jnp.tanh(Z[key](x, w, b))

    def backward(residual_y, x, w, b):
        y = np.tanh(Z[key](x, w, b))  # like z
        residual_z = residual_y * (1 - y * y)  # like z: tanh' = 1 − y²
        grads = {
            "residual_x": RESIDUAL_X[key](w, residual_z),
            "grad_w": GRAD_W[key](y if plant == "grad_w_from_output" else x, residual_z),
            "grad_b": GRAD_B[view.samples](residual_z),
        }
        if plant == "activation_derivative_dropped":
            grads["residual_x"] = RESIDUAL_X[key](w, residual_y)
        if plant == "transposed":
            grads["grad_w"] = grads["grad_w"].T
        if plant == "one_by_out_bias":
            grads["grad_b"] = grads["grad_b"].reshape(1, -1)
        return {**grads, "residual_z": residual_z}

    return forward, backward


@pytest.mark.parametrize("view", LAYOUTS, ids=LAYOUT_IDS)
def test_a_correct_layer_passes_in_its_own_layout(view):
    forward, backward = layer(view)
    checks = assert_backward_matches(forward, backward, shapes_in(view), weights=view.weights, samples=view.samples)
    assert [c.name for c in checks] == ["residual_x", "grad_w", "grad_b"] and all(c.ok for c in checks)


# the statement each of these plants is made in, as the trace of a failing backward quotes it
TRACED = {
    "activation_derivative_dropped": 'grads["residual_x"] = RESIDUAL_X[key](w, residual_y)',
    "transposed": 'grads["grad_w"] = grads["grad_w"].T',
}


@pytest.mark.parametrize("view", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize(
    "plant, row, words",
    [
        ("grad_w_from_output", "grad_w", "looks like grad_w computed from the layer's output y"),
        ("activation_derivative_dropped", "residual_x", "looks like the activation's derivative dropped"),
        ("transposed", "grad_w", "looks like a transposed result: manual is JAX's"),
    ],
    ids=["grad_w-from-output", "derivative-dropped", "transposed-shape"],
)
def test_a_planted_mistake_is_named_on_its_row_in_the_users_layout(view, plant, row, words):
    forward, backward = layer(view, plant)
    n_in = 4 if plant == "grad_w_from_output" else 3  # y stands where x belongs when in = out
    shapes = shapes_in(view, n_in=n_in, n_out=4)
    with pytest.raises(AssertionError) as failure:
        assert_backward_matches(forward, backward, shapes, weights=view.weights, samples=view.samples)
    message = str(failure.value)
    rows = [line for line in message.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    failing = [line.split()[0] for line in rows if not line.startswith("  line ")]  # not the traced lines
    assert failing == [row], message
    assert words in message, message
    if plant in TRACED:  # a mistake made in a statement of its own: the trace names that statement
        assert f"{TRACED[plant]}  (`" in message, message
    if plant == "transposed":
        assert f"JAX's {shapes['w']}ᵀ" in message  # the user's shape of w, not the blog's
    else:
        assert view.formula(row) in message, message


@pytest.mark.parametrize("view", LAYOUTS, ids=LAYOUT_IDS)
def test_the_largest_difference_is_at_the_users_index(view):
    forward, right = layer(view)

    def nudged(residual_y, x, w, b):
        out = right(residual_y, x, w, b)
        out["residual_x"] = out["residual_x"].copy()
        out["residual_x"][2, 1] += 0.5  # row 2, column 1 of the user's own array
        return out

    with pytest.raises(AssertionError, match=r"largest difference at index \(2, 1\)"):
        assert_backward_matches(forward, nudged, shapes_in(view), weights=view.weights, samples=view.samples)


def test_a_one_by_out_bias_gradient_is_accepted_by_row():
    view = LAYOUTS[3]  # out,in by row: PyTorch's
    forward, backward = layer(view, "one_by_out_bias")
    assert_backward_matches(forward, backward, shapes_in(view), weights="out,in", samples="rows")


def test_a_layout_the_shapes_do_not_fit_is_refused_with_the_one_they_fit():
    expected = (
        r"^shapes: x \(6, 3\), w \(4, 3\) and b \(4,\) do not make a layer with weights in,out, samples by column; "
        r"they do with weights out,in, samples by row: pass weights='out,in', samples='rows'$"
    )
    forward, backward = layer(LAYOUTS[3])
    with pytest.raises(FcgradError, match=expected):
        assert_backward_matches(forward, backward, shapes_in(LAYOUTS[3]))


@pytest.mark.parametrize("kwargs", [{"weights": "in-out"}, {"samples": "by row"}], ids=["weights", "samples"])
def test_an_unknown_layout_is_one_line(kwargs):
    forward, backward = layer(LAYOUTS[0])
    with pytest.raises(FcgradError, match=r"^(weights|samples): expected one of .*, got '"):
        assert_backward_matches(forward, backward, shapes_in(LAYOUTS[0]), **kwargs)


def test_the_failure_header_names_a_layout_that_is_not_the_blogs():
    view = LAYOUTS[2]  # out,in by column: the Coursera course's
    forward, backward = layer(view, "transposed")
    with pytest.raises(AssertionError, match=r"float64, weights out,in, samples by column, inputs"):
        assert_backward_matches(forward, backward, shapes_in(view), weights="out,in")
