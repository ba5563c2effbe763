"""Promises of README.md and docs/ that no other test held: each written as the prose states it.

docs/promises.md lists every promise of the prose with the tests that pin it; these are the ones that had
none. Each runs no training longer than the blog's 10,000 NumPy steps and no JAX beyond one tiny check.
"""

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcgrad
from fcgrad import manual
from fcgrad.cli.main import build_parser, description_from_args, main, refuse_outputs
from fcgrad.engine import tolerances as tol
from fcgrad.engine.description import build, describe
from fcgrad.manual.batchnorm import batchnorm_backward, batchnorm_forward
from fcgrad.manual.blog_code import BlogDepartures, blog_gradients
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.spec import init_running, init_spec_params, parse_spec

ROOT = Path(__file__).resolve().parents[1]

# ---- README.md, "One description of a run": the option table's refusals, each one line before any work ---------

REFUSED = {  # the README's "refused with" column, as a user types each pair
    "example+sizes": ["--example", "xor", "--sizes", "3,4,2"],
    "example+spec": ["--example", "xor", "--spec", "3-4-2"],
    "example+data": ["--example", "xor", "--data", "DATA"],
    "example+loss": ["--example", "xor", "--loss", "mae"],
    "example+batch": ["--example", "xor", "--batch", "5"],
    "mazur+seed": ["--example", "mazur", "--seed", "3"],
    "mazur+optimizer": ["--example", "mazur", "--optimizer", "adam"],
    "mazur+l2": ["--example", "mazur", "--l2", "0.01"],
    "digits+devices": ["--example", "digits", "--devices", "2"],
    "sizes+spec": ["--sizes", "3,4,2", "--spec", "3-4-2"],
    "spec+activation": ["--spec", "3-4-2", "--activation", "tanh"],
    "spec-with-bn+devices": ["--spec", "3-4:bn-2", "--devices", "2"],
    "data+batch": ["--data", "DATA", "--batch", "5"],
    "loss-without-network": ["--loss", "mae"],
    "batch-without-network": ["--batch", "5"],
    "optimizer+plot": ["--sizes", "3,4,2", "--optimizer", "adam", "--plot", "PLOT"],
    "batch-size+plot": ["--sizes", "3,4,2", "--batch-size", "2", "--plot", "PLOT"],
    "l2+plot": ["--sizes", "3,4,2", "--l2", "0.1", "--plot", "PLOT"],
    "hyperparameter-of-another-optimizer": ["--sizes", "3,4,2", "--optimizer", "adam", "--momentum", "0.5"],
    "steps+epochs": ["--sizes", "3,4,2", "--steps", "3", "--epochs", "2"],
    "devices+plot": ["--sizes", "3,4,2", "--devices", "2", "--plot", "PLOT"],
    "devices+verbose": ["--sizes", "3,4,2", "--devices", "2", "-v"],
    "devices+fewer-columns-in-a-batch": ["--sizes", "3,4,2", "--devices", "4", "--batch-size", "2"],
}


@pytest.mark.parametrize("pair", list(REFUSED))
def test_the_option_tables_refusals_are_one_line_naming_an_option(pair, data_file, tmp_path):
    swap = {"DATA": data_file, "PLOT": str(tmp_path / "run.png")}
    args = build_parser().parse_args(["check", *[swap.get(a, a) for a in REFUSED[pair]]])
    with pytest.raises(FcgradError) as refused:  # the description and the outputs: before any array exists
        refuse_outputs(description_from_args(args), args)
    message = str(refused.value)
    flags = [a for a in REFUSED[pair] if a.startswith("-")]
    assert "\n" not in message and any(f in message for f in flags), message


def test_the_example_runs_with_what_the_table_lets_it_run_with():
    argv = ["check", "--example", "xor", "--devices", "2", "--optimizer", "adam", "--batch-size", "2", "--l2", "0.1",
            "--seed", "3", "--epochs", "2", "--dtype", "float32"]  # fmt: skip
    d = description_from_args(build_parser().parse_args(argv))
    assert (d.source, d.devices, d.optimizer.name, d.batch_size, d.l2, d.seed, d.epochs, d.dtype) == (
        "xor",
        2,
        "adam",
        2,
        0.1,
        3,
        2,
        "float32",
    )


# ---- README.md, "One description of a run": the defaults, as `fcgrad check --help` gives them ------------------


def test_the_defaults_are_the_ones_the_help_states(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    for words in (
        "default: and, the blog's",
        "cross-entropy with --spec",
        "default: 8 with --sizes, 64 with --spec",
        "and, xor 0.1, mazur 0.5, digits 0.01; else 0.1 for sgd, momentum and nesterov, 0.001 for rmsprop, "
        "adam and adamw",
        "10000 for and, xor, mazur; 1000 otherwise; digits 5 epochs",
        "default float64",
    ):
        assert words in helped, words
    blog = describe()
    assert (blog.source, blog.loss, blog.samples, blog.optimizer.lr, blog.steps, blog.dtype) == (
        "and", "square", 4, 0.1, 10_000, "float64"
    )  # fmt: skip
    assert [describe(example=e).optimizer.lr for e in ("xor", "mazur", "digits")] == [0.1, 0.5, 0.01]
    assert describe(example="mazur").steps == 10_000
    sizes, spec = describe(sizes=(3, 4, 2)), describe(spec="3-4-2")
    assert (sizes.loss, sizes.samples, sizes.steps) == ("square", 8, 1_000)
    assert (spec.loss, spec.samples, spec.steps) == ("cross-entropy", 64, 1_000)
    assert [describe(sizes=(3, 2), optimizer=o).optimizer.lr for o in ("sgd", "momentum", "nesterov")] == [0.1] * 3
    assert [describe(sizes=(3, 2), optimizer=o).optimizer.lr for o in ("rmsprop", "adam", "adamw")] == [0.001] * 3
    digits = describe(example="digits")  # 1,438 training columns: 23 batches of 64 an epoch, the last smaller
    assert (digits.epochs, digits.batch_size, digits.steps) == (5, 64, 5 * 23)


def test_digits_trains_with_adam_as_the_readme_the_toolbox_page_and_the_help_say():
    digits = describe(example="digits")
    assert digits.optimizer.name == "adam" and digits.optimizer.lr == pytest.approx(0.01, rel=0)
    assert describe(example="digits", optimizer="momentum").optimizer.name == "momentum"  # --optimizer still wins
    assert describe(example="xor").optimizer.name == "sgd"


@pytest.mark.parametrize(
    "argv, steps",
    [(["--example", "mazur", "--epochs", "2"], 2), (["--example", "mazur", "--batch-size", "1", "--steps", "3"], 3),
     (["--sizes", "3,4,2", "--epochs", "2", "--plot", "PLOT"], 2)],
    ids=["mazur-epochs", "mazur-batch-of-its-one-sample", "epochs-of-full-batches-plot"],
)  # fmt: skip
def test_epochs_of_full_batches_run_as_that_many_plain_steps(argv, steps, tmp_path):
    # the table's exceptions: a full batch makes an epoch one step of SGD, so the blog's form runs and can plot
    args = build_parser().parse_args(["check", *[str(tmp_path / "p.png") if a == "PLOT" else a for a in argv]])
    d = description_from_args(args)
    refuse_outputs(d, args)
    assert (d.kind, d.steps, d.optimizer.name) == ("network", steps, "sgd")


# ---- README.md, "One description of a run": what --sizes draws ------------------------------------------------


@pytest.mark.parametrize("loss", ["square", "cross-entropy", "hinge", "bce-logits", "mae"])
def test_sizes_draw_targets_and_an_output_layer_that_suit_the_loss(loss):
    d = describe(sizes=(3, 5, 4), loss=loss, batch=40)
    x, t, _ = build(d)
    linear = loss in ("cross-entropy", "hinge", "bce-logits")
    assert d.activations == ("sigmoid", "identity" if linear else "sigmoid")
    if loss in ("cross-entropy", "hinge"):  # one-hot columns
        assert set(np.unique(t)) == {0.0, 1.0} and np.all(t.sum(axis=0) == 1)
    else:  # uniform in (0, 1)
        assert np.all((t > 0) & (t < 1)) and len(np.unique(t)) == t.size
    assert x.shape == (3, 40) and abs(np.mean(x)) < 0.5 and 0.5 < np.std(x) < 1.5  # X ~ N(0, 1)


# Sample standard deviations of 600 or 120,000 normal draws: within 10% of the truth (about 3 and 70 of their
# standard errors), far from the other rule's value (std 1 against 1/√2 for the 2-input layer; 1/√400 against 1).
STD_SAMPLE_REL = 0.1


def test_initial_weights_are_the_blogs_randn_for_examples_and_n_0_1_over_in_for_sizes():
    blog = [build(describe(example="and", seed=s))[2] for s in range(50)]  # 12 weights a draw
    drawn = np.concatenate([np.concatenate([p[0]["w"].ravel(), p[1]["w"].ravel()]) for p in blog])
    assert np.std(drawn) == pytest.approx(1.0, rel=STD_SAMPLE_REL)
    assert all(np.all(layer["b"] == 0) for p in blog for layer in p)
    wide = build(describe(sizes=(400, 300, 2)))[2]
    assert np.std(wide[0]["w"]) == pytest.approx(1 / np.sqrt(400), rel=STD_SAMPLE_REL)
    assert np.std(wide[1]["w"]) == pytest.approx(1 / np.sqrt(300), rel=STD_SAMPLE_REL)


# ---- README.md, "One import name": a checkout run without installing finds its sibling folders ----------------


def test_a_checkout_run_without_installing_finds_manual_reference_and_benchmarks(tmp_path):
    # -S: no site-packages processing, so no editable install's finder; NumPy and JAX from a plain path entry
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]]),
           "PYTHONDONTWRITEBYTECODE": "1", "JAX_PLATFORMS": "cpu"}  # fmt: skip
    code = (
        "import importlib.util as u, fcgrad.manual.layer as m; print(m.__file__); "  # NumPy only: quick
        "print(u.find_spec('fcgrad.reference').origin); print(u.find_spec('fcgrad.benchmarks').origin)"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = [Path(line) for line in done.stdout.split()]
    assert found == [
        ROOT / "manual" / "layer.py",
        ROOT / "reference" / "__init__.py",
        ROOT / "benchmarks" / "__init__.py",
    ]


# ---- README.md, "Layout": the mutation tool is not part of the default suite ----------------------------------


def test_the_mutation_tool_stays_out_of_the_default_suite():
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert (ROOT / "tools" / "mutate.py").is_file()
    assert not any(Path(p).parts[0] == "tools" for p in ini["testpaths"])
    assert not list((ROOT / "tools").glob("test_*.py"))


# ---- README.md, "Property tests": reproducible in CI, 40 examples, 10× more and randomised when exploring ------


def test_property_tests_are_derandomized_with_40_examples_and_explore_runs_ten_times_more(monkeypatch):
    import test_properties as props

    used = props.test_manual_gradients_match_jax_for_any_network._hypothesis_internal_use_settings
    assert (used.max_examples, used.deadline, used.derandomize) == (40, None, True)
    monkeypatch.setattr(props, "EXPLORE", True)
    explore = props.property_settings(props.JAX_EXAMPLES)
    assert (explore.max_examples, explore.deadline, explore.derandomize) == (400, None, False)


# ---- docs/design.md, "Layering": NamedTuple results; 64-bit JAX only inside the calls that ask for it ---------


def test_manual_returns_named_tuples_with_the_blogs_names():
    p = fcgrad.example("and")
    g = manual.gradients(p.params, p.x, p.t)
    layer = g.layers[0]
    assert isinstance(g, tuple) and hasattr(type(g), "_fields") and hasattr(type(layer), "_fields")
    assert {"residual_z", "grad_w", "grad_b", "residual_x"} <= set(type(layer)._fields)
    cache = manual.layer.fc_forward(p.x, p.params[0]["w"], p.params[0]["b"], "sigmoid")[1]
    back = manual.layer.fc_backward(np.ones((4, 4)), p.params[0]["w"], cache, "sigmoid")
    assert type(back)._fields == ("residual_z", "grad_w", "grad_b", "residual_x")


def test_jax_64_bit_mode_is_on_only_inside_the_calls_that_ask_for_it():
    p = fcgrad.example("and")
    r = fcgrad.reference.gradients(p.params, p.x, p.t, activations=p.activations)  # float64, asked for
    assert r["layers"][0]["grad_w"].dtype == np.float64
    assert not jax.config.read("jax_enable_x64") and jnp.zeros(1).dtype == jnp.float32  # off again outside


# ---- docs/derivation.md, "Backward": ReLU passes the residual where z > 0, zero elsewhere and at the kink --------


def test_relu_passes_the_residual_where_z_is_positive_and_zero_at_the_kink():
    z = np.array([[-1.0, 0.0, 2.0]])
    residual_y = np.array([[3.0, 5.0, 7.0]])
    relu = manual.activations.ACTIVATIONS["relu"]
    residual_z = relu.backward(residual_y, z, relu.forward(z))
    np.testing.assert_array_equal(residual_z, [[0.0, 0.0, 7.0]])  # exact: a copy or a zero, no arithmetic


# ---- docs/derivation.md, "The blog's code, against its own math": the numbers it quotes --------------------------

QUOTED_2_DIGITS_REL = 0.02  # a number quoted to two or three significant digits: within a unit of its last
# two-digit place (5.6e-4 stands for 5.55e-4 to 5.65e-4 and a little beyond, where the run's max and final sit)


@pytest.mark.slow  # the audit's four runs of 10,000 steps, when no test has made them yet
def test_the_blog_codes_departures_part_from_the_right_run_by_the_quoted_amounts_over_10000_steps(blog_audit):
    """Read from ``fcgrad audit``'s JSON (the one run README's sample shows): each departure alone against JAX's
    run, which is manual's to 1e-12 (tests/test_trajectories.py)."""
    findings = {f["cause"]: f for f in blog_audit["json"]["findings"]}
    assert set(findings) == {"unnormalized_loss_grad", "scalar_bias_grad", "residual_after_update"}
    assert {f["steps"] for f in findings.values()} == {10_000}
    missing_n = findings["unnormalized_loss_grad"]
    assert missing_n["final_loss_blog"] == pytest.approx(0.000286, rel=QUOTED_2_DIGITS_REL)
    assert missing_n["final_loss_jax"] == pytest.approx(0.00256, rel=QUOTED_2_DIGITS_REL)
    assert missing_n["param_max_abs_diff"] == pytest.approx(2.15, rel=QUOTED_2_DIGITS_REL)
    assert findings["scalar_bias_grad"]["param_max_abs_diff"] == pytest.approx(4.29, rel=QUOTED_2_DIGITS_REL)
    assert findings["residual_after_update"]["param_max_abs_diff"] == pytest.approx(5.6e-4, rel=QUOTED_2_DIGITS_REL)


def test_on_mazurs_example_the_update_order_error_is_rel_0_16():
    p = fcgrad.example("mazur")
    right = manual.gradients(p.params, p.x, p.t).layers[1].residual_x
    late = blog_gradients(p.params, p.x, p.t, lr=p.lr, departures=BlogDepartures.only("residual_after_update"))
    rel = np.linalg.norm(late.layers[1].residual_x - right) / np.linalg.norm(right)
    assert rel == pytest.approx(0.16, rel=QUOTED_2_DIGITS_REL)


# ---- docs/toolbox.md: L2 on the weights only; the compact batch-norm backward sums to 0 along each row -------------


def test_l2_adds_lambda_w_to_the_weight_gradients_and_nothing_to_b_gamma_or_beta():
    spec = parse_spec("3-4:tanh:bn-2:identity")  # layer 0: w, γ, β (no b under bn); layer 1: w, b
    rng = np.random.default_rng(0)
    params = [{k: v + rng.standard_normal(v.shape) for k, v in layer.items()} for layer in init_spec_params(spec)]
    x, t = rng.standard_normal((3, 6)), rng.standard_normal((2, 6))
    lam = 0.3

    def grads(l2):
        return manual.network.spec_loss_and_gradients(params, x, t, spec, "square", [None] * 2, init_running(spec), l2)

    plain, decayed = grads(0.0), grads(lam)
    penalty = lam / 2 * sum(np.sum(layer["w"] ** 2) for layer in params)
    assert decayed.loss - plain.loss == pytest.approx(penalty, rel=tol.GRAD_REL_TOL_F64)
    for layer, g0, g1 in zip(params, plain.grads, decayed.grads):
        assert set(g1) == set(layer)
        for key in layer:
            extra = lam * layer["w"] if key == "w" else np.zeros_like(layer[key])
            np.testing.assert_allclose(g1[key] - g0[key], extra, rtol=0, atol=tol.GRAD_REL_TOL_F64)


# Entries of δx are O(1); a row sum of N of them in float64 is zero to a few units of 1e-16.
ROW_SUM_ABS_TOL = 1e-13


def test_every_row_of_the_compact_batchnorm_backward_sums_to_zero():
    rng = np.random.default_rng(1)
    x, residual_y = rng.standard_normal((5, 9)), rng.standard_normal((5, 9))
    gamma, beta = rng.uniform(0.5, 2, (5, 1)), rng.standard_normal((5, 1))
    residual_x = batchnorm_backward(residual_y, batchnorm_forward(x, gamma, beta)[1]).residual_x
    np.testing.assert_allclose(residual_x.sum(axis=1), 0.0, rtol=0, atol=ROW_SUM_ABS_TOL)


# ---- README.md, "The protocols of `audit --code`": SIZES in the file chooses the layer widths ----------------------


def test_a_files_sizes_declaration_chooses_the_widths_it_is_audited_with(tmp_path):
    from fcgrad.audits.code import audit_code

    path = tmp_path / "net.py"
    source = (ROOT / "tests" / "fixtures" / "step_net.py").read_text(encoding="utf-8")
    path.write_text(source.replace('LOSS = "square"', 'LOSS = "square"\nSIZES = (3, 5, 2)'), encoding="utf-8")
    report = audit_code(str(path), steps=1)
    assert report.problem.sizes == (3, 5, 2) and report.ok
