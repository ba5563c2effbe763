"""Three published shapes audited as written: the course's functions, a loss method returning (loss, grads), and a
function that makes its network and trains it.

``fcgrad audit --code FILE`` runs each file of tests/fixtures/published/ with no declaration added and no flag but
``--sizes`` where the file cannot say its widths (its init takes them): the correct file gets no finding, and each
mistake of planted.py, planted in a copy of the folder, is reported at the planted line, with that line's statement
in the JSON, under the catalogue's name for it.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

from fcgrad.cli.main import main

PUBLISHED = Path(__file__).parent / "fixtures" / "published"
sys.path.insert(0, str(PUBLISHED))
from planted import PLANTED, planted_copy  # noqa: E402

STEPS = 2  # the trace reads step 0; the drift needs only a step or two here
# The flags each shape needs: none but the widths where the default 2-4-1 problem cannot tell right from wrong (a
# softmax classifier of one class). The course's functions run on that default: N 8 and the fan-ins 2 and 4 make a
# 1/fan-in where 1/N belongs a factor 4 and 2, a wrong N all the same, placed where m is computed. two_layer_net's
# D = 3 makes its 1/D where 1/N belongs 8/3, no named constant.
FLAGS = {"dnn_app_utils": [], "two_layer_net": ["--sizes", "3,5,4"], "nn_from_scratch": []}
CATALOGUE_NAME = {  # the catalogue's name for each planted mistake, where it words it otherwise
    "wrong_n": "one_over_wrong_n",
    "update_sign": "flipped_sign",
}
PROTOCOL = {"dnn_app_utils": "functions", "two_layer_net": "loss_grads", "nn_from_scratch": "build"}


def _audit(path: Path, shape: str, capsys) -> dict:
    assert main(["audit", "--code", str(path), "--steps", str(STEPS), "--json", *FLAGS[shape]]) == 0
    return json.loads(capsys.readouterr().out)



# nn_from_scratch.py steps along the gradient of the sum over its samples while its calculate_loss is the mean:
# one finding, named with its factor N, at the statement that makes the residual without the 1/N.
SUMMED = {"nn_from_scratch": 73}


@pytest.mark.parametrize("shape", [s for s in FLAGS if s not in SUMMED])
def test_the_published_file_as_written_has_no_finding(shape, capsys):
    out = _audit(PUBLISHED / f"{shape}.py", shape, capsys)
    assert out["protocol"] == PROTOCOL[shape]
    assert out["ok"] and out["findings"] == [] and out["cannot_tell"] == []


def test_a_function_that_steps_along_the_sum_over_its_samples_gets_that_one_finding(capsys):
    out = _audit(PUBLISHED / "nn_from_scratch.py", "nn_from_scratch", capsys)
    assert out["protocol"] == "build" and out["cannot_tell"] == []
    (f,) = out["findings"]
    assert (f["line"], f["layer"], f["quantity"]) == (SUMMED["nn_from_scratch"], 1, "residual_y")
    assert f["diagnoses"][0]["name"] == "missing_1_over_n" and "8 × JAX's" in f["diagnoses"][0]["message"]
    assert all(r["ok"] for r in out["end_to_end"])  # every other quantity judged against N × JAX's: right


MISTAKES = [(shape, k) for shape in FLAGS for k in range(3)]


@pytest.mark.parametrize(("shape", "k"), MISTAKES, ids=[f"{s}-{PLANTED[s][k].name}" for s, k in MISTAKES])
def test_each_planted_mistake_is_at_its_line_and_named(shape, k, tmp_path, capsys):
    path, line = planted_copy(tmp_path, shape, k)
    mistake = PLANTED[shape][k]
    findings = _audit(path, shape, capsys)["findings"]
    assert findings
    if shape in SUMMED:  # the file's own sum over the samples, besides the planted mistake
        findings = [f for f in findings if f["line"] != SUMMED[shape]]
    for f in findings:  # one mistake: every finding is that line (a statement may make two layers' values wrong)
        assert (Path(f["file"]).name, f["line"]) == (mistake.file, line)
        assert f["statement"].startswith(mistake.replacement.split("#")[0].strip())
        assert f["diagnoses"][0]["name"] == CATALOGUE_NAME.get(mistake.name, mistake.name)


def test_what_the_audit_gave_a_file_in_its_own_terms_is_said(capsys):
    notes = " | ".join(_audit(PUBLISHED / "nn_from_scratch.py", "nn_from_scratch", capsys)["notes"])
    assert "Config.epsilon = 0.01 (its learning rate) replaced by the problem's 0.1" in notes
    assert "Config.reg_lambda = 0.01 set to 0" in notes and "integer labels" in notes
    assert "N = 8 × the gradient of the mean loss (a sum over the samples, from line 73" in notes
    notes = " | ".join(_audit(PUBLISHED / "two_layer_net.py", "two_layer_net", capsys)["notes"])
    assert "reg (the regularisation strength" in notes and "integer labels" in notes
    out = _audit(PUBLISHED / "dnn_app_utils.py", "dnn_app_utils", capsys)
    assert out["problem"]["loss"] == "bce-logits" and out["problem"]["activations"] == ["relu", "identity"]
    assert (out["layout"]["weights"], out["layout"]["samples"]) == ("out,in", "columns")


def test_a_wrong_n_is_named_so_where_it_makes_a_plain_factor_of_two_too(tmp_path, capsys):
    # a 3-5-4-1 net: the top layer's fan-in 4 makes 1/4 where 1/8 belongs, a factor 2 that alone reads as a dropped ½
    path, line = planted_copy(tmp_path, "dnn_app_utils", 1)
    assert main(["audit", "--code", str(path), "--steps", str(STEPS), "--json", "--sizes", "3,5,4,1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(f["line"], f["diagnoses"][0]["name"]) for f in out["findings"]] == [(line, "one_over_wrong_n")]
    assert "the fan-in 4 where 1/N = 1/8 belongs" in out["findings"][0]["diagnoses"][0]["message"]
    assert all(r["ok"] for r in out["end_to_end"] if r["quantity"].startswith("residual"))  # read per sample


def test_a_function_that_trains_is_followed_pass_by_pass(tmp_path, capsys):
    # 30 of its own passes, each against JAX's step: the same trajectory; a bias stepping up parts at the first
    assert main(["audit", "--code", str(PUBLISHED / "nn_from_scratch.py"), "--steps", "30", "--json"]) == 0
    drift = json.loads(capsys.readouterr().out)["drift"]
    assert drift["steps"] == 30 and drift["first_step_params_differ"] is None
    path, _ = planted_copy(tmp_path, "nn_from_scratch", 2)
    assert main(["audit", "--code", str(path), "--steps", "30", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["drift"]["first_step_params_differ"] == 1


TWO_LAYER_COURSE = '''
import numpy as np


def initialize_parameters(n_x, n_h, n_y):
    rng = np.random.default_rng(2)
    return {"W1": rng.standard_normal((n_h, n_x)) * 0.5, "b1": np.zeros((n_h, 1)),
            "W2": rng.standard_normal((n_y, n_h)) * 0.5, "b2": np.zeros((n_y, 1))}


def forward_propagation(X, parameters):
    A1 = np.tanh(parameters["W1"] @ X + parameters["b1"])
    A2 = 1 / (1 + np.exp(-(parameters["W2"] @ A1 + parameters["b2"])))
    return A2, {"A1": A1, "A2": A2}


def compute_cost(A2, Y, parameters):
    return float(-np.sum(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)) / Y.shape[1])


def backward_propagation(parameters, cache, X, Y):
    m = X.shape[1]
    dZ2 = cache["A2"] - Y
    dZ1 = (parameters["W2"].T @ dZ2) * (1 - cache["A1"] ** 2)
    return {"dW1": dZ1 @ X.T / m, "db1": np.sum(dZ1, axis=1, keepdims=True) / m,
            "dW2": dZ2 @ cache["A1"].T / m, "db2": np.sum(dZ2, axis=1, keepdims=True) / m}
'''


def test_the_courses_two_layer_functions_take_their_arguments_by_name(tmp_path, capsys):
    # init(n_x, n_h, n_y), forward(X, parameters), cost(A2, Y, parameters), backward(parameters, cache, X, Y)
    path = tmp_path / "planar.py"
    path.write_text(TWO_LAYER_COURSE, encoding="utf-8")
    assert main(["audit", "--code", str(path), "--steps", str(STEPS), "--json", "--sizes", "3,5,1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["problem"]["activations"] == ["tanh", "identity"]
    wrong = TWO_LAYER_COURSE.replace('(1 - cache["A1"] ** 2)', '(1 - np.tanh(cache["A1"]) ** 2)')
    path.write_text(wrong, encoding="utf-8")
    assert main(["audit", "--code", str(path), "--steps", str(STEPS), "--json", "--sizes", "3,5,1"]) == 0
    (f,) = json.loads(capsys.readouterr().out)["findings"]
    assert f["statement"].startswith("dZ1 = ") and f["diagnoses"][0]["name"] == "derivative_at_y"


def test_the_courses_own_update_takes_the_step_and_a_sign_flipped_there_is_at_its_line(tmp_path, capsys):
    # update_parameters(parameters, grads, learning_rate) is the file's: the audit steps with it, so a mistake in it
    # is seen, placed at its statement (the gradients L_model_backward returns are right)
    out = _audit(PUBLISHED / "dnn_app_utils.py", "dnn_app_utils", capsys)
    assert any("the file's own update_parameters" in n for n in out["notes"])
    for f in PUBLISHED.glob("*.py"):
        shutil.copy(f, tmp_path / f.name)
    right = 'parameters["b" + str(l + 1)] = parameters["b" + str(l + 1)] - learning_rate'
    source = (PUBLISHED / "dnn_app_utils.py").read_text(encoding="utf-8")
    assert source.count(right) == 1
    (tmp_path / "dnn_app_utils.py").write_text(source.replace(right, right.replace(" - ", " + ")), encoding="utf-8")
    (line,) = [i for i, s in enumerate(source.splitlines(), 1) if right in s]
    found = _audit(tmp_path / "dnn_app_utils.py", "dnn_app_utils", capsys)["findings"]
    assert found and all((f["line"], f["diagnoses"][0]["name"]) == (line, "flipped_sign") for f in found)
