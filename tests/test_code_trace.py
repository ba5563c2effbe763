"""audit --code traces the file's step: every mistake reported at the line that makes it, in the file's words.

The files are written the way people publish backprop (tests/fixtures/published/, one line replaced to plant a
mistake: tests/fixtures/published/planted.py), and the textbook-shaped fixture of tests/fixtures/. A finding's
``line`` must be the planted line, its first name the catalogue's name for that mistake, and a correct file
must get no finding.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fcgrad.audits.code import audit_code
from fcgrad.audits.code.report import text
from fcgrad.cli.main import main

PUBLISHED = Path(__file__).parent / "fixtures" / "published"
TEXTBOOK = Path(__file__).parent / "fixtures" / "textbook_net.py"
sys.path.insert(0, str(PUBLISHED))
from planted import PLANTED, planted_copy  # noqa: E402

STEPS = 2  # the trace reads step 0; the drift needs only a step or two here
# The catalogue's name for each planted mistake of the published files
CATALOGUE_NAME = {
    "derivative_at_y": "derivative_at_y",
    "residual_through_w_transposed": "residual_through_w_transposed",
    "wrong_n": "missing_1_over_n",
    "activation_derivative_missing": "activation_derivative_missing",
    "update_sign": "flipped_sign",
}
# network.py's w-for-wᵀ mistake runs only where every layer after the first is square
NETWORK_SIZES = (3, 4, 4, 4)



def _replace(tmp_path: Path, source: Path, old: str, new: str) -> tuple[Path, int]:
    text_ = source.read_text()
    assert text_.count(old) == 1
    out = tmp_path / source.name
    out.write_text(text_.replace(old, new))
    (line,) = [i for i, s in enumerate(out.read_text().splitlines(), 1) if new.strip() in s]
    return out, line


def _audit(path: Path, **options):
    from fcgrad.engine.problems import random_problem

    problem = random_problem(NETWORK_SIZES, batch=8, seed=0)
    return audit_code(str(path), problem, steps=STEPS, **options)


def test_the_textbook_network_as_published_has_no_finding():
    report = _audit(PUBLISHED / "network.py", weights="out,in")
    assert report.findings == [] and report.ok
    assert text(report).splitlines()[-1] == "no findings: the file matches JAX"


@pytest.mark.parametrize("k", range(3))
def test_each_mistake_planted_in_the_textbook_network_is_at_its_line_and_named(tmp_path, k):
    path, line = planted_copy(tmp_path, "network", k)
    report = _audit(path, weights="out,in")
    (f,) = report.findings  # one mistake, one finding, whatever it passes on
    assert (Path(f.file).name, f.line) == ("network.py", line)
    assert f.diagnoses[0].name == CATALOGUE_NAME[PLANTED["network"][k].name]
    assert f.statement == PLANTED["network"][k].replacement.strip()


MISTAKES_IN_ONE_METHOD = [  # (the line as written, the mistake, its catalogue name)
    (
        "delta = (self.weights[-k + 1].T @ delta) * sigmoid_prime(zs[-k])",
        "delta = self.weights[-k + 1].T @ delta",
        "activation_derivative_missing",
    ),
    (
        "delta = (self.weights[-k + 1].T @ delta) * sigmoid_prime(zs[-k])",
        "delta = (self.weights[-k + 1].T @ delta) * sigmoid(zs[-k])",
        "sigmoid_prime_as_y",
    ),
    (
        "delta = (activations[-1] - t) * sigmoid_prime(zs[-1])",
        "delta = (activations[-1] - t) * sigmoid_prime(activations[-1])",
        "derivative_at_y",
    ),
    (
        "self.biases = [b - (eta / len(mini_batch)) * g for b, g in zip(self.biases, sum_b)]",
        "self.biases = [b + (eta / len(mini_batch)) * g for b, g in zip(self.biases, sum_b)]",
        "flipped_sign",
    ),
    (
        "self.weights = [w - (eta / len(mini_batch)) * g for w, g in zip(self.weights, sum_w)]",
        "self.weights = [w - eta * g for w, g in zip(self.weights, sum_w)]",
        "missing_1_over_n",
    ),
]


@pytest.mark.parametrize(("old", "new", "name"), MISTAKES_IN_ONE_METHOD, ids=[m[2] for m in MISTAKES_IN_ONE_METHOD])
def test_a_mistake_in_a_file_that_trains_in_one_method_is_named_at_its_line(tmp_path, old, new, name):
    path, line = _replace(tmp_path, TEXTBOOK, old, new)
    report = _audit(path)
    (f,) = report.findings
    assert f.line == line and f.diagnoses[0].name == name
    assert f.target and f.statement.startswith(new.split(" = ")[0])


def test_two_mistakes_in_one_file_are_each_at_their_own_line(tmp_path):
    first, _ = _replace(tmp_path, TEXTBOOK, *MISTAKES_IN_ONE_METHOD[2][:2])
    both = tmp_path / "both"
    both.mkdir()
    path, _ = _replace(both, first, *MISTAKES_IN_ONE_METHOD[4][:2])
    source = path.read_text().splitlines()
    report = _audit(path)
    found = {(f.line, f.diagnoses[0].name) for f in report.findings}
    expected = set()
    for k in (2, 4):
        (line,) = [i for i, s in enumerate(source, 1) if MISTAKES_IN_ONE_METHOD[k][1] in s]
        expected.add((line, MISTAKES_IN_ONE_METHOD[k][2]))
    assert found == expected


def test_the_json_places_each_finding_at_its_file_line_and_statement(tmp_path, capsys):
    path, line = planted_copy(tmp_path, "network", 0)
    sizes = ",".join(map(str, NETWORK_SIZES))
    assert main(["audit", "--code", str(path), "--weights", "out,in", "--sizes", sizes, "--steps", "2", "--json"]) == 0
    (f,) = json.loads(capsys.readouterr().out)["findings"]
    assert (Path(f["file"]).name, f["line"]) == ("network.py", line)
    assert f["statement"] == PLANTED["network"][0].replacement.strip() and f["target"] == "sp"
    assert f["diagnoses"][0]["name"] == "derivative_at_y"


ONE_OUTPUT_CLASSIFIER = '''
import numpy as np
SIZES = (2, 4, 1)
LOSS = "cross-entropy"


def step(params, X, T, lr):
    w1, b1, w2, b2 = params[0]["w"], params[0]["b"], params[1]["w"], params[1]["b"]
    h = np.tanh(w1.T @ X + b1)
    y = w2.T @ h + b2
    e = np.exp(y - y.max(axis=0))
    p = e / e.sum(axis=0)
    n = X.shape[1]
    dz2 = (p - T) / n
    dz1 = (w2 @ dz2) * (1 - h * h)
    new = [
        {"w": w1 - lr * X @ dz1.T, "b": b1 - lr * dz1.sum(axis=1, keepdims=True)},
        {"w": w2 - lr * h @ dz2.T, "b": b2 - lr * dz2.sum(axis=1, keepdims=True)},
    ]
    return -np.sum(T * np.log(p)) / n, new
'''


def test_a_problem_that_cannot_tell_right_from_wrong_is_never_a_pass(tmp_path, capsys):
    path = tmp_path / "one_class.py"
    path.write_text(ONE_OUTPUT_CLASSIFIER)
    report = audit_code(str(path), steps=STEPS)
    assert report.findings == [] and any("one output" in why for why in report.cannot_tell)
    assert text(report).splitlines()[-1].startswith("no findings, but this problem cannot tell")
    assert main(["audit", "--code", str(path), "--steps", "2", "--strict"]) == 1
    assert main(["audit", "--code", str(path), "--steps", "2"]) == 0


def test_the_problem_drawn_for_a_classifier_holds_every_class():
    from fcgrad.audits.code.problem import reasons, with_classes
    from fcgrad.engine.problems import random_problem
    from fcgrad.reference import gradients

    p = with_classes(random_problem((3, 5, 4), loss="cross-entropy", batch=8, seed=3), 3)
    assert sorted(set(np.argmax(p.t, axis=0))) == [0, 1, 2, 3]
    ref = gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss)
    assert reasons(p, ref) == []
    one = p.with_options()
    one = type(p)(**{**one.__dict__, "t": np.eye(4)[:, [2] * 8]})
    assert any("one class" in why for why in reasons(one, ref))


QA = sorted((Path(__file__).parent / "fixtures").glob("qa_*.py"))


@pytest.mark.parametrize("path", QA, ids=[p.name for p in QA])
def test_each_mistake_from_a_public_thread_is_at_the_line_its_comment_marks(path):
    marked = {
        i for i, s in enumerate(path.read_text().splitlines(), 1) if "mistake" in s.split("#")[-1] or "the second" in s
    }
    marked -= {i for i, s in enumerate(path.read_text().splitlines(), 1) if '"""' in s or not s.startswith(" ")}
    report = audit_code(str(path), steps=STEPS)
    assert {f.line for f in report.findings} == marked
    assert all(f.diagnoses and Path(f.file).name == path.name for f in report.findings)
