"""``audit --code``: a user's network file against JAX, each mistake located and named; errors name their line."""

import functools
import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from fcgrad.audits.code import audit_code
from fcgrad.audits.code.report import as_json, text
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
    assert report.protocol == "classes" and report.problem.name == "2-4-1" and report.problem.batch == 8  # random, N 8
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


def test_a_missing_file_is_named_by_the_python_argument_and_by_the_option_on_the_command_line(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # a relative name, looked for from a folder that does not hold it
    with pytest.raises(FcgradError) as info:
        audit_code("examples/blog_shaped_net.py")
    message = str(info.value)
    assert message.startswith("path: expected an existing .py file, got 'examples/blog_shaped_net.py'"), message
    assert "--code" not in message and repr(str(tmp_path)) in message  # where the relative name was looked for
    assert main(["audit", "--code", "examples/blog_shaped_net.py"]) == 2
    assert capsys.readouterr().err.startswith("fcgrad audit: error: --code: expected an existing .py file")


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
        ("x = 1\n", "fits no protocol of audit --code; found nothing callable; closest: classes"),
        (
            "class Net:\n    pass\n",
            r"net.py:1: fits no protocol .*; found class Net\(\); closest: classes .*but no layers",
        ),
        ("class Net:\n    def __init__(self):\n        raise RuntimeError('no')\n", r":3: Net\(\) raised RuntimeError"),
    ],
    ids=["nothing", "no-layers", "init-raises"],
)
def test_a_file_outside_both_protocols_gets_one_line(tmp_path, body, expected):
    with pytest.raises(FcgradError, match=expected):
        audit_code(_write(tmp_path, body))


def test_a_layer_without_lr_is_named_with_its_class(tmp_path, correct):
    source = Path(correct).read_text().replace("        self.lr = lr\n", "")
    path = _write(tmp_path, source)
    line = next(i for i, s in enumerate(source.splitlines(), 1) if "def backward(self, residual_y)" in s)
    with pytest.raises(FcgradError, match=rf"^{path}:{line}: layer 1 \(SigmoidLayer\) has no lr; expected"):
        audit_code(path)


def test_a_network_of_other_widths_than_the_problem_is_refused_before_any_work(correct):
    with pytest.raises(FcgradError, match="the network has sizes 3-5-2, the problem 2-4-1"):
        audit_code(correct, and_example())


def test_a_forward_that_is_no_library_activation_is_refused(tmp_path, correct):
    source = Path(correct).read_text().replace("return np.tanh(z)", "return np.sin(z)")
    with pytest.raises(FcgradError, match="layer 0 forward f\\(wᵀx \\+ b\\) matches none of sigmoid, tanh"):
        audit_code(_write(tmp_path, source))


# ---- every origin, not only the first ----


def _example_with(tmp_path, changes: dict) -> str:
    """The example with its two mistakes fixed, its backward's residual_z renamed (hidden from the audit), and
    ``changes`` made."""
    source = Path(EXAMPLE).read_text()
    for wrong, right in {**FIXES, "residual_z": "r_z", **changes}.items():
        assert wrong in source, wrong
        source = source.replace(wrong, right)
    return _write(tmp_path, source)


def _origins(report) -> list[tuple[int, str]]:
    return [(f.layer, f.quantity) for f in report.findings]


def test_what_follows_from_an_origin_is_reported_as_inherited_from_it(tmp_path):
    path = _example_with(tmp_path, {"return y * (1 - y)": "return y  # σ' as y"})
    report = audit_code(path, random_problem([3, 5, 2], activations=["tanh", "sigmoid"], batch=8, seed=3), steps=2)
    inherited = {(h.layer, h.quantity): h.origin for h in report.inherited}
    below = [(1, "grad_w"), (1, "grad_b"), (1, "residual_x"), (0, "grad_w"), (0, "grad_b")]
    assert inherited == {k: (1, "residual_z") for k in below}
    assert not set(inherited) & set(_origins(report))


def test_a_row_is_inherited_from_the_finding_whose_error_it_carries_not_the_nearest_one_above(tmp_path):
    path = _example_with(
        tmp_path,
        {
            "return (self.y - self.t) / self.y.shape[1]": "return 4 * (self.y - self.t) / self.y.shape[1]",
            "grad_w = self.x @ r_z.T": "grad_w = self.x @ r_z.T * (3 if isinstance(self, TanhLayer) else 1)",
        },
    )
    report = audit_code(path, random_problem([3, 5, 2], activations=["tanh", "sigmoid"], batch=8, seed=3), steps=2)
    assert _origins(report) == [(1, "residual_y"), (0, "grad_w")]
    inherited = {(h.layer, h.quantity): h.origin for h in report.inherited}
    # layer 0's grad_b is computed from its residual_z, which carries the loss's factor 4, never from grad_w
    assert inherited[(0, "grad_b")] == (1, "residual_y")
    assert inherited[(1, "grad_w")] == (1, "residual_y")


def test_a_sum_over_the_samples_is_one_finding_and_hides_nothing_after_it():
    report = _audit(BLOG)
    summed = [f for f in report.findings if f.diagnoses[0].name == "missing_1_over_n"]
    assert [(f.layer, f.quantity, f.line) for f in summed] == [(1, "residual_y", 14)]
    # what carries only the factor N is judged against N × JAX's: not inherited, and the mistakes below are found
    inherited = {(h.layer, h.quantity): h.origin for h in report.inherited}
    assert (1, "residual_z") not in inherited and (1, "grad_w") not in inherited
    assert inherited == {(0, "residual_z"): (1, "residual_x"), (0, "grad_w"): (1, "residual_x")}
    assert any("N = 8 × the gradient of the mean loss" in n and "line 14" in n for n in report.notes)


def test_two_wrong_formulas_in_one_layer_are_two_origins_not_one_blamed_on_residual_z(tmp_path):
    path = _example_with(
        tmp_path,
        {
            "grad_w = self.x @ r_z.T": "grad_w = self.x @ r_z.T * (2 if isinstance(self, TanhLayer) else 1)",
            "grad_b = np.sum(r_z, axis=1, keepdims=True)": (
                "grad_b = np.sum(r_z) if isinstance(self, TanhLayer) else np.sum(r_z, axis=1, keepdims=True)"
            ),
        },
    )
    report = audit_code(path, random_problem([3, 5, 2], activations=["tanh", "sigmoid"], batch=8, seed=3), steps=2)
    assert _origins(report) == [(0, "grad_w"), (0, "grad_b")]
    assert _named(report) == {(0, "grad_w"): ["square_loss_half"], (0, "grad_b"): ["bias_summed_over_all_axes"]}
    # each placed at its own statement, so no hint that one residual_z might explain both
    assert [f.statement.split(" = ")[0] for f in report.findings] == ["grad_w", "grad_b"]
    assert all("the audit cannot see" not in f.note for f in report.findings)


def test_a_residual_z_the_backward_does_not_name_is_found_from_the_three_quantities_it_explains(tmp_path):
    path = _example_with(tmp_path, {"return y * (1 - y)": "return y  # σ' as y"})
    report = audit_code(path, random_problem([3, 5, 2], activations=["tanh", "sigmoid"], batch=8, seed=3), steps=2)
    assert _named(report) == {(1, "residual_z"): ["sigmoid_prime_as_y"]}
    assert report.findings[0].note.startswith("implied: the backward names no residual_z")
    assert {(h.layer, h.quantity) for h in report.inherited if h.origin == (1, "residual_z")} >= {
        (1, "grad_w"),
        (1, "grad_b"),
        (1, "residual_x"),
    }


# Mistakes seen in public Q&A threads, written as step files (tests/fixtures/qa_*.py): each located where it is
# made, an independent second one as a second origin, what follows from them inherited.
QA_ORIGINS = {
    "qa_sigma_prime_of_upstream.py": [(0, "residual_z")],
    "qa_grad_w_from_output.py": [(0, "grad_w")],
    "qa_grad_w_times_w.py": [(1, "grad_w"), (1, "residual_x")],
    "qa_hidden_residual_not_through_w.py": [(1, "residual_x")],
    "qa_two_mistakes.py": [(1, "grad_b"), (0, "residual_z")],
}
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.mark.parametrize("name", list(QA_ORIGINS))
def test_a_real_mistake_is_located_where_it_is_made_and_every_independent_one_too(name):
    report = _audit(str(FIXTURES / name))
    assert report.protocol == "step"
    assert _origins(report) == QA_ORIGINS[name]
    assert all(h.origin in QA_ORIGINS[name] for h in report.inherited)


def test_a_hidden_layer_fed_a_wrong_residual_inherits_it_and_is_not_an_origin():
    report = _audit(str(FIXTURES / "qa_hidden_residual_not_through_w.py"))
    assert {(h.layer, h.quantity) for h in report.inherited} == {(0, "residual_z"), (0, "grad_w"), (0, "grad_b")}


# The catalogue's names for the same mistakes, in the file's layout (see fcgrad/diagnosis/mistakes.py).
QA_NAMES = {
    "qa_sigma_prime_of_upstream.py": {(0, "residual_z"): "sigma_prime_of_upstream"},
    "qa_grad_w_from_output.py": {(0, "grad_w"): "grad_w_from_output"},
    "qa_grad_w_times_w.py": {(1, "grad_w"): "grad_w_times_w", (1, "residual_x"): "activation_derivative_dropped"},
    "qa_hidden_residual_not_through_w.py": {(1, "residual_x"): "hidden_residual_not_through_w"},
    "qa_two_mistakes.py": {(1, "grad_b"): "one_over_wrong_n", (0, "residual_z"): "sigma_prime_of_upstream"},
}


@pytest.mark.parametrize("name", list(QA_NAMES))
def test_a_real_mistake_is_named_by_the_catalogue(name):
    report = _audit(str(FIXTURES / name))
    assert {k: v[0] for k, v in _named(report).items() if v} == QA_NAMES[name]


def test_the_names_speak_in_the_files_layout():
    [finding] = _audit(str(FIXTURES / "qa_grad_w_from_output.py")).findings  # W (out, in), samples by column
    assert "(it is residual_z·xᵀ)" in finding.diagnoses[0].message
