"""A file's training call is called with its own signature, and a file is taken for the shape that fits it.

Each test writes a small network in a shape a published file has and that was refused before: a ``fit`` whose
learning rate comes after its epochs, a file whose class fits nothing beside a ``step`` function that does.
"""

import textwrap
from pathlib import Path

from fcgrad.audits.code import audit_code

STEP_NET = Path(__file__).parent / "fixtures" / "step_net.py"

FIT_EPOCHS_THEN_RATE = '''
import numpy as np


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class Net:
    def __init__(self, sizes):
        rng = np.random.default_rng(0)
        self.W = [rng.standard_normal((n, m)) for m, n in zip(sizes[:-1], sizes[1:])]  # (out, in)
        self.b = [np.zeros((n, 1)) for n in sizes[1:]]

    def predict(self, X):
        a = X
        for w, b in zip(self.W, self.b):
            a = sigmoid(w @ a + b)
        return a

    def fit(self, X, T, epochs, learning_rate):
        for _ in range(epochs):
            acts = [X]
            for w, b in zip(self.W, self.b):
                acts.append(sigmoid(w @ acts[-1] + b))
            delta = (acts[-1] - T) * acts[-1] * (1 - acts[-1]) / X.shape[1]  # (out, N)
            for k in range(len(self.W) - 1, -1, -1):
                grad_w = delta @ acts[k].T  # (out, N)·(N, in)
                grad_b = delta.sum(axis=1, keepdims=True)
                delta = (self.W[k].T @ delta) * acts[k] * (1 - acts[k])
                self.W[k] -= learning_rate * grad_w
                self.b[k] -= learning_rate * grad_b
'''


def test_a_fit_whose_rate_follows_its_epochs_is_called_by_name_and_runs_clean(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(FIT_EPOCHS_THEN_RATE)
    report = audit_code(str(path), steps=3)
    assert report.protocol == "train_step" and report.ok
    assert report.layout.weights == "out,in" and report.drift.steps == 3


def test_a_planted_mistake_in_that_fit_is_at_its_line(tmp_path):
    path = tmp_path / "net.py"
    source = FIT_EPOCHS_THEN_RATE.replace("self.b[k] -= learning_rate", "self.b[k] += learning_rate")
    path.write_text(source)
    (line,) = [i for i, s in enumerate(source.splitlines(), 1) if "self.b[k] +=" in s]
    report = audit_code(str(path), steps=3)
    (f,) = report.findings
    assert f.line == line and f.diagnoses[0].name == "flipped_sign" and f.statement.startswith("self.b[k] +=")


def test_a_class_that_fits_nothing_does_not_hide_a_step_function_that_fits(tmp_path):
    path = tmp_path / "net.py"
    helper = textwrap.dedent(
        """

        class Model:
            '''A record of a run, not a network: no parameters, no training method.'''

            def __init__(self, name):
                self.name = name
        """
    )
    path.write_text(STEP_NET.read_text() + helper)
    report = audit_code(str(path), steps=3)
    assert report.protocol == "step" and report.ok


ONE_METHOD = Path(__file__).parents[1] / "examples" / "one_method_net.py"


def test_the_report_reads_the_files_backward_in_its_own_names():
    from fcgrad.audits.code.report import as_json, text

    report = audit_code(str(ONE_METHOD), steps=2)
    source = ONE_METHOD.read_text().splitlines()
    (origin,) = [i for i, s in enumerate(source, 1) if "MISTAKE" in s and "delta =" in s]
    traced = {(e["line"], e["target"]): e for e in as_json(report)["traced"]}
    top = traced[(origin - 5, "delta")]  # the output layer's delta, five lines above
    assert top["is"] == ["∂L/∂z of layer 1"] and top["status"] == "ok"
    assert traced[(origin, "delta")]["status"] == "origin"
    assert "∂L/∂z of layer 0" in traced[(origin, "delta")]["is"]
    blog = audit_code(str(ONE_METHOD.parent / "blog_shaped_net.py"), steps=2)  # its loss's residual: an origin
    entries = as_json(blog)["traced"]
    (first,) = [e for e in entries if e["status"] == "origin"]
    carried = [e for e in entries if e["status"] == "inherited"]
    assert len(carried) >= 4 and all(e["from_line"] == first["line"] for e in carried)
    lines = text(report).splitlines()
    assert f"  one_method_net.py:{origin - 5} `delta` = ∂L/∂z of layer 1 ✓" in lines
    assert any(s.startswith(f"  one_method_net.py:{origin} `delta` = ") and s.endswith("✗ origin") for s in lines)
