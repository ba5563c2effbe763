"""The catalogue of classic mistakes: each planted mistake is named, correct code never is."""

import functools
from dataclasses import replace

import numpy as np
import pytest

from fcgrad import manual, reference
from fcgrad.diagnosis.catalogue import Context, diagnose
from fcgrad.diagnosis.network import diagnose_rows, network_context
from fcgrad.engine.problems import and_example, mazur_example, random_problem, xor_example
from fcgrad.engine.run import compare_gradients

# Correct code over a grid: depth 1-3, every activation, both losses, batch 1-7, widths 1-6.
GRID = [
    ([3, 4, 2], "sigmoid", "square", 5),
    ([3, 4, 2], "tanh", "square", 1),
    ([2, 6, 3, 1], "relu", "square", 7),
    ([4, 3], "identity", "cross-entropy", 6),
    ([5, 5, 5], "tanh", "cross-entropy", 2),
    ([1, 1], "sigmoid", "square", 3),
]
GRID_IDS = ["-".join(map(str, s)) + f"-{a}-{lo}-N{n}" for s, a, lo, n in GRID]


@functools.cache
def _case(activation="sigmoid", sizes=(3, 4, 2), batch=5, seed=11):
    p = random_problem(list(sizes), activations=activation, batch=batch, seed=seed)
    ref = reference.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss)
    return p, ref


def _names(found) -> list[str]:
    return [d.name for d in found]


@pytest.mark.parametrize("sizes, act, loss, n", GRID, ids=GRID_IDS)
def test_correct_gradients_get_no_diagnosis_on_any_row(sizes, act, loss, n):
    p = random_problem(sizes, activations=act, loss=loss, batch=n, seed=len(sizes) + n)
    m = manual.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss)
    ref = reference.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss)
    for i, layer in enumerate(m.layers):
        for q in manual.QUANTITIES:
            ctx = network_context(p, ref, i, q)
            assert diagnose(getattr(layer, q), ref["layers"][i][q], ctx) == [], (i, q)
    assert diagnose(m.residual_y, ref["residual_y"], Context(n=p.batch)) == []


def test_missing_1_over_n_is_named_with_its_factor():
    p, ref = _case()
    found = diagnose(ref["residual_y"] * p.batch, ref["residual_y"], Context(quantity="residual_y", n=p.batch))
    assert _names(found) == ["missing_1_over_n"]
    assert "looks like a missing 1/N: manual is exactly 5 × JAX (to " in found[0].message


def test_a_batch_of_one_hides_the_missing_1_over_n():
    p, ref = _case(batch=1)
    assert diagnose(ref["residual_y"] * 1, ref["residual_y"], Context(n=1)) == []


@pytest.mark.parametrize("factor, words", [(2.0, "½ of the square loss dropped"), (0.5, "½ applied twice")])
def test_the_half_of_the_square_loss_dropped_or_doubled(factor, words):
    p, ref = _case()
    found = diagnose(ref["residual_y"] * factor, ref["residual_y"], Context(n=p.batch))
    assert _names(found) == ["square_loss_half"] and words in found[0].message


def test_flipped_sign():
    p, ref = _case()
    g = ref["layers"][0]["grad_w"]
    found = diagnose(-g, g, Context(n=p.batch))
    assert _names(found) == ["flipped_sign"] and "flipped sign" in found[0].message


def test_a_missing_1_over_n_and_a_flipped_sign_together():
    p, ref = _case()
    g = ref["layers"][1]["grad_b"]
    found = diagnose(-p.batch * g, g, Context(n=p.batch))
    assert "a missing 1/N and a flipped sign" in found[0].message


def test_bessel_correction_mixed_up():
    p, ref = _case()
    g = ref["layers"][0]["residual_x"]
    found = diagnose(g * p.batch / (p.batch - 1), g, Context(n=p.batch))
    assert "1/(N − 1) where the forward divides by N" in found[0].message


def test_an_unnamed_constant_factor_is_still_reported():
    _, ref = _case()
    g = ref["layers"][0]["grad_w"]
    found = diagnose(3.7 * g, g, Context(n=5))
    assert _names(found) == ["constant_factor"] and "3.7 × JAX" in found[0].message


def test_transposed_grad_w():
    _, ref = _case()
    g = ref["layers"][0]["grad_w"]  # (3, 4)
    found = diagnose(g.T, g)
    assert _names(found) == ["transposed"]


def test_transposed_square_grad_w_is_a_value_not_a_shape():
    p, ref = _case(sizes=(4, 4, 2))
    g = ref["layers"][0]["grad_w"]
    assert _names(diagnose(g.T, g)) == ["transposed"]


def test_keepdims_lost_on_grad_b():
    _, ref = _case()
    g = ref["layers"][0]["grad_b"]  # (4, 1)
    assert _names(diagnose(g.ravel(), g)) == ["keepdims_lost"]


@pytest.mark.parametrize("as_scalar", [True, False], ids=["one-scalar", "scalar-on-every-row"])
def test_bias_summed_over_all_axes(as_scalar):
    p, ref = _case()
    rz = ref["layers"][0]["residual_z"]
    wrong = np.sum(rz) if as_scalar else np.full((4, 1), np.sum(rz))
    found = diagnose(wrong, ref["layers"][0]["grad_b"], network_context(p, ref, 0, "grad_b"))
    assert _names(found) == ["bias_summed_over_all_axes"]


def test_bias_summed_over_all_axes_is_right_for_one_output():
    p, ref = _case(sizes=(3, 4, 1))
    rz = ref["layers"][1]["residual_z"]
    g = ref["layers"][1]["grad_b"]  # (1, 1)
    assert diagnose(np.full_like(g, np.sum(rz)), g, network_context(p, ref, 1, "grad_b")) == []


def test_bias_summed_over_the_wrong_axis():
    p, ref = _case()
    rz = ref["layers"][0]["residual_z"]
    found = diagnose(rz.sum(axis=0, keepdims=True), ref["layers"][0]["grad_b"], network_context(p, ref, 0, "grad_b"))
    assert _names(found) == ["bias_summed_over_wrong_axis"]


def _wrong_residual_z(p, ref, layer, formula):
    ctx = network_context(p, ref, layer, "residual_z")
    return diagnose(formula(ctx), ref["layers"][layer]["residual_z"], ctx)


@pytest.mark.parametrize(
    "act, formula, name",
    [
        ("sigmoid", lambda c: c.upstream * c.z * (1 - c.z), "derivative_form_at_z"),
        ("tanh", lambda c: c.upstream * (1 - c.z**2), "derivative_form_at_z"),
        ("sigmoid", lambda c: c.upstream * _sig_prime(c.y), "derivative_at_y"),
        ("tanh", lambda c: c.upstream * (1 - np.tanh(c.y) ** 2), "derivative_at_y"),
        ("sigmoid", lambda c: c.upstream * c.y, "sigmoid_prime_as_y"),
        ("tanh", lambda c: c.upstream * (1 - c.y), "tanh_prime_as_one_minus_y"),
        ("relu", lambda c: (c.z > 0).astype(float), "upstream_dropped"),
        ("sigmoid", lambda c: c.upstream, "activation_derivative_missing"),
    ],
    ids=["sigmoid-y-form-at-z", "tanh-y-form-at-z", "sigmoid-at-y", "tanh-at-y", "sigma-as-y", "tanh-as-1-y",
         "relu-drops-upstream", "no-derivative"],
)  # fmt: skip
def test_activation_derivative_mistakes_are_named(act, formula, name):
    p, ref = _case(activation=act)
    found = _wrong_residual_z(p, ref, 0, formula)
    assert _names(found)[:1] == [name], [str(d) for d in found]


def _sig_prime(v):
    s = 1 / (1 + np.exp(-v))
    return s * (1 - s)


def test_residual_through_updated_w():
    p = and_example()
    ref = reference.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss)
    ctx = network_context(p, ref, 1, "residual_x")
    wrong = (ctx.w - p.lr * ctx.grad_w) @ ctx.residual_z
    found = diagnose(wrong, ref["layers"][1]["residual_x"], ctx)
    assert _names(found) == ["residual_through_updated_w"]
    assert "lr 0.1" in found[0].message


def test_an_arbitrary_wrong_array_gets_no_name():
    p, ref = _case()
    g = ref["layers"][0]["grad_w"]
    wrong = g + np.random.default_rng(0).standard_normal(g.shape)
    assert diagnose(wrong, g, network_context(p, ref, 0, "grad_w")) == []


def test_a_tiny_rounding_difference_is_not_a_mistake():
    p, ref = _case()
    g = ref["layers"][0]["grad_w"]
    assert diagnose(g * (1 + 1e-14), g, Context(n=p.batch)) == []


# The planted backwards of test_broken_derivations, run through compare_gradients and named on their failing rows:
# variant -> {(layer, quantity): catalogue entry} for the row where each mistake first shows.
NAMED_ORIGINS = {
    "loss-drops-1/N": {(2, "residual_y"): "missing_1_over_n"},
    "grad_b-summed-over-all-axes": {
        (0, "grad_b"): "bias_summed_over_all_axes",
        (1, "grad_b"): "bias_summed_over_all_axes",
    },
    "residual_x-with-updated-w": {(2, "residual_x"): "residual_through_updated_w"},
    "grad_w-missing-transpose": {(0, "grad_w"): "transposed", (1, "grad_w"): "transposed"},
    "residual_x-missing-transpose": {(1, "residual_x"): "residual_through_w_transposed"},
    "sigmoid-derivative-y": {(2, "residual_z"): "sigmoid_prime_as_y"},
    "tanh-derivative-1-minus-y": {(2, "residual_z"): "tanh_prime_as_one_minus_y"},
}


@pytest.mark.parametrize("variant", list(NAMED_ORIGINS))
def test_check_rows_of_each_broken_derivation_are_named(variant, monkeypatch):
    from test_broken_derivations import PROBLEMS, VARIANTS, _apply

    problem, patch, _ = VARIANTS[variant]
    p = PROBLEMS[problem]
    _apply(monkeypatch, patch)
    named = diagnose_rows(p, compare_gradients(p))
    for key, entry in NAMED_ORIGINS[variant].items():
        assert [d.name for d in named.get(key, [])][:1] == [entry], (key, named.get(key))


@pytest.mark.parametrize("example", [and_example, xor_example, mazur_example], ids=["and", "xor", "mazur"])
def test_no_row_of_a_correct_check_is_named_even_when_every_row_is_asked(example):
    p = example()
    rows = [replace(r, ok=False) for r in compare_gradients(p)]  # pretend each row failed
    assert diagnose_rows(p, rows) == {}


def test_grad_w_from_another_layers_array_is_named_in_a_network():
    # a square network: the network's input X (4, N) fits where layer 1's own input belongs
    p = random_problem([4, 4, 4], activations="tanh", batch=6, seed=3)
    ref = reference.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss)
    ctx = network_context(p, ref, 1, "grad_w")
    wrong = p.x @ ref["layers"][1]["residual_z"].T  # (4, N)·(N, 4): X where layer 1's input x belongs
    found = diagnose(wrong, ref["layers"][1]["grad_w"], ctx)
    assert _names(found) == ["grad_w_from_output"] and "the network's input X" in found[0].message
