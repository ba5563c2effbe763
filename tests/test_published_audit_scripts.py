"""audit --code on the published shapes whose network is assembled by the file's own script.

``dense_framework.py`` (with its sibling ``dense_layers.py``), ``tutorial_layers.py`` and ``nnfs_model.py`` build
their net under ``if __name__ == "__main__":`` and train it with one call. Each audits as written, with no finding;
each mistake of ``planted.py``, planted in a copy of the folder, is one finding at the planted line of the planted
file, its statement as planted, named by the catalogue. The planted copies run on square layers, where the
mistakes that need two equal sizes (w for wᵀ, a layer's output for its input) still run, and the tutorial's on
three outputs, where a mean over the outputs is more than one number.
"""

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fcgrad.audits.code import audit_code
from fcgrad.audits.code import script as code_script
from fcgrad.audits.code.load import load_module, user_folder
from fcgrad.audits.code.problem import with_classes
from fcgrad.audits.code.script import catch_training
from fcgrad.cli.main import main
from fcgrad.engine.problems import random_problem
from fcgrad.manual.errors import FcgradError

PUBLISHED = Path(__file__).parent / "fixtures" / "published"
sys.path.insert(0, str(PUBLISHED))
from planted import PLANTED, planted_copy  # noqa: E402

STEPS = 2  # the trace reads step 0; the drift needs only a step or two here
SHAPES = ("dense_framework", "tutorial_layers", "nnfs_model")
SQUARE = {"dense_framework": (4, 4, 4), "tutorial_layers": (3, 3, 3), "nnfs_model": (3, 3, 3)}
CATALOGUE_NAME = {  # (shape, planted name) -> the catalogue's name for it
    ("dense_framework", "derivative_form_at_z"): "derivative_form_at_z",
    ("dense_framework", "residual_through_w_transposed"): "residual_through_w_transposed",
    ("dense_framework", "update_sign"): "flipped_sign",
    ("tutorial_layers", "derivative_at_y"): "derivative_at_y",
    ("tutorial_layers", "wrong_n"): "missing_1_over_n",  # the 1/size of a mean over the outputs
    ("tutorial_layers", "update_sign"): "flipped_sign",
    ("nnfs_model", "wrong_n"): "one_over_wrong_n",  # 1/(N·C) where 1/N belongs
    ("nnfs_model", "grad_w_from_output"): "grad_w_from_output",
    ("nnfs_model", "residual_through_w_transposed"): "residual_through_w_transposed",
}


def _problem(shape: str):
    p = random_problem(SQUARE[shape], batch=8, seed=0)
    return with_classes(p, 0) if shape == "nnfs_model" else p  # the book's script trains on integer labels



@pytest.mark.parametrize("shape", SHAPES)
def test_the_file_as_written_audits_with_no_finding(shape, capsys):
    assert main(["audit", "--code", str(PUBLISHED / f"{shape}.py"), "--steps", str(STEPS), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "(script protocol)" in out and out.splitlines()[-1] == "no findings: the file matches JAX"


@pytest.mark.parametrize("shape", SHAPES)
def test_the_file_on_square_layers_has_no_finding_either(shape):
    report = audit_code(str(PUBLISHED / f"{shape}.py"), _problem(shape), steps=STEPS)
    assert report.findings == [] and report.ok and report.cannot_tell == []


MISTAKES = [(shape, k) for shape in SHAPES for k in range(3)]


@pytest.mark.parametrize(("shape", "k"), MISTAKES, ids=[f"{s}-{PLANTED[s][k].name}" for s, k in MISTAKES])
def test_each_planted_mistake_is_one_finding_at_its_line_and_named(tmp_path, shape, k):
    path, line = planted_copy(tmp_path, shape, k)
    mistake = PLANTED[shape][k]
    report = audit_code(str(path), _problem(shape), steps=STEPS)
    (f,) = report.findings  # one mistake, one finding, whatever it passes on
    assert (Path(f.file).name, f.line) == (mistake.file, line)
    assert f.statement == mistake.replacement.strip()
    assert f.diagnoses[0].name == CATALOGUE_NAME[(shape, mistake.name)]
    assert np.isfinite(f.max_abs_err) and f.max_abs_err > 0  # its numbers shown, in the file's layout


def test_the_script_is_stopped_at_its_training_call_and_numpy_left_as_it_was(capsys):
    state = np.random.get_state()
    report = audit_code(str(PUBLISHED / "dense_framework.py"), steps=STEPS)
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2] == after[2]
    assert "loss " not in capsys.readouterr().err  # the line the script prints after its 200 epochs never came
    assert report.protocol == "script" and tuple(report.problem.sizes) == (4, 8, 3)  # the script's widths


def test_the_classes_are_given_back_their_own_training_methods():
    path = str(PUBLISHED / "tutorial_layers.py")
    with user_folder(path):
        module = load_module(path)
        fit = vars(module.Network)["fit"]
        caught = catch_training(module, path)
    assert caught.name == "fit" and isinstance(caught.obj, module.Network)
    assert vars(module.Network)["fit"] is fit and "fit" not in vars(module.Layer)


def test_what_the_audit_changed_in_the_script_is_said():
    book = "\n".join(audit_code(str(PUBLISHED / "nnfs_model.py"), steps=STEPS).notes)
    for said in ("momentum = 0.9 set to 0", "decay = 0.001 set to 0", "weight_regularizer_l2 = 0.0005 set to 0"):
        assert said in book
    assert "Optimizer_SGD.learning_rate = 1 is replaced" in book and "integer labels" in book
    tutorial = "\n".join(audit_code(str(PUBLISHED / "tutorial_layers.py"), steps=STEPS).notes)
    assert "one sample at a time" in tutorial and "no ½" in tutorial
    framework = "\n".join(audit_code(str(PUBLISHED / "dense_framework.py"), steps=STEPS).notes)
    assert "8 × the library's square loss" in framework and "no 1/N" in framework
    resized = "\n".join(audit_code(str(PUBLISHED / "dense_framework.py"), _problem("dense_framework"), steps=1).notes)
    assert "the script builds 4-8-3" in resized


def test_a_script_on_integer_labels_refuses_targets_that_are_no_classes():
    p = random_problem((3, 3, 3), loss="cross-entropy", batch=8, seed=0)
    soft = replace(p, t=np.full(p.t.shape, 1 / 3))  # a cross-entropy problem whose targets are no classes
    with pytest.raises(FcgradError, match="integer labels"):
        audit_code(str(PUBLISHED / "nnfs_model.py"), soft, steps=1)


def test_the_prints_of_the_file_stay_out_of_the_json(capsys):
    path = str(PUBLISHED / "tutorial_layers.py")  # its fit prints a line per epoch
    assert main(["audit", "--code", path, "--steps", str(STEPS), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["findings"] == [] and "epoch 1/1" in err


def test_a_script_that_fails_before_it_trains_is_named_at_its_line(tmp_path):
    source = (PUBLISHED / "tutorial_layers.py").read_text(encoding="utf-8")
    broken = source.replace("    net.add(FCLayer(2, 3))\n", "    net.add(FCLayer(2, 3, 4))\n")
    assert broken != source
    (tmp_path / "tutorial_layers.py").write_text(broken, encoding="utf-8")
    line = broken.splitlines().index("    net.add(FCLayer(2, 3, 4))") + 1
    with pytest.raises(FcgradError, match=rf"tutorial_layers.py:{line}: .*__main__.* raised TypeError"):
        audit_code(str(tmp_path / "tutorial_layers.py"), steps=1)


def test_a_script_that_runs_long_before_any_training_call_is_refused_at_its_line(tmp_path, monkeypatch):
    source = (PUBLISHED / "tutorial_layers.py").read_text(encoding="utf-8")
    spin = "    while True:\n        x_train = x_train + 0.0\n"  # never reaches the net, nor its fit
    slow = source.replace("    net = Network()\n", spin + "    net = Network()\n")
    assert slow != source
    (tmp_path / "tutorial_layers.py").write_text(slow, encoding="utf-8")
    line = slow.splitlines().index("        x_train = x_train + 0.0") + 1
    monkeypatch.setattr(code_script, "SCRIPT_SECONDS", 0.3)
    with pytest.raises(FcgradError, match=rf"tutorial_layers.py:({line - 1}|{line}): .* ran 0.3 s without calling"):
        audit_code(str(tmp_path / "tutorial_layers.py"), steps=1)


def test_a_script_that_imports_its_framework_from_its_folder_is_audited(tmp_path):
    for f in PUBLISHED.glob("*.py"):
        shutil.copy(f, tmp_path / f.name)
    source = (PUBLISHED / "dense_framework.py").read_text(encoding="utf-8")
    script = source[source.index('if __name__ == "__main__":') :]
    head = "import numpy as np\nfrom dense_framework import NeuralNetwork, SquareLoss, StochasticGradientDescent\n"
    head += "from dense_layers import Activation, Dense\n\n"
    (tmp_path / "train_it.py").write_text(head + script, encoding="utf-8")
    report = audit_code(str(tmp_path / "train_it.py"), steps=STEPS)
    assert report.protocol == "script" and report.findings == [] and report.ok


def test_a_crash_in_a_sibling_module_is_named_at_its_own_line(tmp_path):
    path, line = planted_copy(tmp_path, "dense_framework", 1)  # W for Wᵀ: the script's 4-8-3 layers do not fit it
    with pytest.raises(FcgradError, match=rf"dense_layers.py:{line}: fit raised ValueError"):
        audit_code(str(path), steps=1)
