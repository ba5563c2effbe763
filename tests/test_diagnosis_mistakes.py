"""The mistakes people really make, named in the user's own layout; correct code in every layout never named.

Each mistake is written the way a user writes it in each of the four layouts (weights (in, out) or
(out, in), samples by column or by row), with that layout's own products, and the catalogue is
asked in that layout: it must name the mistake, and speak of shapes and formulas the user wrote.
"""

import numpy as np
import pytest

from fcgrad.diagnosis.catalogue import CATALOGUE, Context, diagnose, in_blog_layout, signature_tol
from fcgrad.diagnosis.layout import Layout, kind_of
from fcgrad.manual.activations import ACTIVATIONS

LAYOUTS = [Layout(w, s) for w in ("in,out", "out,in") for s in ("columns", "rows")]
LAYOUT_IDS = [f"{v.weights}-{v.samples}" for v in LAYOUTS]

# Each layout's own products: z, grad_w, grad_b and residual_x as a user of that layout writes them.
Z = {
    ("in,out", "columns"): lambda x, w, b: w.T @ x + b,
    ("out,in", "columns"): lambda x, w, b: w @ x + b,
    ("in,out", "rows"): lambda x, w, b: x @ w + b,
    ("out,in", "rows"): lambda x, w, b: x @ w.T + b,
}
GRAD_W = {
    ("in,out", "columns"): lambda a, d: a @ d.T,
    ("out,in", "columns"): lambda a, d: d @ a.T,
    ("in,out", "rows"): lambda a, d: a.T @ d,
    ("out,in", "rows"): lambda a, d: d.T @ a,
}
RESIDUAL_X = {
    ("in,out", "columns"): lambda w, d: w @ d,
    ("out,in", "columns"): lambda w, d: w.T @ d,
    ("in,out", "rows"): lambda w, d: d @ w.T,
    ("out,in", "rows"): lambda w, d: d @ w,
}
GRAD_B = {"columns": lambda d: d.sum(axis=1, keepdims=True), "rows": lambda d: d.sum(axis=0)}


class Layer:
    """One layer's correct numbers in a user's layout, and the catalogue's context for one of its quantities."""

    def __init__(self, view: Layout, n_in=3, n_out=4, n=5, act="sigmoid", seed=0):
        rng = np.random.default_rng(seed)
        key = (view.weights, view.samples)
        self.view, self.n, self.act = view, n, act
        data = (lambda rows, cols: (cols, rows)) if view.rows else (lambda rows, cols: (rows, cols))
        self.x = rng.standard_normal(data(n_in, n))  # (in, N) or (N, in)
        self.w = rng.standard_normal((n_in, n_out) if view.weights == "in,out" else (n_out, n_in))
        self.b = rng.standard_normal((n_out,) if view.rows else (n_out, 1))
        self.z = Z[key](self.x, self.w, self.b)  # (out, N) or (N, out)
        self.y = ACTIVATIONS[act].forward(self.z)
        self.upstream = rng.standard_normal(self.y.shape)  # ∂L/∂y
        self.residual_z = ACTIVATIONS[act].backward(self.upstream, self.z, self.y)
        self.grad_w = GRAD_W[key](self.x, self.residual_z)
        self.grad_b = GRAD_B[view.samples](self.residual_z)
        self.residual_x = RESIDUAL_X[key](self.w, self.residual_z)
        self.key = key

    def context(self, quantity: str, **more) -> Context:
        return Context(
            quantity=quantity, n=self.n, x=self.x, z=self.z, y=self.y, w=self.w, upstream=self.upstream,
            residual_z=self.residual_z, grad_w=self.grad_w, activation=self.act, layout=self.view, **more,
        )  # fmt: skip

    def names(self, quantity: str, manual, **more) -> list[str]:
        return [d.name for d in diagnose(manual, getattr(self, quantity), self.context(quantity, **more))]

    def messages(self, quantity: str, manual) -> list[str]:
        return [d.message for d in diagnose(manual, getattr(self, quantity), self.context(quantity))]


@pytest.mark.parametrize("view", LAYOUTS, ids=LAYOUT_IDS)
class TestEachMistakeInEachLayout:
    def test_sigma_prime_evaluated_at_the_upstream_residual(self, view):
        layer = Layer(view)
        u = layer.upstream
        assert layer.names("residual_z", u * u * (1 - u))[:1] == ["sigma_prime_of_upstream"]  # y(1 − y) form
        s = 1 / (1 + np.exp(-u))
        assert layer.names("residual_z", u * s * (1 - s))[:1] == ["sigma_prime_of_upstream"]  # σ'(∂L/∂y)

    @pytest.mark.parametrize("act", ["sigmoid", "tanh"])
    def test_sigma_prime_of_the_upstream_without_the_upstream_factor(self, view, act):
        layer = Layer(view, act=act)
        u = layer.upstream
        wrong = u * (1 - u) if act == "sigmoid" else 1 - u * u
        assert layer.names("residual_z", wrong)[:1] == ["sigma_prime_of_upstream"]

    def test_the_activation_derivative_dropped_from_the_residual_sent_down(self, view):
        layer = Layer(view)
        wrong = RESIDUAL_X[layer.key](layer.w, layer.upstream)  # ∂L/∂y sent through w: no σ'
        assert layer.names("residual_x", wrong) == ["activation_derivative_dropped"]
        message = layer.messages("residual_x", wrong)[0]
        assert RESIDUAL_X_WORDS[layer.key] in message, message

    def test_grad_w_from_the_layers_output(self, view):
        layer = Layer(view, n_in=4, n_out=4, n=6)  # y stands where x belongs only when in = out
        wrong = GRAD_W[layer.key](layer.y, layer.residual_z)
        assert layer.names("grad_w", wrong) == ["grad_w_from_output"]
        assert GRAD_W_WORDS[layer.key] in layer.messages("grad_w", wrong)[0]

    def test_grad_w_from_another_cached_array(self, view):
        layer = Layer(view, n_in=4, n_out=4, n=6)
        cached = np.random.default_rng(9).standard_normal(layer.x.shape)  # e.g. another layer's input
        wrong = GRAD_W[layer.key](cached, layer.residual_z)
        found = diagnose(wrong, layer.grad_w, layer.context("grad_w", others=(("the network's input X", cached),)))
        assert [d.name for d in found] == ["grad_w_from_output"] and "the network's input X" in found[0].message

    def test_grad_w_from_the_output_with_one_over_the_fan_in(self, view):
        # the Q&A mistake: the layer's own output, and 1/m with m the fan-in where the 1/N belongs
        layer = Layer(view, n_in=4, n_out=4, n=6)
        wrong = GRAD_W[layer.key](layer.y, layer.residual_z * layer.n) / 4
        found = diagnose(wrong, layer.grad_w, layer.context("grad_w"))
        assert [d.name for d in found] == ["grad_w_from_output"]
        assert "1/M with M = the fan-in (= fan-out) 4 where 1/N = 1/6 belongs" in found[0].message

    def test_grad_w_times_w_instead_of_x(self, view):
        layer = Layer(view, n_in=4, n_out=4, n=4)  # w stands where x belongs only when the shapes allow it
        wrong = GRAD_W[layer.key](layer.w, layer.residual_z)
        assert layer.names("grad_w", wrong) == ["grad_w_times_w"]

    def test_grad_w_times_w_in_the_blog_shape_that_needs_only_out_equal_n(self, view):
        layer = Layer(view, n_in=3, n_out=5, n=5)
        b = view.to_blog
        wrong = view.from_blog("weight", b("weight", layer.w) @ b("data", layer.residual_z).T)  # w·residual_zᵀ
        assert layer.names("grad_w", wrong) == ["grad_w_times_w"]

    def test_grad_w_as_w_times_the_summed_residual_entry_by_entry(self, view):
        # the Q&A form: w2 * d_output.sum(0) where hidden.T @ d_output belongs
        layer = Layer(view, n_in=4, n_out=1, n=6)
        b = view.to_blog
        wrong = view.from_blog("weight", b("weight", layer.w) * b("data", layer.residual_z).sum(axis=1))
        assert layer.names("grad_w", wrong) == ["grad_w_times_w"]

    def test_a_hidden_residual_that_reuses_the_error_above(self, view):
        layer = Layer(view, n_in=4, n_out=4, n=6)
        assert layer.names("residual_x", layer.residual_z) == ["hidden_residual_not_through_w"]
        assert layer.names("residual_x", layer.upstream) == ["hidden_residual_not_through_w"]

    def test_a_one_output_error_broadcast_down_is_not_through_w(self, view):
        # hidden_error = output_delta: a (1, N) error that broadcasts over the hidden units
        layer = Layer(view, n_in=4, n_out=1, n=6)
        wrong = np.broadcast_to(layer.residual_z, layer.residual_x.shape).copy()
        assert layer.names("residual_x", wrong) == ["hidden_residual_not_through_w"]
        assert layer.names("residual_x", layer.residual_z) == ["hidden_residual_not_through_w"]  # its own shape

    @pytest.mark.parametrize("m_words", [("fan_in", "the fan-in 3"), ("fan_out", "the fan-out 4")])
    def test_one_over_the_wrong_n(self, view, m_words):
        which, words = m_words
        layer = Layer(view, n_in=3, n_out=4, n=7)  # 7/3, 7/4: no ½, no N/(N − 1) among them
        m = 3 if which == "fan_in" else 4
        wrong = GRAD_W[layer.key](layer.x, layer.residual_z * layer.n / m)  # 1/M where 1/N belongs
        found = diagnose(wrong, layer.grad_w, layer.context("grad_w"))
        assert [d.name for d in found] == ["one_over_wrong_n"] and words in found[0].message

    def test_one_over_a_batch_of_another_size(self, view):
        layer = Layer(view, n=5)
        wrong = layer.residual_x * 5 / 32
        found = diagnose(wrong, layer.residual_x, layer.context("residual_x"))
        assert [d.name for d in found] == ["one_over_wrong_n"] and "M = 32, a batch of another size" in found[0].message

    @pytest.mark.parametrize("quantity", ["grad_w", "grad_b"])
    def test_a_gradient_never_applied(self, view, quantity):
        layer = Layer(view)
        zero = np.zeros_like(getattr(layer, quantity))
        assert layer.names(quantity, zero) == ["gradient_never_applied"]
        found = diagnose(zero, getattr(layer, quantity), layer.context(quantity, read_from_update=True))
        assert "left w and b unchanged" in found[0].message

    def test_a_transposed_grad_w_speaks_of_the_users_shape(self, view):
        layer = Layer(view)
        found = diagnose(layer.grad_w.T, layer.grad_w, layer.context("grad_w"))
        assert [d.name for d in found] == ["transposed"] and f"JAX's {layer.grad_w.shape}ᵀ" in found[0].message

    def test_a_bias_summed_over_the_wrong_axis_names_the_users_axes(self, view):
        layer = Layer(view)
        wrong = layer.residual_z.sum(axis=0 if view.samples == "columns" else 1)  # over the units
        found = diagnose(wrong, layer.grad_b, layer.context("grad_b"))
        assert [d.name for d in found] == ["bias_summed_over_wrong_axis"]
        units, samples = ("axis=0", "axis=1") if view.samples == "columns" else ("axis=1", "axis=0")
        assert f"units ({units})" in found[0].message and f"N samples ({samples})" in found[0].message

    def test_a_bias_summed_over_all_axes(self, view):
        layer = Layer(view)
        found = diagnose(np.sum(layer.residual_z), layer.grad_b, layer.context("grad_b"))
        assert [d.name for d in found] == ["bias_summed_over_all_axes"]
        assert ("N rows only (axis=0)" if view.rows else "N columns only (axis=1") in found[0].message

    def test_correct_arrays_get_no_name(self, view):
        for act in ACTIVATIONS:
            layer = Layer(view, act=act, seed=3)
            for quantity in ("residual_z", "grad_w", "grad_b", "residual_x"):
                assert layer.names(quantity, getattr(layer, quantity)) == [], (act, quantity)

    def test_a_one_by_n_bias_gradient_is_accepted_by_row(self, view):
        layer = Layer(view)
        if view.rows:
            assert layer.names("grad_b", layer.grad_b.reshape(1, -1)) == []


RESIDUAL_X_WORDS = {
    ("in,out", "columns"): "w·∂L/∂y where it is w·residual_z",
    ("out,in", "columns"): "wᵀ·∂L/∂y where it is wᵀ·residual_z",
    ("in,out", "rows"): "∂L/∂y·wᵀ where it is residual_z·wᵀ",
    ("out,in", "rows"): "∂L/∂y·w where it is residual_z·w",
}
GRAD_W_WORDS = {
    ("in,out", "columns"): "(it is x·residual_zᵀ)",
    ("out,in", "columns"): "(it is residual_z·xᵀ)",
    ("in,out", "rows"): "(it is xᵀ·residual_z)",
    ("out,in", "rows"): "(it is residual_zᵀ·x)",
}


# --- every entry's matcher, asked directly about correct pairs in every layout --------------------------------------

SHAPES = [(3, 4, 5), (4, 4, 4), (4, 4, 6), (4, 1, 6), (2, 3, 1), (5, 5, 2)]


@pytest.mark.parametrize("view", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_no_entry_matches_a_correct_pair(view, act):
    """Not only diagnose's early exit: each entry, handed the right array as the manual one, stays silent."""
    for n_in, n_out, n in SHAPES:
        layer = Layer(view, n_in, n_out, n, act=act, seed=n_in * 10 + n)
        for quantity in ("residual_z", "grad_w", "grad_b", "residual_x"):
            right = getattr(layer, quantity)
            kind = kind_of(quantity)
            m = r = view.to_blog(kind, np.asarray(right, dtype=np.float64))
            ctx = in_blog_layout(layer.context(quantity, lr=0.1), (right.shape, right.shape))
            tol = signature_tol(m)
            for name, entry in CATALOGUE.items():
                hit = entry(m, r, ctx, tol)
                assert hit is None or hit[2] > tol, (name, quantity, (n_in, n_out, n), hit)


@pytest.mark.parametrize("view", LAYOUTS, ids=LAYOUT_IDS)
def test_a_one_number_quantity_gets_no_name(view):
    # a 1×1 gradient: every wrong number is a constant times the right one, so no formula can be told
    layer = Layer(view, n_in=1, n_out=1, n=3)
    assert layer.names("grad_w", 7.3 * layer.grad_w) == []
    assert layer.names("grad_w", np.zeros_like(layer.grad_w)) == []


def test_the_blog_layout_is_the_default_and_other_layouts_are_refused_in_one_line():
    from fcgrad.manual.errors import FcgradError

    assert Layout() == Layout("in,out", "columns") and Layout().is_blog
    with pytest.raises(FcgradError, match=r"^weights: expected one of 'in,out', 'out,in', got 'in-out'$"):
        Layout("in-out")
    with pytest.raises(FcgradError, match=r"^samples: expected one of 'columns', 'rows', got 'cols'$"):
        Layout(samples="cols")
