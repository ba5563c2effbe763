"""What the report promises: the tolerances in force, the rule of each row, the first failing
step, nothing claimed for zero steps, a warning when every gradient is zero, softmax outputs
labelled, a quiet form, and an ASCII fallback."""

import json

import numpy as np
import pytest

from fcgrad import manual
from fcgrad.cli.render import render
from fcgrad.engine.check_run import check_run
from fcgrad.engine.description import describe, describe_problem
from fcgrad.engine.problems import example, random_problem
from fcgrad.engine.report_forms import from_network
from fcgrad.engine.run import check
from fcgrad.reports.check import ascii_fallback, text


def run_json(report) -> dict:
    """The ``--json`` object, less its meta, of a network check: its one ``RunReport``'s."""
    return from_network(describe_problem(report.problem), report, seconds=0.0).as_json()


@pytest.fixture(scope="module")
def and_run():
    return check_run(describe(example="and", steps=30))


@pytest.fixture(scope="module")
def and_report(and_run):
    return and_run.report.detail  # the network form's own report, which the text is drawn from


def test_header_shows_the_tolerances_in_force(and_run, and_report):
    out = text(and_report)
    assert "gradients rel ≤ 1.0e-12" in out and "trajectory max|Δ| ≤ 1.0e-12" in out
    assert "rule global" in out
    in_force = render(and_run).tolerances  # the --json object's meta.tolerances
    assert {k: in_force[k] for k in ("gradient_rel", "trajectory_abs", "trajectory_rule")} == {
        "gradient_rel": 1e-12, "trajectory_abs": 1e-12, "trajectory_rule": "global"
    }  # fmt: skip
    data = and_run.report.as_json()
    assert [c["rule"] for c in data["trajectories"]] == ["global"]
    assert {r["rule"] for c in data["trajectories"] for r in c["rows"]} == {"global"}
    json.dumps(data)  # plain JSON


def test_zero_steps_say_there_is_nothing_to_compare():
    report = check(example("and").with_options(steps=0), finite_differences=False)
    out = text(report)
    assert "nothing to compare" in out and "every one of 0" not in out
    assert report.trajectory == [] and "every step of 0" not in out


def test_a_failed_row_gives_its_first_step_in_text_and_json(monkeypatch):
    real = manual.network.run_steps
    count = {"n": 0}

    def run_steps(step, params, steps, **kw):
        def planted(p):
            value, new = step(p)
            count["n"] += 1
            return (value + 1e-6 if count["n"] == 13 else value), new

        return real(planted, params, steps, **kw)

    monkeypatch.setattr(manual.network, "run_steps", run_steps)
    report = check(example("and").with_options(steps=20), finite_differences=False)
    assert not report.ok
    assert "MISMATCH from step 12" in text(report) and "first step beyond tolerance: 12" in text(report)
    assert [c["first_bad_step"] for c in run_json(report)["trajectories"]] == [12]
    quiet = text(report, quiet=True)
    assert quiet.startswith("FAILED") and "layer all loss" in quiet.splitlines()[0]
    assert "final loss" not in quiet and len(quiet.splitlines()) == 4  # verdict, title, header, the one row


def test_quiet_ok_is_one_line(and_report):
    assert text(and_report, quiet=True).splitlines() == [text(and_report).splitlines()[-1]]


def test_all_zero_gradients_warn_that_the_check_proves_nothing():
    p = random_problem((3, 2), activations="relu", batch=4, steps=2)
    p = p.with_options()  # relu with every unit dead: all-negative z, every gradient exactly zero
    dead = [{"w": np.zeros_like(p.params[0]["w"]), "b": np.full_like(p.params[0]["b"], -1.0)}]
    from dataclasses import replace

    report = check(replace(p, params=dead), finite_differences=False)
    assert report.all_gradients_zero and "proves nothing" in text(report)
    assert not check(p, finite_differences=False).all_gradients_zero


def test_cross_entropy_outputs_are_softmax_probabilities():
    report = check(random_problem((3, 4), loss="cross-entropy", batch=5, steps=3), finite_differences=False)
    out = text(report)
    assert "softmax(y)=" in out and "\ny=" not in out
    output = run_json(report)["extras"]["output"]
    assert output["y_is"] == "softmax probabilities"
    probabilities = np.array(output["y"])
    assert np.all(probabilities > 0) and np.allclose(probabilities.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    printed = out.split("softmax(y)=")[1].split("\n(")[0]
    values = np.array([float(v) for v in printed.replace("[", " ").replace("]", " ").replace(",", " ").split()])
    np.testing.assert_allclose(values, probabilities.ravel(), rtol=1e-5)  # printed to 6 significant digits


def test_ascii_fallback_encodes_the_whole_report(and_report):
    out = ascii_fallback(text(and_report))
    out.encode("ascii")  # raises if anything is left
    assert "max|d|" in out and "<=" in out and "||d||" in out
    assert ascii_fallback("a — b ≤ c · d ‖e‖ Δ") == "a - b <= c * d ||e|| d"
    assert ascii_fallback("λ = 2") == "? = 2"  # a character without an ASCII form still encodes


def test_json_and_histories_keep_the_per_step_max_diff():
    report = check(example("and").with_options(steps=15), finite_differences=False)
    h = report.histories
    assert set(h) == {"maxdiff_loss", "maxdiff_w0", "maxdiff_b0", "maxdiff_w1", "maxdiff_b1"}
    assert all(v.shape == (15,) for v in h.values())
    assert max(h["maxdiff_w0"]) == next(r.max_abs_err for r in report.trajectory if (r.layer, r.quantity) == (0, "w"))
