"""Inverted dropout: the mask is data both sides share; the 1/keep scale and the reused mask are checked."""

import numpy as np
import pytest

from fcgrad.manual.batches import step_masks
from fcgrad.manual.dropout import draw_mask, dropout_backward, dropout_forward
from fcgrad.manual.spec import parse_spec
from fcgrad.testing import assert_backward_matches

DROP = 0.3
SHAPES = {"x": (5, 7), "mask": (5, 7)}
WRT = {"residual_x": "x"}  # the mask is data, not differentiated


def jax_dropout(x, mask):
    return x * mask / (1.0 - DROP)


def backward(residual_y, x, mask):
    _, cache = dropout_forward(x, mask, DROP)
    return {"residual_x": dropout_backward(residual_y, cache)}


def _binary(a):
    return (a > 0).astype(np.float64)  # turns N(0, 1) draws into a 0/1 mask


def test_dropout_backward_matches_jax_with_the_shared_mask():
    assert_backward_matches(jax_dropout, backward, SHAPES, transform={"mask": _binary}, wrt=WRT)


def backward_without_scale(residual_y, x, mask):
    return {"residual_x": residual_y * mask}


def backward_with_a_fresh_mask(residual_y, x, mask):
    fresh = draw_mask(mask.shape, DROP, np.random.default_rng(123))
    return {"residual_x": residual_y * fresh / (1.0 - DROP)}


@pytest.mark.parametrize("broken", [backward_without_scale, backward_with_a_fresh_mask], ids=lambda f: f.__name__)
def test_planted_dropout_mistake_is_caught_on_residual_x(broken):
    with pytest.raises(AssertionError, match="residual_x"):
        assert_backward_matches(jax_dropout, broken, SHAPES, transform={"mask": _binary}, wrt=WRT)


def test_forward_without_the_keep_scale_changes_the_expected_output():
    x = np.ones((200, 200))
    mask = draw_mask(x.shape, DROP, np.random.default_rng(0))
    y, _ = dropout_forward(x, mask, DROP)
    # inverted dropout keeps E[y] = x: the mean of 40,000 entries is within 1% (5 standard errors) of 1
    assert abs(y.mean() - 1.0) < 0.01
    assert abs((x * mask).mean() - 1.0) > 0.25  # without 1/keep the mean drops to keep = 0.7


def test_masks_are_seeded_binary_and_shaped_per_layer():
    spec = parse_spec("4-6:relu:drop0.5-3:tanh-2:drop0.2")
    a = step_masks(spec, 9, np.random.default_rng(7))
    b = step_masks(spec, 9, np.random.default_rng(7))
    assert [None if m is None else m.shape for m in a] == [(6, 9), None, (2, 9)]
    assert all(np.array_equal(m, n) for m, n in zip(a, b) if m is not None)  # same seed, same 0/1 mask
    assert set(np.unique(a[0])) <= {0.0, 1.0}
