"""The shapes people write a network in, each audited by ``audit --code`` as it is; and what goes wrong, in one line.

Protocols: the blog's layered classes (backward updates), layered classes whose backward stores and whose
``update``/``step(lr)`` applies, a class with ``train_step(X, T)``, ``fit(X, T, epochs)`` or
``update_mini_batch(batch, eta)``, a ``step(params, X, T, lr)`` function, and ``forward(params, X)`` with
``backward(params, cache, T)``. Errors name a line of the user's file; options the file contradicts are
refused; ``-q`` keeps the findings.
"""

import json
import textwrap
from pathlib import Path

import pytest

from fcgrad.audits.code import audit_code
from fcgrad.cli.main import main
from fcgrad.manual.errors import FcgradError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SIBLING = FIXTURES / "sibling_net" / "net.py"
STEPS = 20  # enough to see any drift

PROTOCOL_OF = {
    "blog_net.py": "classes",
    "torch_style_net.py": "store-then-update",
    "sibling_net/net.py": "store-then-update",
    "cs231n_style_net.py": "train_step",
    "textbook_net.py": "train_step",
    "step_net.py": "step",
    "course_style_net.py": "functions",
}


def _write(tmp_path, body: str, name="net.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def _line(path: str, text: str) -> int:
    return next(i for i, s in enumerate(Path(path).read_text().splitlines(), 1) if text in s)


@pytest.mark.parametrize("name", list(PROTOCOL_OF))
def test_each_shape_of_network_is_recognised_and_audited_as_it_is(name):
    report = audit_code(str(FIXTURES / name), steps=STEPS)
    assert report.protocol == PROTOCOL_OF[name]
    assert report.drift.steps == STEPS and report.end_to_end


def test_a_file_imports_a_sibling_module_of_its_own_folder():
    report = audit_code(str(SIBLING), steps=STEPS)
    assert report.ok


def test_two_folders_with_a_sibling_module_of_one_name_each_get_their_own(tmp_path):
    for folder, body in (("a", "FACTOR = 1.0\n"), ("b", "FACTOR = 2.0\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "sigmoid_layers.py").write_text((SIBLING.parent / "sigmoid_layers.py").read_text() + body)
        source = SIBLING.read_text().replace(
            "return (self.y - self.t) / self.y.shape[1]", "return FACTOR * (self.y - self.t) / self.y.shape[1]"
        )
        (tmp_path / folder / "net.py").write_text(source.replace("import Layer", "import FACTOR, Layer"))
    assert audit_code(str(tmp_path / "a" / "net.py"), steps=1).ok
    named = audit_code(str(tmp_path / "b" / "net.py"), steps=1).findings[0].diagnoses[0].name
    assert named == "square_loss_half"  # b's own FACTOR 2, not a's module kept from before


# ---- store then update ----


def test_a_store_then_update_class_called_without_its_update_is_a_gradient_never_applied(tmp_path):
    source = (SIBLING.parent / "sigmoid_layers.py").read_text().replace("def update(self, lr):", "def apply(self, lr):")
    (tmp_path / "sigmoid_layers.py").write_text(source)
    path = _write(tmp_path, SIBLING.read_text())
    report = audit_code(path, steps=STEPS)
    assert report.protocol == "classes"  # no update to call: its backward alone is the step
    assert [(f.layer, f.quantity) for f in report.findings] == [(1, "grad_w"), (0, "grad_w")]
    for f in report.findings:
        assert "leaves w and b as they were" in f.note
        assert not any(d.name in ("constant_factor", "scaled") for d in f.diagnoses)
    assert {(h.layer, h.quantity) for h in report.inherited} == {(1, "grad_b"), (0, "grad_b")}


def test_a_store_then_update_class_with_a_wrong_update_is_located_at_the_gradient(tmp_path):
    source = (
        (SIBLING.parent / "sigmoid_layers.py")
        .read_text()
        .replace("self.b - lr * self.grad_b", "self.b + lr * self.grad_b")
    )
    (tmp_path / "sigmoid_layers.py").write_text(source)
    report = audit_code(_write(tmp_path, SIBLING.read_text()), steps=STEPS)
    assert [(f.layer, f.quantity) for f in report.findings] == [(1, "grad_b"), (0, "grad_b")]



def test_an_activation_module_that_hands_its_upstream_back_is_one_finding_at_its_return(tmp_path):
    """``return grad_out`` where ``grad_out * tanh'`` belongs: ∂L/∂z is wrong there, and the grad_w and grad_b
    computed from it carry that one mistake (not a second finding of their own)."""
    old = "return grad_out * (1 - self.y**2)  # (N, out)"
    text = (FIXTURES / "torch_style_net.py").read_text()
    line = 1 + text[: text.index(old)].count("\n")
    (tmp_path / "net.py").write_text(text.replace(old, "return grad_out  # (N, out)"))
    report = audit_code(str(tmp_path / "net.py"), steps=2)
    (f,) = report.findings
    assert (f.layer, f.quantity, f.line) == (0, "residual_z", line)
    assert f.diagnoses[0].name == "activation_derivative_missing"
    assert {(h.layer, h.quantity, h.origin) for h in report.inherited} == {
        (0, "grad_w", (0, "residual_z")),
        (0, "grad_b", (0, "residual_z")),
    }


# ---- train step, fit, update_mini_batch ----

FIT = """\
    import numpy as np


    class MLP:
        def __init__(self, sizes, lr=0.5):
            rng = np.random.default_rng(0)
            self.W = [rng.standard_normal((m, n)) for m, n in zip(sizes[:-1], sizes[1:])]
            self.b = [np.zeros((n, 1)) for n in sizes[1:]]
            self.lr = lr

        def predict(self, X):
            for W, b in zip(self.W, self.b):
                X = 1 / (1 + np.exp(-(W.T @ X + b)))
            return X

        def fit(self, X, T, epochs=1000, verbose=True):
            for _ in range(epochs):
                xs = [X]
                for W, b in zip(self.W, self.b):
                    xs.append(1 / (1 + np.exp(-(W.T @ xs[-1] + b))))
                delta = (xs[-1] - T) / X.shape[1]
                for k in range(len(self.W) - 1, -1, -1):
                    delta = delta * xs[k + 1] * (1 - xs[k + 1])
                    grad_w, grad_b = xs[k] @ delta.T, delta.sum(axis=1, keepdims=True)
                    delta = self.W[k] @ delta
                    self.W[k] = self.W[k] - self.lr * grad_w
                    self.b[k] = self.b[k] - self.lr * grad_b
                if verbose:
                    print("loss", np.sum((xs[-1] - T) ** 2))
"""


def test_a_fit_method_is_run_for_one_epoch_and_the_files_own_lr_is_reported_replaced(tmp_path):
    report = audit_code(_write(tmp_path, FIT), steps=STEPS)
    assert report.protocol == "train_step" and report.ok
    assert any("learning rate MLP.lr = 0.5 is replaced by the problem's lr 0.1" in n for n in report.notes)


def test_a_fit_without_a_number_of_epochs_is_refused_with_what_was_found(tmp_path):
    path = _write(
        tmp_path, FIT.replace("epochs=1000, verbose=True", "verbose=True").replace("range(epochs)", "range(9)")
    )
    with pytest.raises(FcgradError, match=r"closest: train_step .*but fit\(\.\.\.\) takes no number of epochs"):
        audit_code(path)


def test_a_train_step_with_no_learning_rate_names_its_line(tmp_path):
    source = (FIXTURES / "cs231n_style_net.py").read_text().replace("learning_rate=0.05", "rate=0.05")
    path = _write(tmp_path, source.replace("self.learning_rate = learning_rate", "self.rate = rate"))
    with pytest.raises(
        FcgradError, match=rf"^{path}:{_line(path, 'def train_step')}: train_step takes no learning rate"
    ):
        audit_code(path)


def test_the_files_prints_leave_the_json_on_stdout_whole(tmp_path, capsys):
    path = _write(tmp_path, FIT.replace("if verbose:", "if True:"))
    assert main(["audit", "--code", path, "--steps", "3", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["protocol"] == "train_step" and "loss" in captured.err


# ---- errors name a line of the user's file ----


def test_a_constructor_that_needs_what_the_audit_cannot_give_names_its_line(tmp_path):
    path = _write(
        tmp_path,
        """\
        class Net:
            def __init__(self, sizes, activation_table):
                self.sizes = sizes
        """,
    )
    with pytest.raises(FcgradError, match=rf"^{path}:2: Net\(\) needs sizes, activation_table; expected"):
        audit_code(path)


def test_an_error_inside_a_constructor_given_the_sizes_names_its_line(tmp_path):
    path = _write(
        tmp_path,
        """\
        class Net:
            def __init__(self, sizes):
                self.layers = [sizes[5]]
        """,
    )
    with pytest.raises(FcgradError, match=rf"^{path}:3: Net\(sizes=\[2, 4, 1\]\) raised IndexError"):
        audit_code(path)


def test_a_file_that_fits_no_protocol_lists_what_it_found_and_the_closest(tmp_path):
    path = _write(
        tmp_path,
        """\
        import numpy as np


        def sigmoid(z):
            return 1 / (1 + np.exp(-z))


        def forward(X, W):
            return sigmoid(W @ X)
        """,
    )
    message = "found function sigmoid; function forward; closest: functions .*but no functions forward\\(params, X\\)"
    with pytest.raises(FcgradError, match=rf"^{path}: fits no protocol of audit --code; {message}.*; see README"):
        audit_code(path)


# ---- options the file contradicts, -q ----


def test_a_loss_asked_for_that_the_file_does_not_compute_is_refused_in_one_line(capsys):
    assert main(["audit", "--code", str(FIXTURES / "torch_style_net.py"), "--loss", "mae"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--loss mae" in err and "computes the square loss" in err


def test_activations_asked_for_that_the_file_does_not_compute_are_refused(capsys):
    assert main(["audit", "--code", str(FIXTURES / "torch_style_net.py"), "--activation", "sigmoid"]) == 2
    assert "computes tanh,sigmoid" in capsys.readouterr().err


def test_a_declared_loss_its_own_loss_contradicts_is_refused(tmp_path):
    source = (FIXTURES / "torch_style_net.py").read_text().replace('SAMPLES = "rows"', 'SAMPLES = "rows"\nLOSS = "mae"')
    path = _write(tmp_path, source)
    with pytest.raises(FcgradError, match=rf"^{path}:13: LOSS = 'mae' but the file's loss computes square"):
        audit_code(path)


def test_a_file_without_a_loss_says_which_it_assumed(tmp_path):
    path = _write(tmp_path, (FIXTURES / "textbook_net.py").read_text().replace('LOSS = "square"', ""))
    report = audit_code(path, steps=1)
    assert report.ok and any("the loss: square, the problem's" in n for n in report.notes)


def test_float32_is_refused_with_code(capsys):
    assert main(["audit", "--code", str(FIXTURES / "step_net.py"), "--dtype", "float32"]) == 2
    assert "runs your file in float64" in capsys.readouterr().err


def test_the_problem_options_reach_the_problem_the_file_is_audited_on(capsys):
    argv = ["audit", "--code", str(FIXTURES / "step_net.py"), "--steps", "2", "--lr", "0.5", "--seed", "3", "--json"]
    assert main(argv) == 0
    problem = json.loads(capsys.readouterr().out)["problem"]
    assert (problem["lr"], problem["seed"]) == (0.5, 3)


def test_quiet_keeps_every_finding_with_its_names_and_the_verdict(capsys):
    assert main(["audit", "--code", str(FIXTURES / "blog_net.py"), "--steps", "5", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" — ")[0] for line in out if line.startswith("finding")] == [
        "finding 1: layer 1 residual_y",
        "finding 2: layer 1 residual_x",
        "finding 3: layer 0 grad_b",
    ]
    assert sum("looks like" in line for line in out) == 3
    assert out[-1].startswith("3 finding(s):") and not any("MISMATCH" in line for line in out)
