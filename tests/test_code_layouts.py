"""``audit --code`` in the file's own layout: weights (in, out) or (out, in), samples by column or by row.

The layout is declared once, in the file (``WEIGHTS``, ``SAMPLES``) or on the command line (``--weights``,
``--samples``); networks written PyTorch's way, the courses' way and the textbook's way audit as they are,
and what the user reads (shapes, indices, the catalogue's words) is in their layout.
"""

import json
from pathlib import Path

import pytest

from fcgrad.audits.code import audit_code
from fcgrad.cli.main import main
from fcgrad.engine.problems import random_problem
from fcgrad.manual.errors import FcgradError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STEPS = 20  # enough to see any drift; the problem's 10,000 are for people
LAYOUT_FILES = {  # a correct network in each common layout -> (weights, samples) it declares
    "torch_style_net.py": ("out,in", "rows"),  # x (N, in), W (out, in), x·Wᵀ + b, modules, store then step(lr)
    "course_style_net.py": ("out,in", "columns"),  # W (out, in), A (n, m), forward/backward functions
    "textbook_net.py": ("out,in", "columns"),  # one sample at a time, update_mini_batch(batch, eta)
    "cs231n_style_net.py": ("in,out", "rows"),  # X (N, D), W (D, H), params dict, train_step(X, T)
}
TORCH = FIXTURES / "torch_style_net.py"


def _source_without_layout(path: Path) -> str:
    lines = path.read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(("WEIGHTS =", "SAMPLES =")))


@pytest.mark.parametrize("name", list(LAYOUT_FILES))
def test_a_correct_network_audits_in_its_own_layout_with_no_adapter_and_no_finding(name):
    report = audit_code(str(FIXTURES / name), steps=STEPS)
    assert (report.layout.weights, report.layout.samples) == LAYOUT_FILES[name]
    assert report.ok and report.findings == [] and report.inherited == []
    assert report.drift.first_step_params_differ is None


def test_a_correct_network_in_its_own_layout_passes_on_a_random_problem_too():
    p = random_problem([3, 5, 2], activations=["tanh", "sigmoid"], batch=8, seed=4)
    report = audit_code(str(TORCH), p, steps=STEPS)
    assert report.ok and report.problem.sizes == (3, 5, 2)


def test_the_command_line_declares_the_layout_of_a_file_that_declares_none(tmp_path, capsys):
    path = tmp_path / "net.py"
    path.write_text(_source_without_layout(TORCH))
    argv = ["audit", "--code", str(path), "--steps", str(STEPS), "--json"]
    assert main([*argv, "--weights", "out,in", "--samples", "rows"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["layout"] == {
        "weights": "out,in",
        "samples": "rows",
        "from": "--weights out,in; --samples rows",
    }


def test_weights_that_join_only_the_other_way_are_read_off_their_shapes_and_said(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(
        _source_without_layout(TORCH).replace("import numpy as np\n", 'import numpy as np\n\nSAMPLES = "rows"\n')
    )
    report = audit_code(str(path), steps=2)
    assert report.layout.weights == "out,in" and report.layout.samples == "rows" and report.ok
    assert "read as (out, in)" in report.layout_from and "read off the shapes" in report.layout_from


def test_a_bias_of_the_other_samples_layout_is_read_off_its_shape_and_said(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(
        _source_without_layout(TORCH).replace("import numpy as np\n", 'import numpy as np\n\nWEIGHTS = "out,in"\n')
    )
    report = audit_code(str(path), steps=2)
    assert report.layout.samples == "rows" and report.ok
    assert "samples by row: the biases are (4,), (1,)" in report.layout_from


def test_a_layout_the_shapes_contradict_is_refused_naming_the_declaration(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(
        _source_without_layout(TORCH).replace(
            "import numpy as np\n", 'import numpy as np\n\nWEIGHTS = "in,out"\nSAMPLES = "rows"\n'
        )
    )
    with pytest.raises(FcgradError, match=r"read as \(out, in\).*not as declared \(WEIGHTS = 'in,out'"):
        audit_code(str(path))


def test_a_layout_declared_twice_differently_is_refused_in_one_line(capsys):
    assert main(["audit", "--code", str(TORCH), "--weights", "in,out"]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "--weights in,out" in err
        and "torch_style_net.py:11 declares WEIGHTS = 'out,in'" in err
    )


def test_a_layout_declared_twice_alike_is_accepted():
    report = audit_code(str(TORCH), steps=1, weights="out,in", samples="rows")
    assert report.ok


@pytest.mark.parametrize("line", ['WEIGHTS = "out-in"', 'SAMPLES = "cols"', "WEIGHTS = 2"])
def test_a_declared_layout_that_is_none_of_the_two_names_its_line(tmp_path, line):
    path = tmp_path / "net.py"
    path.write_text(f"{line}\n" + _source_without_layout(TORCH))
    with pytest.raises(FcgradError, match=rf"^{path}:1: (WEIGHTS|SAMPLES): expected one of"):
        audit_code(str(path))


def test_the_layout_options_belong_to_audit_code_only(capsys):
    assert main(["audit", "--weights", "out,in"]) == 2
    assert "--weights/--samples without --code" in capsys.readouterr().err


# ---- what the user reads, in their layout ----


def _torch_with(tmp_path, old: str, new: str) -> str:
    source = TORCH.read_text()
    assert old in source
    path = tmp_path / "net.py"
    path.write_text(source.replace(old, new))
    return str(path)


def test_the_largest_difference_is_indexed_as_the_file_holds_the_array(tmp_path):
    # one entry of the first layer's dW, W being (out, in) = (4, 2): the blog's layout would say (1, 3)
    planted = (
        "self.dW = grad_out.T @ self.x  # (out, N)·(N, in) -> (out, in)\n        if self.W.shape == (4, 2):\n"
        "            self.dW[3, 1] += 0.5"
    )
    path = _torch_with(tmp_path, "self.dW = grad_out.T @ self.x  # (out, N)·(N, in) -> (out, in)", planted)
    report = audit_code(path, steps=STEPS)
    [finding] = report.findings
    assert (finding.layer, finding.quantity, finding.index) == (0, "grad_w", (3, 1))
    assert finding.value - finding.expected == pytest.approx(0.5)


def test_a_bias_summed_over_all_axes_is_told_in_the_rows_layouts_words(tmp_path):
    path = _torch_with(tmp_path, "self.db = grad_out.sum(axis=0)  # (out,)", "self.db = grad_out.sum()  # a scalar")
    report = audit_code(path, steps=STEPS)
    assert [(f.layer, f.quantity) for f in report.findings] == [(0, "grad_b")]  # the output layer has one unit
    [d] = report.findings[0].diagnoses
    assert d.name == "bias_summed_over_all_axes"
    assert "over the N rows only (axis=0)" in d.message and "axis=1" not in d.message


def test_a_transposed_residual_is_told_in_the_files_shapes(tmp_path):
    # a correct step in the rows layout that returns its residual_x transposed: (in, N) where it holds (N, in)
    source = (FIXTURES / "qa_sigma_prime_of_upstream.py").read_text()
    source = source.replace(
        "hidden_error * sigmoid_derivative(hidden_error)", "hidden_error * sigmoid_derivative(hidden)"
    )
    source = source.replace('"residual_x": [None, hidden_error]', '"residual_x": [None, hidden_error.T]')
    path = tmp_path / "net.py"
    path.write_text(source.replace('LOSS = "square"', 'LOSS = "square"\nSIZES = (3, 5, 1)'))
    report = audit_code(str(path), steps=1)
    [finding] = report.findings
    assert (finding.layer, finding.quantity) == (1, "residual_x")
    assert [d.name for d in finding.diagnoses] == ["transposed"]
    assert "JAX's (8, 5)ᵀ" in finding.diagnoses[0].message  # (N, in) as the file holds it, not the blog's (5, 8)


def test_functions_whose_own_init_makes_the_other_weights_layout_are_read_in_it(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(_source_without_layout(FIXTURES / "course_style_net.py"))
    report = audit_code(str(path), steps=2)
    assert (report.layout.weights, report.layout.samples) == ("out,in", "columns")
    assert "initialize_parameters" in report.layout_from
    assert report.findings == [] and report.ok


def test_a_layout_asked_for_that_the_files_own_arrays_contradict_is_refused(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(_source_without_layout(FIXTURES / "course_style_net.py"))
    with pytest.raises(FcgradError, match=r"--weights in,out: the file's own arrays are w \(out, in\)"):
        audit_code(str(path), weights="in,out")


def test_a_layout_read_off_the_arrays_keeps_the_part_asked_for_that_agrees(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(_source_without_layout(FIXTURES / "course_style_net.py"))
    report = audit_code(str(path), weights="out,in", steps=2)  # the samples, not asked for, read off the arrays
    assert report.layout_from.startswith("--weights out,in") and report.ok
    with pytest.raises(FcgradError, match=r"--samples rows: the file's own arrays are .* samples by column"):
        audit_code(str(path), weights="out,in", samples="rows")
