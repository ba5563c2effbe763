"""A derivation checked term by term: origins, inherited terms, the catalogue's names, the user's errors."""

import numpy as np
import pytest

from fcgrad.derivation.checker import check_derivation
from fcgrad.derivation.report import assert_derivation_matches, text
from fcgrad.diagnosis import catalogue
from fcgrad.manual.activations import sigmoid
from fcgrad.manual.errors import FcgradError

N = 6


def forward(tap, x, t, w1, b1, w2, b2):
    """The blog's 2-layer sigmoid network with its square loss, one tap per intermediate."""
    xp = x.__array_namespace__()
    z1 = tap("z1", w1.T @ x + b1)  # (H, N)
    y1 = tap("y1", sigmoid(z1))  # (H, N)
    z2 = tap("z2", w2.T @ y1 + b2)  # (O, N)
    y2 = tap("y2", sigmoid(z2))  # (O, N)
    return xp.sum((y2 - t) ** 2) / x.shape[1] / 2


def backward(g, v, *, sign_z2=1.0, bias_axes=None, keep_1_over_n=True, sigma_as_y=False):
    """Correct with the defaults; each keyword plants one mistake."""
    n = v.x.shape[1]
    g["y2"] = (v.y2 - v.t) / (n if keep_1_over_n else 1)  # (O, N)
    g["z2"] = sign_z2 * g["y2"] * v.y2 * (1 - v.y2)  # (O, N)
    g["w2"] = v.y1 @ g["z2"].T  # (H, O)
    g["b2"] = np.sum(g["z2"], axis=1, keepdims=True)  # (O, 1)
    g["y1"] = v.w2 @ g["z2"]  # (H, N)
    g["z1"] = g["y1"] * (v.y1 if sigma_as_y else v.y1 * (1 - v.y1))  # (H, N)
    g["w1"] = v.x @ g["z1"].T  # (D, H)
    g["b1"] = np.full((v.b1.shape[0], 1), np.sum(g["z1"])) if bias_axes == "all" else np.sum(g["z1"], 1, keepdims=True)


def _problem(seed=0, sizes=(3, 4, 2), n=N):
    rng = np.random.default_rng(seed)
    d, h, o = sizes
    params = {"w1": rng.standard_normal((d, h)), "b1": rng.standard_normal((h, 1)),
              "w2": rng.standard_normal((h, o)), "b2": rng.standard_normal((o, 1))}  # fmt: skip
    return params, {"x": rng.standard_normal((d, n)), "t": rng.uniform(size=(o, n))}


def _check(bw=backward, **planted):
    return check_derivation(forward, lambda g, v: bw(g, v, **planted), *_problem())


def _verdicts(report):
    return {r.name: r.verdict for r in report.rows}


@pytest.mark.slow
def test_a_correct_derivation_passes_with_no_diagnosis():
    report = assert_derivation_matches(forward, backward, *_problem())
    assert set(_verdicts(report).values()) == {"ok"}
    assert [r.name for r in report.rows] == ["y2", "z2", "w2", "b2", "y1", "z1", "w1", "b1"]  # backward order


def test_a_flipped_sign_is_the_origin_and_everything_below_inherits_it():
    report = _check(sign_z2=-1.0)
    v = _verdicts(report)
    assert v["y2"] == "ok" and v["z2"] == "origin"
    assert {k for k, x in v.items() if x == "inherited"} == {"w2", "b2", "y1", "z1", "w1", "b1"}
    assert all(r.inherits_from == ("z2",) for r in report.rows if r.verdict == "inherited")
    assert [d.name for d in report.origins[0].diagnoses] == ["flipped_sign"]


def test_the_names_are_the_catalogues_own_not_a_copy(monkeypatch):
    # an entry added to fcgrad.diagnosis.catalogue names the derivation's origin at once, with its context:
    # the checker asks the one catalogue, and tells it which layer quantity the term is
    seen = []

    def planted_entry(m, r, ctx, tol):
        seen.append(ctx.quantity)
        return "planted_entry", "looks like the planted entry", 0.0

    monkeypatch.setitem(catalogue.CATALOGUE, "planted_entry", planted_entry)
    report = _check(sign_z2=-1.0)
    assert "planted_entry" in [d.name for d in report.origins[0].diagnoses]
    assert seen == ["residual_z"]  # z2 is a layer's z: its ∂L/∂z is the catalogue's residual_z


def test_several_independent_mistakes_are_all_found_in_one_run():
    report = _check(keep_1_over_n=False, sigma_as_y=True, bias_axes="all")
    names = {r.name: [d.name for d in r.diagnoses][:1] for r in report.origins}
    assert names == {"y2": ["missing_1_over_n"], "z1": ["sigmoid_prime_as_y"], "b1": ["bias_summed_over_all_axes"]}
    w1 = next(r for r in report.rows if r.name == "w1")
    assert w1.verdict == "inherited" and w1.inherits_from == ("y2", "z1")


def test_the_table_lists_both_passes_and_the_names():
    report = _check(keep_1_over_n=False)
    table = text(report)
    assert "end to end" in table and "isolated" in table
    assert "inherited from y2" in table
    assert f"looks like a missing 1/N: manual is exactly {N} × JAX" in table
    assert table.splitlines()[-1].startswith("FAILED: 8 wrong term(s); origin(s): y2")


def test_assert_derivation_matches_fails_with_the_table():
    with pytest.raises(AssertionError, match=r"(?s)backward does not match JAX term by term.*z1 .*origin"):
        assert_derivation_matches(forward, lambda g, v: backward(g, v, sigma_as_y=True), *_problem())


def test_a_missing_parameter_gradient_fails():
    def no_b1(g, v):
        backward(g, v)
        g._own.pop("b1")

    report = check_derivation(forward, no_b1, *_problem())
    assert _verdicts(report)["b1"] == "missing" and not report.ok


def test_an_untouched_tap_is_not_computed_and_does_not_fail():
    def fw(tap, x, t, w1, b1, w2, b2):
        tap("unused", x * 2)
        return forward(tap, x, t, w1, b1, w2, b2)

    report = check_derivation(fw, backward, *_problem())
    assert report.ok and _verdicts(report)["unused"] == "not computed"


def test_writing_a_term_twice_is_reported_at_the_users_line():
    def twice(g, v):
        backward(g, v)
        g["w1"] += 0.0  # reads then writes g["w1"] again

    report = check_derivation(forward, twice, *_problem())
    assert not report.ok
    assert f"{__file__}:" in report.crashes["end_to_end"] and "g.add('w1', part)" in report.crashes["end_to_end"]


def test_an_exception_inside_the_backward_is_reported_with_file_and_line_not_raised():
    def broken(g, v):
        g["y2"] = v.y2 - v.t
        g["z2"] = g["y2"] @ v.y2  # (O, N)·(O, N): shapes do not chain

    report = check_derivation(forward, broken, *_problem())
    line = broken.__code__.co_firstlineno + 2
    assert report.crashes["end_to_end"].startswith(f"{__file__}:{line}: backward raised ValueError")
    assert _verdicts(report)["y2"] == "origin"  # what was written before the error is still compared


@pytest.mark.parametrize(
    "params, data, expected",
    [
        ([1, 2], {"x": np.ones((3, 2))}, "params: expected a dict of name -> array"),
        ({"w1": np.full((3, 4), np.nan)}, {"x": np.ones((3, 2))}, r"params\['w1'\]: expected finite values"),
        ({"x": np.ones((3, 2))}, {"x": np.ones((3, 2))}, r"params and data: expected different names, got \['x'\]"),
    ],
    ids=["not-a-dict", "nan", "same-name"],
)
def test_bad_inputs_fail_before_any_work(params, data, expected):
    with pytest.raises(FcgradError, match=expected):
        check_derivation(forward, backward, params, data)


def test_a_tap_name_used_twice_is_refused():
    def fw(tap, x, t, w1, b1, w2, b2):
        tap("z1", x)
        return forward(tap, x, t, w1, b1, w2, b2)

    with pytest.raises(FcgradError, match=r"tap\('z1'\): each tap needs a new name"):
        check_derivation(fw, backward, *_problem())


def test_a_forward_that_does_not_return_a_scalar_is_refused():
    with pytest.raises(FcgradError, match=r"forward: expected it to return the loss, a 0-d value, got shape \(3, 6\)"):
        check_derivation(lambda tap, x, t, **p: x, backward, *_problem())


def test_an_exception_in_the_forward_names_the_users_line():
    def fw(tap, x, t, w1, b1, w2, b2):
        return (w1 @ x).sum()  # (3, 4)·(3, 6): wrong orientation

    with pytest.raises(FcgradError, match=rf"{__file__}:\d+: forward \(on NumPy\) raised ValueError"):
        check_derivation(fw, backward, *_problem())


def test_a_forward_calling_numpy_directly_is_told_to_use_the_array_api():
    def fw(tap, x, t, w1, b1, w2, b2):
        return np.sum(np.tanh(w1.T @ x + b1))  # np.tanh cannot run under JAX

    with pytest.raises(FcgradError, match=r"forward \(under JAX\) raised .*xp = x.__array_namespace__\(\)"):
        check_derivation(fw, backward, *_problem())


def test_an_exception_after_every_right_term_still_fails_and_names_the_users_line():
    def raises_at_the_end(g, v):
        backward(g, v)
        raise RuntimeError("left over")

    report = check_derivation(forward, raises_at_the_end, *_problem())
    line = raises_at_the_end.__code__.co_firstlineno + 2
    assert not report.ok and {r.verdict for r in report.rows} == {"ok"}
    last = text(report).splitlines()[-1]
    assert (
        last
        == f"FAILED: {__file__}:{line}: backward raised RuntimeError: left over; the terms written before it match JAX"
    )
    assert "0 wrong term(s)" not in text(report)


def test_an_exception_midway_is_counted_with_the_terms_it_left_wrong():
    def broken(g, v):
        g["y2"] = v.y2 - v.t  # the 1/N forgotten
        g["z2"] = g["y2"] @ v.y2  # (O, N)·(O, N): shapes do not chain

    last = text(check_derivation(forward, broken, *_problem())).splitlines()[-1]
    assert last.startswith(f"FAILED: {__file__}:{broken.__code__.co_firstlineno + 2}: backward raised ValueError")
    assert last.endswith("; 5 wrong term(s); origin(s): y2; missing: w1, b1, w2, b2")
