"""``audit --code``: a user's network file against JAX, each mistake located and named; errors name their line."""

import functools
import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from fcgrad.audits.code import audit_code
from fcgrad.audits.report import as_json, text
from fcgrad.cli.main import main
from fcgrad.engine.problems import and_example, random_problem
from fcgrad.manual.errors import FcgradError

ROOT = Path(__file__).resolve().parent.parent
BLOG = str(ROOT / "tests" / "fixtures" / "blog_net.py")
STEP = str(ROOT / "tests" / "fixtures" / "step_net.py")
EXAMPLE = str(ROOT / "examples" / "blog_shaped_net.py")
STEPS = 30  # enough to see the drift; the default (the problem's 10,000) is for people

# (layer, quantity) -> the catalogue entry that must name it
BLOG_DEPARTURES = {
    (1, "residual_y"): "missing_1_over_n",  # SquareLoss.backward returns y − t
    (1, "residual_x"): "residual_through_updated_w",  # w updated before residual_x = w·residual_z
    (0, "grad_b"): "bias_summed_over_all_axes",  # np.sum(residual_z) on the 4-unit layer
}
EXAMPLE_MISTAKES = {(1, "residual_y"): "square_loss_half", (0, "residual_z"): "tanh_prime_as_one_minus_y"}


# The example with its two MISTAKE lines fixed: a correct network in the blog's class shape.
FIXES = {
    "return 2 * (self.y - self.t) / self.y.shape[1]": "return (self.y - self.t) / self.y.shape[1]",
    "return 1 - y  # MISTAKE": "return 1 - y * y  #",
}


@pytest.fixture(scope="module")
def correct(tmp_path_factory) -> str:
    source = Path(EXAMPLE).read_text()
    for wrong, right in FIXES.items():
        assert wrong in source
        source = source.replace(wrong, right)
    path = tmp_path_factory.mktemp("correct") / "correct_net.py"
    path.write_text(source)
    return str(path)


@functools.cache
def _audit(path: str):
    return audit_code(path, steps=STEPS)


def _named(report) -> dict:
    return {(f.layer, f.quantity): [d.name for d in f.diagnoses][:1] for f in report.findings}


def test_the_blogs_code_has_its_three_departures_found_and_named():
    report = _audit(BLOG)
    assert report.protocol == "classes" and report.problem.name == "and"
    assert _named(report) == {k: [v] for k, v in BLOG_DEPARTURES.items()}
    assert report.drift.first_step_params_differ == 1


def test_the_blogs_code_through_the_audit_command(capsys):
    assert main(["audit", "--code", str(BLOG), "--steps", str(STEPS), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = {(f["layer"], f["quantity"]): f["diagnoses"][0]["name"] for f in out["findings"]}
    assert names == BLOG_DEPARTURES


def test_the_example_files_two_planted_mistakes_are_found_and_named():
    report = _audit(EXAMPLE)
    assert _named(report) == {k: [v] for k, v in EXAMPLE_MISTAKES.items()}
    assert report.problem.activations == ("tanh", "sigmoid")  # read off the file's forward


def test_a_correct_class_network_has_no_finding_and_no_drift(correct):
    report = _audit(correct)
    assert report.ok and report.findings == []
    assert all(r.ok for r in report.end_to_end + report.isolated)
    assert report.drift.first_step_params_differ is None
    assert text(report).splitlines()[-1] == "no findings: the file matches JAX"


def test_a_correct_network_driven_into_saturation_has_no_finding(correct):
    # |z| ≈ 30: gradients read back from the update lose digits against |w| (rel 5e-6 measured), and
    # 1 − y² from a saturated y loses them too; both stay under their rounding floors
    p = random_problem([3, 5, 2], activations=["tanh", "sigmoid"], batch=8, seed=3)
    p = replace(p, params=[{"w": layer["w"] * 30, "b": layer["b"] + 5} for layer in p.params])
    report = audit_code(correct, p, steps=5)
    assert report.findings == [] and report.ok


def test_a_correct_step_function_has_no_finding():
    report = _audit(STEP)
    assert report.protocol == "step" and report.ok and report.drift.first_step_params_differ is None


def _write(tmp_path, body: str, name="net.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_a_step_function_with_the_scalar_bias_is_named_at_its_first_wrong_quantity(tmp_path):
    path = _write(tmp_path, Path(STEP).read_text().replace("BIAS_ALL_AXES = False", "BIAS_ALL_AXES = True"))
    report = audit_code(path, steps=STEPS)
    assert _named(report) == {(0, "grad_b"): ["bias_summed_over_all_axes"]}


def test_the_json_has_the_findings_and_the_drift():
    out = as_json(_audit(EXAMPLE))
    assert out["protocol"] == "classes" and len(out["findings"]) == 2
    assert out["drift"]["steps"] == STEPS


def test_a_syntax_error_names_the_users_file_and_line(tmp_path):
    path = _write(tmp_path, "import numpy as np\n\nclass Net:\n    def __init__(self)\n        pass\n")
    with pytest.raises(FcgradError, match=rf"^{path}:4: loading net.py raised SyntaxError"):
        audit_code(path)


def test_an_exception_inside_the_users_backward_names_its_line(tmp_path, correct):
    wrong = "        residual_x = self.w.T @ residual_z  # wrong shape"
    source = Path(correct).read_text().replace("        residual_x = self.w @ residual_z", wrong)
    path = _write(tmp_path, source)
    line = next(i for i, s in enumerate(source.splitlines(), 1) if "wrong shape" in s)
    with pytest.raises(FcgradError, match=rf"^{path}:{line}: layer 1 backward raised ValueError"):
        audit_code(path, steps=STEPS)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("x = 1\n", "expected a class Net \\(or a function step\\(params, X, T, lr\\)\\); found neither"),
        ("class Net:\n    pass\n", "Net has no layers"),
        ("class Net:\n    def __init__(self):\n        raise RuntimeError('no')\n", r":3: Net\(\) raised RuntimeError"),
    ],
    ids=["nothing", "no-layers", "init-raises"],
)
def test_a_file_outside_both_protocols_gets_one_line(tmp_path, body, expected):
    with pytest.raises(FcgradError, match=expected):
        audit_code(_write(tmp_path, body))


def test_a_layer_without_lr_is_named_with_its_class(tmp_path, correct):
    source = Path(correct).read_text().replace("        self.lr = lr\n", "")
    with pytest.raises(FcgradError, match=r"layer 0 has no lr"):
        audit_code(_write(tmp_path, source))


def test_a_network_of_other_widths_than_the_problem_is_refused_before_any_work(correct):
    with pytest.raises(FcgradError, match="the network has sizes 3-5-2, the problem 2-4-1"):
        audit_code(correct, and_example())


def test_a_forward_that_is_no_library_activation_is_refused(tmp_path, correct):
    source = Path(correct).read_text().replace("return np.tanh(z)", "return np.sin(z)")
    with pytest.raises(FcgradError, match="layer 0 forward f\\(wᵀx \\+ b\\) matches none of sigmoid, tanh"):
        audit_code(_write(tmp_path, source))
