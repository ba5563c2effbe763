"""``fcgrad audit``: the blog-code variant reproduces the blog's code; the audit finds and attributes each departure."""

import functools
import json

import numpy as np
import pytest

from fcgrad import manual, reference
from fcgrad.audits.blog import audit
from fcgrad.cli.main import main
from fcgrad.engine import tolerances as tol
from fcgrad.engine.problems import and_example, mazur_example, random_problem
from fcgrad.manual.blog_code import DEPARTURES, BlogDepartures, blog_gradients, blog_train
from fcgrad.manual.errors import FcgradError

AUDIT_STEPS = 30  # enough to see the runs drift apart; the CLI default (10,000) is for people, not CI
# The blog's AND network (2-4-1, N=4): where each departure first changes a number.
AND_LOCATIONS = {
    "unnormalized_loss_grad": {(1, "residual_y")},  # the loss backward, above the top layer
    "scalar_bias_grad": {(0, "grad_b")},  # the 4-unit hidden layer; the 1-output layer's scalar is right
    "residual_after_update": {(1, "residual_x")},  # the only residual sent to a layer below
}
# Mazur's post prints 9 significant digits of values near 0.1-0.6: rounding leaves ≤ 5e-10;
# 1e-8 is well above that and far below the 3.7e-5 the update order moves a hidden weight.
MAZUR_PRINT_TOL = 1e-8
# Error sizes predicted by a closed formula from JAX's gradients, against the audit's: both are a few float64
# products and sums of O(1e-2) terms, so they agree to ~1e-15; 1e-9 leaves room and still pins every digit shown.
FORMULA_REL_TOL = 1e-9
QUOTED_DIGITS_REL = 1e-3  # a number quoted to 4 significant digits in a comment below
# The smallest hidden-weight difference the update order makes on Mazur's first step (measured 3.69e-5,
# on w1); a floor 3× under it.
MAZUR_HIDDEN_MIN_DIFF = 1e-5
# Mazur's published weights after one step (lr 0.5); layout w[i, j] joins input i to unit j.
MAZUR_OUTPUT_W = np.array([[0.35891648, 0.511301270], [0.408666186, 0.561370121]])  # [[w5, w7], [w6, w8]]
MAZUR_HIDDEN_W = np.array([[0.149780716, 0.24975114], [0.19956143, 0.29950229]])  # [[w1, w3], [w2, w4]]


def _problem(name: str):
    problems = {
        "and": and_example,
        "mazur": mazur_example,
        "2-3-2-N1": lambda: random_problem([2, 3, 2], batch=1, seed=3),
        "3-1": lambda: random_problem([3, 1], batch=5, seed=4),
        "3-4-1": lambda: random_problem([3, 4, 1], batch=5, seed=5),
    }
    return problems[name]().with_options(steps=AUDIT_STEPS)


@functools.cache
def _audit(name: str, departures: str):
    return audit(_problem(name), BlogDepartures.from_names(departures))


def _locations(report, cause=None):
    return {(f.layer, f.quantity) for f in report.findings if cause is None or f.cause == cause}


@pytest.mark.parametrize("cause", DEPARTURES)
def test_one_departure_alone_is_found_at_its_own_layer_and_quantity(cause):
    report = _audit("and", cause)
    assert {f.cause for f in report.findings} == {cause}
    assert _locations(report) == AND_LOCATIONS[cause]
    assert [a["causes"] for a in report.attribution] == [[cause]] * len(AND_LOCATIONS[cause])
    assert report.unexplained == []
    assert report.combined.first_step_params_differ == 1  # the runs part at the first update


def test_the_missing_1_over_n_makes_residual_y_n_times_too_large():
    p = _problem("and")
    (f,) = _audit("and", "unnormalized_loss_grad").findings
    assert f.rel_err == pytest.approx(p.batch - 1, rel=tol.GRAD_REL_TOL_F64)  # ‖N·r − r‖/‖r‖ = N − 1
    assert "lr·N = 0.4" in f.explanation


def test_the_scalar_bias_error_is_each_units_gradient_against_their_sum():
    p = _problem("and")
    r = reference.gradients(p.params, p.x, p.t, activations=p.activations)
    gb = r["layers"][0]["grad_b"]  # (4, 1), JAX
    (f,) = _audit("and", "scalar_bias_grad").findings
    assert f.max_abs_err == pytest.approx(np.max(np.abs(np.sum(gb) - gb)), rel=FORMULA_REL_TOL)


def test_the_update_order_error_is_lr_grad_w_times_residual_z():
    p = _problem("and")
    r = reference.gradients(p.params, p.x, p.t, activations=p.activations)["layers"][1]
    expected = p.lr * r["grad_w"] @ r["residual_z"]  # (w − lr·grad_w)·δz − w·δz, sign aside; (4, 4)
    (f,) = _audit("and", "residual_after_update").findings
    assert f.max_abs_err == pytest.approx(np.max(np.abs(expected)), rel=FORMULA_REL_TOL)


def test_all_three_together_each_finding_names_its_own_cause():
    report = _audit("and", "all")
    for cause, where in AND_LOCATIONS.items():
        assert _locations(report, cause) == where
    assert {(a["layer"], a["quantity"]): a["causes"] for a in report.attribution} == {
        loc: [cause] for cause, where in AND_LOCATIONS.items() for loc in where
    }
    assert report.unexplained == []


def test_every_departure_changes_a_number_on_the_blogs_and_example():
    report = _audit("and", "all")
    assert {f.cause for f in report.findings} == set(DEPARTURES)
    assert report.not_found == {}
    limit = tol.TRAJ_ABS_TOL_F64
    assert all(f.trajectory.param_max_abs_diff > limit and f.trajectory.loss_max_abs_diff > 0 for f in report.findings)


def test_a_one_sample_batch_hides_the_missing_1_over_n():
    report = _audit("2-3-2-N1", "all")
    assert "unnormalized_loss_grad" not in {f.cause for f in report.findings}
    assert "N = 1" in report.not_found["unnormalized_loss_grad"]
    assert {f.cause for f in report.findings} == {"scalar_bias_grad", "residual_after_update"}


def test_a_one_output_layer_has_no_scalar_bias_finding():
    assert _locations(_audit("3-4-1", "all"), "scalar_bias_grad") == {(0, "grad_b")}  # not layer 1 (one output)
    one_layer = _audit("3-1", "all")
    assert {f.cause for f in one_layer.findings} == {"unnormalized_loss_grad"}
    assert set(one_layer.not_found) == {"scalar_bias_grad", "residual_after_update"}  # one output; nothing below


def test_no_departures_no_findings_and_the_variant_matches_jax():
    report = _audit("and", "none")
    assert report.findings == [] and report.attribution == [] and report.unexplained == []
    assert report.combined.param_max_abs_diff <= tol.TRAJ_ABS_TOL_F64
    assert report.combined.loss_max_abs_diff <= tol.TRAJ_ABS_TOL_F64
    p = _problem("and")
    g = blog_gradients(p.params, p.x, p.t, lr=p.lr, departures=BlogDepartures.none())
    r = reference.gradients(p.params, p.x, p.t, activations=p.activations)
    for i, layer in enumerate(g.layers):
        for q in manual.QUANTITIES:
            a, b = getattr(layer, q), r["layers"][i][q]
            assert np.linalg.norm(a - b) <= tol.GRAD_REL_TOL_F64 * np.linalg.norm(b), f"layer {i} {q}"


def test_a_wrong_term_outside_the_three_switches_is_reported_unexplained(monkeypatch):
    import fcgrad.audits.blog as audit_module

    doubled = lambda y, t, loss, departures: 2 * manual.losses.LOSSES[loss].backward(y, t)  # noqa: E731
    monkeypatch.setattr(audit_module, "blog_loss_backward", doubled)
    report = audit(_problem("and").with_options(steps=2), BlogDepartures.none())
    assert report.findings == []
    assert report.unexplained == [{"layer": 1, "quantity": "residual_y", "causes": []}]


def test_the_blog_code_trains_what_the_blogs_code_trains_every_w_and_b():
    p = _problem("mazur")
    assert p.trainable is not None  # the post freezes its biases ...
    assert audit(p.with_options(steps=1), BlogDepartures.none()).problem.trainable is None  # ... the audit does not


def test_mazur_first_step_output_weights_match_the_post_hidden_weights_do_not():
    p = mazur_example()
    blog = blog_train(p.params, p.x, p.t, lr=p.lr, steps=1).final  # all three departures, w and b trained
    # w5..w8 = 0.35891648, 0.408666186, 0.511301270, 0.561370121: within the post's rounding
    np.testing.assert_allclose(blog[1]["w"], MAZUR_OUTPUT_W, rtol=0, atol=MAZUR_PRINT_TOL)
    # w1..w4 = 0.149780716, 0.19956143, 0.24975114, 0.29950229: the blog's are 3.7e-5 to 7.4e-5 larger, because
    # the residual sent to the hidden layer used the updated w5..w8 (measured 0.14981764, 0.19963528, 0.24978819,
    # 0.29957637)
    hidden_diff = blog[0]["w"] - MAZUR_HIDDEN_W
    assert np.all(hidden_diff > MAZUR_HIDDEN_MIN_DIFF)
    assert np.max(hidden_diff) == pytest.approx(7.408e-5, rel=QUOTED_DIGITS_REL)  # w4
    # The post keeps its biases fixed; a first step's w updates use the pre-step activations, so
    # training the biases (as the blog's code does) changes none of these weights.
    frozen_b = blog_train(p.params, p.x, p.t, lr=p.lr, steps=1, trainable=p.trainable).final
    for i in range(2):
        np.testing.assert_allclose(frozen_b[i]["w"], blog[i]["w"], rtol=0, atol=tol.TRAJ_ABS_TOL_F64)
    # The update order alone makes the hidden difference; the correct path reproduces the post's w1..w4.
    order_only = blog_train(
        p.params, p.x, p.t, lr=p.lr, steps=1, departures=BlogDepartures.only("residual_after_update")
    )
    np.testing.assert_allclose(order_only.final[0]["w"], blog[0]["w"], rtol=0, atol=tol.TRAJ_ABS_TOL_F64)
    correct = blog_train(p.params, p.x, p.t, lr=p.lr, steps=1, departures=BlogDepartures.none()).final
    np.testing.assert_allclose(correct[0]["w"], MAZUR_HIDDEN_W, rtol=0, atol=MAZUR_PRINT_TOL)


def test_mazur_audit_finds_the_bias_and_the_update_order_but_not_the_1_over_n():
    report = _audit("mazur", "all")
    assert {(f.cause, f.layer, f.quantity) for f in report.findings} == {
        ("scalar_bias_grad", 1, "grad_b"),
        ("scalar_bias_grad", 0, "grad_b"),
        ("residual_after_update", 1, "residual_x"),
    }
    assert "unnormalized_loss_grad" in report.not_found  # N = 1
    assert report.unexplained == []


@pytest.mark.parametrize("text", ["all", "none", "scalar_bias_grad", "unnormalized_loss_grad, residual_after_update"])
def test_departures_parse_from_names(text):
    d = BlogDepartures.from_names(text)
    expected = DEPARTURES if text == "all" else () if text == "none" else tuple(s.strip() for s in text.split(","))
    assert d.on == expected


@pytest.mark.parametrize("text", ["foo", "scalar_bias_grad,foo", ""], ids=["unknown", "one-unknown", "empty"])
def test_unknown_departure_names_are_refused(text):
    with pytest.raises(FcgradError, match="expected a comma-separated list of unnormalized_loss_grad"):
        BlogDepartures.from_names(text)


def test_cli_audit_json_exits_0_with_the_keys(capsys):
    assert main(["audit", "--json", "--steps", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True
    assert {"findings", "departures", "combined", "attribution", "unexplained", "problem"} <= set(out)
    keys = {"cause", "layer", "quantity", "max_abs_err", "rel_err", "explanation", "param_max_abs_diff", "checkpoints"}
    assert all(keys <= set(f) for f in out["findings"])
    assert {f["cause"] for f in out["findings"]} == set(DEPARTURES)


def test_cli_audit_text_names_each_finding(capsys):
    assert main(["audit", "--example", "mazur", "--steps", "3", "--departures", "scalar_bias_grad"]) == 0
    out = capsys.readouterr().out
    assert "finding 1: scalar_bias_grad — layer 1 grad_b" in out
    assert "finding 2: scalar_bias_grad — layer 0 grad_b" in out
    assert "residual_after_update" not in out


def test_cli_audit_save_holds_both_sides_and_the_meta(tmp_path, capsys):
    path = tmp_path / "audit.npz"
    assert main(["audit", "--steps", "4", "--save", str(path)]) == 0
    with np.load(path) as d:
        shapes = {k: d[k].shape for k in d.files}
        meta = json.loads(str(d["meta"]))
        blog = [d[f"w{i}_blog"] for i in (0, 1)]
        jax_side = [d[f"w{i}_reference"] for i in (0, 1)]
    layer_shapes = [{"w": (2, 4), "b": (4, 1)}, {"w": (4, 1), "b": (1, 1)}]
    expected = {"X": (2, 4), "T": (1, 4), "meta": (), "loss_blog": (4,), "loss_reference": (4,)}
    for i, layer in enumerate(layer_shapes):
        for k, shape in layer.items():
            expected[f"{k}{i}_init"] = shape
            for side in ("blog", "reference"):
                expected[f"{k}{i}_{side}"] = (5, *shape)
    assert shapes == expected
    # the blog's code (all three departures on) and JAX start together and part after the first update
    for b, r in zip(blog, jax_side):
        assert np.max(np.abs(b[0] - r[0])) <= tol.TRAJ_ABS_TOL_F64
        assert np.max(np.abs(b[-1] - r[-1])) > tol.TRAJ_ABS_TOL_F64
    assert meta["command"] == "fcgrad audit" and meta["seed"] == 0
    assert set(meta["final_loss"]) == {"blog", "jax"}


def test_cli_audit_bad_departures_exits_2_with_a_clear_message(capsys):
    assert main(["audit", "--departures", "scalar_bias,residual_after_update"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcgrad audit: error: departures: expected a comma-separated list")
    assert "'scalar_bias'" in err and "Traceback" not in err


def _audit_json(capsys, *argv) -> dict:
    assert main(["audit", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_audit_rtol_and_atol_decide_what_is_found_and_when_the_runs_part(capsys):
    strict = _audit_json(capsys, "--steps", "20")
    assert {f["cause"] for f in strict["findings"]} == set(DEPARTURES)
    assert strict["combined"]["first_step_params_differ"] == 1
    # the largest step-0 rel on AND is the missing 1/N's 3.0; 20 steps move the parameters apart by about 0.06
    loose = _audit_json(capsys, "--steps", "20", "--rtol", "10", "--atol", "1")
    assert loose["tolerances"] == loose["meta"]["tolerances"] == {"step0_rel": 10.0, "trajectory_abs": 1.0}
    assert loose["findings"] == [] and set(loose["not_found"]) == set(DEPARTURES)
    assert loose["combined"]["first_step_params_differ"] is None
    assert loose["meta"]["problem"]["rtol"] == 10.0 and loose["meta"]["problem"]["atol"] == 1.0


def test_audit_runs_the_blogs_code_on_a_spec_of_plain_layers_and_epochs_of_the_full_batch(capsys):
    out = _audit_json(capsys, "--spec", "3-5:tanh-2:sigmoid", "--loss", "square", "--epochs", "5")
    run = out["meta"]["problem"]
    assert (run["spec"], run["engine"], run["epochs"], run["steps"]) == ("3-5:tanh-2:sigmoid", "network", 5, 5)
    assert out["problem"]["activations"] == ["tanh", "sigmoid"] and out["combined"]["steps"] == 5
    found = {(f["cause"], f["layer"], f["quantity"]) for f in out["findings"]}
    assert ("scalar_bias_grad", 1, "grad_b") in found  # two outputs: the scalar bias is wrong there too
