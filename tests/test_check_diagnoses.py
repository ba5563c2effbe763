"""``fcgrad check`` names the classic mistake behind a failing gradient row, and names nothing on correct code."""

import pytest
from test_broken_derivations import PROBLEMS, VARIANTS, _apply

from fcgrad.engine.description import describe_problem
from fcgrad.engine.report_forms import from_network
from fcgrad.engine.run import check
from fcgrad.reports.check import text

# variant -> the catalogue entry its first failing row must carry
NAMED = {
    "grad_b-summed-over-all-axes": ((0, "grad_b"), "bias_summed_over_all_axes"),
    "grad_w-missing-transpose": ((0, "grad_w"), "transposed"),
    "loss-drops-1/N": ((2, "residual_y"), "missing_1_over_n"),
    "sigmoid-derivative-y": ((2, "residual_z"), "sigmoid_prime_as_y"),
}


def run_json(report) -> dict:
    """The ``--json`` object, less its meta, of a network check: its one ``RunReport``'s."""
    return from_network(describe_problem(report.problem), report, seconds=0.0).as_json()


@pytest.mark.parametrize("variant", list(NAMED))
def test_a_failing_row_of_check_is_named_by_the_catalogue(variant, monkeypatch):
    problem, patch, _ = VARIANTS[variant]
    _apply(monkeypatch, patch)
    report = check(PROBLEMS[problem].with_options(steps=2), finite_differences=False)
    where, name = NAMED[variant]
    assert name in [d.name for d in report.diagnoses[where]]
    assert f"layer {where[0]} {where[1]}: looks like" in text(report, quiet=True)
    named = [f["name"] for f in run_json(report)["findings"] if (f["layer"], f["quantity"]) == where]
    assert named == [d.name for d in report.diagnoses[where]]


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_correct_code_gets_no_diagnosis(problem):
    report = check(PROBLEMS[problem].with_options(steps=2), finite_differences=False)
    assert report.ok and report.diagnoses == {} and run_json(report)["findings"] == []


def test_the_layer_helper_names_the_mistake_in_its_message():
    import jax
    import numpy as np

    from fcgrad.testing import assert_backward_matches

    def forward(x, w, b):
        return jax.nn.sigmoid(w.T @ x + b)

    def backward(residual_y, x, w, b):
        y = 1 / (1 + np.exp(-(w.T @ x + b)))  # (out, N)
        residual_z = residual_y * y * (1 - y)  # (out, N)
        grad_b = np.full((w.shape[1], 1), np.sum(residual_z))  # the blog's code: one sum over everything
        return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": grad_b}

    with pytest.raises(AssertionError, match="looks like a bias gradient summed over all axes"):
        assert_backward_matches(forward, backward, {"x": (3, 5), "w": (3, 4), "b": (4, 1)})
