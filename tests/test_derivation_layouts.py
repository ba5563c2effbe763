"""A derivation written in any of the four layouts is checked as written, and its mistakes named in its terms.

The network: two sigmoid layers and the square loss, written once per layout with that layout's own
products (``test_diagnosis_mistakes``'s tables). Correct, it passes in every layout; each planted
mistake is the origin, named by the catalogue; two independent ones in one backward are both found.
"""

import numpy as np
import pytest
from test_diagnosis_mistakes import GRAD_B, GRAD_W, LAYOUT_IDS, LAYOUTS, RESIDUAL_X, Z

from fcgrad.derivation.checker import check_derivation
from fcgrad.derivation.report import assert_derivation_matches, text
from fcgrad.diagnosis.layout import Layout
from fcgrad.manual.activations import sigmoid

SIZES = (3, 4, 4)  # a square second layer: z2 stands where y1 belongs in grad_w2
N = 7  # 7/3 and 7/4 are neither ½, 2 nor N/(N − 1): a 1/fan-in is told as such


def network(view: Layout):
    """(forward, backward(g, v, plant), params, data) in ``view``'s layout."""
    key = (view.weights, view.samples)
    sample_axis = view.sample_axis

    def forward(tap, x, t, w1, b1, w2, b2):
        xp = x.__array_namespace__()
        z1 = tap("z1", Z[key](x, w1, b1))
        y1 = tap("y1", sigmoid(z1))
        z2 = tap("z2", Z[key](y1, w2, b2))
        y2 = tap("y2", sigmoid(z2))
        return xp.sum((y2 - t) ** 2) / x.shape[sample_axis] / 2

    def backward(g, v, plant=None):
        n = v.x.shape[sample_axis]
        g["y2"] = (v.y2 - v.t) / n
        up = g["y2"]
        g["z2"] = up * up * (1 - up) if plant == "sigma_prime_of_upstream" else up * v.y2 * (1 - v.y2)
        g["w2"] = GRAD_W[key](v.z2 if plant == "grad_w_from_output" else v.y1, g["z2"])
        g["b2"] = GRAD_B[view.samples](g["z2"])
        if plant == "activation_derivative_dropped":
            g["y1"] = RESIDUAL_X[key](v.w2, g["y2"])
        elif plant == "hidden_residual_not_through_w":
            g["y1"] = g["z2"] + 0.0
        else:
            g["y1"] = RESIDUAL_X[key](v.w2, g["z2"])
        g["z1"] = g["y1"] * v.y1 * (1 - v.y1)
        g["w1"] = GRAD_W[key](v.x, g["z1"]) * (n / SIZES[0] if plant == "one_over_wrong_n" else 1)
        g["b1"] = GRAD_B[view.samples](g["z1"])

    rng = np.random.default_rng(0)
    d, h, o = SIZES
    weight = (lambda i, j: (i, j)) if view.weights == "in,out" else (lambda i, j: (j, i))
    bias = (lambda k: (k,)) if view.rows else (lambda k: (k, 1))
    data = (lambda k: (N, k)) if view.rows else (lambda k: (k, N))
    params = {"w1": rng.standard_normal(weight(d, h)), "b1": rng.standard_normal(bias(h)),
              "w2": rng.standard_normal(weight(h, o)), "b2": rng.standard_normal(bias(o))}  # fmt: skip
    return forward, backward, params, {"x": rng.standard_normal(data(d)), "t": rng.uniform(size=data(o))}


PLANTED = {
    "sigma_prime_of_upstream": "z2",
    "grad_w_from_output": "w2",
    "activation_derivative_dropped": "y1",
    "hidden_residual_not_through_w": "y1",
    "one_over_wrong_n": "w1",
}


@pytest.mark.parametrize("view", LAYOUTS, ids=LAYOUT_IDS)
def test_a_correct_derivation_passes_in_every_layout(view):
    forward, backward, params, data = network(view)
    report = assert_derivation_matches(forward, backward, params, data, weights=view.weights, samples=view.samples)
    assert {r.verdict for r in report.rows} == {"ok"}


@pytest.mark.parametrize("view", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("mistake", list(PLANTED))
def test_each_planted_mistake_is_the_origin_and_named_in_every_layout(view, mistake):
    forward, backward, params, data = network(view)
    report = check_derivation(
        forward, lambda g, v: backward(g, v, mistake), params, data, weights=view.weights, samples=view.samples
    )
    named = {r.name: [d.name for d in r.diagnoses][:1] for r in report.origins}
    assert named == {PLANTED[mistake]: [mistake]}, text(report)


@pytest.mark.parametrize("view", LAYOUTS, ids=LAYOUT_IDS)
def test_the_catalogues_words_are_the_users_layout(view):
    forward, backward, params, data = network(view)
    report = check_derivation(
        forward, lambda g, v: backward(g, v, "activation_derivative_dropped"), params, data,
        weights=view.weights, samples=view.samples,
    )  # fmt: skip
    right = view.formula("residual_x")
    assert f"where it is {right}" in str(report.origins[0].diagnoses[0]), text(report)


def test_two_independent_mistakes_in_one_backward_are_both_origins():
    view = Layout("out,in", "rows")
    forward, backward, params, data = network(view)

    def two(g, v):
        backward(g, v, "grad_w_from_output")
        g._own["w1"] = g._own["w1"] * v.x.shape[0] / SIZES[0]  # and 1/fan-in in w1

    report = check_derivation(forward, two, params, data, weights="out,in", samples="rows")
    named = {r.name: [d.name for d in r.diagnoses][:1] for r in report.origins}
    assert named == {"w2": ["grad_w_from_output"], "w1": ["one_over_wrong_n"]}


def test_the_batch_size_is_read_from_the_sample_axis_of_the_layout():
    view = Layout("in,out", "rows")
    forward, backward, params, data = network(view)

    def no_1_over_n(g, v):
        backward(g, v)
        g._own["y2"] = g._own["y2"] * N  # forget the 1/N: y2 is read by nothing after its own write here

    report = check_derivation(forward, no_1_over_n, params, data, samples="rows")
    assert [d.name for d in report.origins[0].diagnoses] == ["missing_1_over_n"]
    assert f"exactly {N} × JAX" in str(report.origins[0].diagnoses[0])
