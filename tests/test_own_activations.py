"""A layer whose activation the library lacks is audited against the file's own function, never refused.

tests/fixtures/own_activations/ holds a leaky ReLU as a function in the textbook's network and a softplus in a step
function; tests/fixtures/variants.py makes more from other fixtures: the leaky ReLU written with an in-place write
that JAX cannot trace (its derivative by finite differences), as a module PyTorch's way, and an ELU in the
tutorial's layer objects. Each correct file gets no finding, its own function named in the notes; each
planted mistake is reported at its line under the catalogue's name; nothing the audit joined outlives it.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fcgrad.audits.code import audit_code, own
from fcgrad.cli.main import main
from fcgrad.manual.activations import ACTIVATIONS
from fcgrad.reference import model as reference_model

FIXTURES = Path(__file__).parent / "fixtures" / "own_activations"
sys.path.insert(0, str(FIXTURES.parent))
from variants import VARIANTS, variant, variant_text  # noqa: E402

STEPS = 30  # the drift compares every step: a derivative off by 1e-9 anywhere would show within them

# file -> (the activations the audit reads, how the file's own one is differentiated)
CORRECT = {
    "leaky_network": (("leaky_relu", "sigmoid"), "JAX"),
    "leaky_modules": (("LeakyReLU", "sigmoid"), "JAX"),
    "elu_tutorial": (("elu", "tanh"), "JAX"),
    "softplus_step": (("softplus", "identity"), "JAX"),
    "inplace_network": (("leaky_relu", "sigmoid"), "finite differences"),
}


def _file(name: str, into: Path) -> Path:
    """The fixture ``name``: a file of FIXTURES, or a variant of another fixture written into ``into``."""
    return variant(into, name) if name in VARIANTS else FIXTURES / f"{name}.py"


def _text(name: str) -> str:
    return variant_text(name) if name in VARIANTS else (FIXTURES / f"{name}.py").read_text(encoding="utf-8")


def _audit(path: Path, capsys) -> dict:
    assert main(["audit", "--code", str(path), "--steps", str(STEPS), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", CORRECT)
def test_a_correct_file_with_its_own_activation_has_no_finding(name, tmp_path, capsys):
    out = _audit(_file(name, tmp_path), capsys)
    acts, how = CORRECT[name]
    assert tuple(out["problem"]["activations"]) == acts
    assert out["ok"] and out["findings"] == [] and out["cannot_tell"] == []
    assert out["drift"]["first_step_params_differ"] is None and out["drift"]["steps"] == STEPS
    said = [n for n in out["notes"] if n.startswith(f"{acts[0]}: the file's own function")]
    assert said and said[0].endswith(f"its derivative by {how}")


# (file, the line as written, the mistake, the catalogue's name): each planted in a copy, found at its line
PLANTED = [
    (
        "leaky_network",
        "delta = np.dot(self.weights[-k + 1].transpose(), delta) * sp",
        "delta = np.dot(self.weights[-k + 1].transpose(), delta)",
        "activation_derivative_missing",
    ),
    ("leaky_network", "return np.where(z > 0, 1.0, ALPHA)", "return np.where(z > 0, 1.0, 0.0)", "derivative_wrong"),
    ("leaky_network", "self.weights = [w - (eta", "self.weights = [w + (eta", "flipped_sign"),
    (
        "inplace_network",
        "delta = np.dot(self.weights[-k + 1].transpose(), delta) * sp",
        "delta = np.dot(self.weights[-k + 1].transpose(), delta)",
        "activation_derivative_missing",
    ),
    (
        "inplace_network",
        "return np.where(z > 0, 1.0, ALPHA)",
        "return np.where(z > 0, ALPHA, 1.0)",
        "derivative_wrong",
    ),
    (
        "softplus_step",
        "slope = 1.0 if i == len(params) - 1 else softplus_prime(zs[i])",
        "slope = 1.0 if i == len(params) - 1 else softplus(zs[i])",
        "derivative_wrong",
    ),
    (  # the file's helper is right; the caller handed it ∂L/∂y where z belongs: the caller's line
        "softplus_step",
        "slope = 1.0 if i == len(params) - 1 else softplus_prime(zs[i])",
        "slope = 1.0 if i == len(params) - 1 else softplus_prime(residual)",
        "sigma_prime_of_upstream",
    ),
    (
        "elu_tutorial",
        "return np.where(x > 0, 1.0, alpha * np.exp(x))",
        "return np.where(x > 0, 1.0, np.exp(-x))",
        "derivative_wrong",
    ),
]


def _planted(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    text = _text(name)
    assert text.count(old) == 1, old
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(old, new), encoding="utf-8")
    line = 1 + text[: text.index(old)].count("\n")
    return path, line


@pytest.mark.parametrize(("name", "old", "new", "named"), PLANTED, ids=[f"{p[0]}-{p[3]}" for p in PLANTED])
def test_a_planted_mistake_is_at_its_line_and_named(name, old, new, named, tmp_path, capsys):
    path, line = _planted(tmp_path, name, old, new)
    assert main(["audit", "--code", str(path), "--steps", "2", "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert findings
    first = findings[0]
    assert (first["line"], first["diagnoses"][0]["name"]) == (line, named)
    assert first["statement"].startswith(new.strip())


def test_the_derivative_of_a_function_jax_cannot_trace_is_right_to_the_last_digits():
    """fd_slope against exact derivatives: smooth functions to 1e-12, a kink within the first step still exact."""
    z = np.concatenate([np.linspace(-6, 6, 241), [1e-4, -3e-4, 2e-7]])
    exact = {
        np.tanh: 1 - np.tanh(z) ** 2,
        (lambda v: np.logaddexp(0, v)): 1 / (1 + np.exp(-z)),
        (lambda v: np.where(v > 0, v, np.expm1(v))): np.where(z > 0, 1.0, np.exp(z)),
        (lambda v: np.where(v > 0, v, 0.01 * v)): np.where(z > 0, 1.0, 0.01),
    }
    for f, slope in exact.items():
        away = np.abs(z) > 1e-9
        assert np.max(np.abs(own.fd_slope(f, z) - slope)[away]) <= 1e-12


def test_a_function_that_mixes_entries_is_no_activation():
    def softmax(z):
        e = np.exp(z - z.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)

    assert not own.elementwise(softmax)
    assert not own.elementwise(lambda z: z - z.mean(axis=1, keepdims=True))
    assert own.elementwise(lambda z: np.where(z > 0, z, 0.2 * z))


def test_what_joined_for_an_audit_leaves_with_it(tmp_path):
    before = (set(ACTIVATIONS), set(reference_model.ACTIVATIONS))
    shutil.copy(FIXTURES / "leaky_network.py", tmp_path / "leaky_network.py")
    report = audit_code(str(tmp_path / "leaky_network.py"), steps=2)
    assert "leaky_relu" in report.problem.activations
    assert (set(ACTIVATIONS), set(reference_model.ACTIVATIONS)) == before
    assert own.current() is None


def test_an_output_whose_z_were_all_positive_is_read_as_what_the_file_computes(tmp_path, capsys):
    """relu(z) = z where no z < 0: the audit moves that layer's bias until some are, and asks the file's loss."""
    out = _audit(FIXTURES / "softplus_step.py", capsys)
    assert out["problem"]["activations"][-1] == "identity"
    path, _ = _planted(tmp_path, "softplus_step", "xs.append(z if i", "xs.append(np.maximum(z, 0) if i")
    text = path.read_text(encoding="utf-8")
    old = "slope = 1.0 if i == len(params) - 1"
    path.write_text(text.replace(old, "slope = (zs[i] > 0) * 1.0 if i == len(params) - 1"), encoding="utf-8")
    out = _audit(path, capsys)
    assert out["problem"]["activations"][-1] == "relu" and out["findings"] == []


@pytest.mark.parametrize("name", ["leaky_network", "inplace_network"])
def test_the_files_function_joins_manual_and_jax_with_its_derivative(name, tmp_path):
    """Both sides run the file's leaky ReLU: manual's backward and JAX's gradient are its slope, 1 or ALPHA."""
    import jax
    import jax.numpy as jnp

    from fcgrad.audits.code.load import load_module, user_folder

    path = str(_file(name, tmp_path))
    z = np.linspace(-3, 3, 24).reshape(4, 6) + 0.0625  # no entry at the kink
    slope = np.where(z > 0, 1.0, 0.01)
    with user_folder(path):
        module = load_module(path)
        with own.offered(module, path) as offered:
            assert "leaky_relu" in offered.names() and "sigmoid" not in offered.names()  # the library's, not joined
            act = ACTIVATIONS["leaky_relu"]
            np.testing.assert_allclose(act.forward(z), np.where(z > 0, z, 0.01 * z), rtol=0, atol=1e-15)
            np.testing.assert_allclose(act.backward(np.ones_like(z), z, act.forward(z)), slope, rtol=0, atol=1e-12)
            with jax.enable_x64(True):
                f = reference_model.ACTIVATIONS["leaky_relu"]
                grad = jax.grad(lambda v: jnp.sum(f(v)))(jnp.asarray(z))
            np.testing.assert_allclose(np.asarray(grad), slope, rtol=0, atol=1e-12)


PUBLISHED = Path(__file__).parent / "fixtures" / "published"
LEAKY_CLASS = '''class Activation_LeakyReLU:
    def __init__(self, alpha=0.05):
        self.alpha = alpha

    def forward(self, inputs, training):
        self.inputs = inputs
        self.output = np.where(inputs > 0, inputs, self.alpha * inputs)

    def backward(self, dvalues):
        self.dinputs = dvalues * np.where(self.inputs > 0, 1.0, self.alpha)

    def predictions(self, outputs):
        return outputs


class Activation_Softmax:'''
# a published file with its ReLU made leaky: (file, [(as written, made leaky)], the activation the audit reads)
MADE_LEAKY = {
    "dnn_app_utils": (
        [
            ("    A = np.maximum(0, Z)", "    A = np.where(Z > 0, Z, 0.01 * Z)"),
            ("    dZ[Z <= 0] = 0  # no gradient where the unit was off", "    dZ[Z <= 0] *= 0.01"),
        ],
        "relu (the file's)",  # the course's own relu(Z) -> (A, cache), no longer the library's relu
    ),
    "nnfs_model": (
        [
            ("class Activation_Softmax:", LEAKY_CLASS),
            ("model.add(Activation_ReLU())", "model.add(Activation_LeakyReLU())"),
        ],
        "Activation_LeakyReLU",  # the book's class storing self.output, its alpha its own (no learning rate)
    ),
}


@pytest.mark.parametrize("name", MADE_LEAKY)
def test_a_published_file_made_leaky_is_audited_against_its_own_activation(name, tmp_path, capsys):
    text = (PUBLISHED / f"{name}.py").read_text(encoding="utf-8")
    edits, act = MADE_LEAKY[name]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (tmp_path / f"{name}.py").write_text(text, encoding="utf-8")
    out = _audit(tmp_path / f"{name}.py", capsys)
    assert out["problem"]["activations"][0] == act
    assert out["ok"] and out["findings"] == [] and out["drift"]["first_step_params_differ"] is None


def test_a_function_that_writes_prints_or_loops_is_never_called_to_be_tried(tmp_path, capsys):
    """Only plain formulas are tried as activations: the probe must not run the user's I/O or training."""
    marker = tmp_path / "written.txt"
    extra = f'''

def save_activations(a):
    open({str(marker)!r}, "w").write("called")
    return a


def noisy(a):
    print("noisy was called")
    return np.maximum(a, 0.0)


def looped(a):
    for _ in range(3):
        a = a * 1.0
    return np.where(a > 0, a, 0.01 * a)
'''
    text = (FIXTURES / "leaky_network.py").read_text(encoding="utf-8") + extra
    (tmp_path / "leaky_network.py").write_text(text, encoding="utf-8")
    out = _audit(tmp_path / "leaky_network.py", capsys)
    assert tuple(out["problem"]["activations"]) == ("leaky_relu", "sigmoid") and out["findings"] == []
    assert not marker.exists()
    assert "noisy was called" not in capsys.readouterr().err
    assert not own.plain(own.fd_slope) and own.plain(own.elementwise)  # a loop; a formula


def test_activations_asked_for_are_a_cross_check_the_files_own_names_included(capsys):
    path = str(FIXTURES / "leaky_network.py")
    assert main(["audit", "--code", path, "--activation", "leaky_relu,sigmoid", "--steps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["problem"]["activations"] == ["leaky_relu", "sigmoid"]
    assert main(["audit", "--code", path, "--activation", "relu,sigmoid", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "computes leaky_relu,sigmoid" in err


def test_a_step_whose_forward_binds_no_name_is_read_off_the_loss_it_returns(tmp_path, capsys):
    """``xs.append(np.tanh(z))`` leaves no array to read a layer's output from: the activations are those whose
    output gives the loss step returns (before, the problem's sigmoid was taken, and correct code got findings)."""
    out = _audit(variant(tmp_path, "tanh_appended_step"), capsys)
    assert tuple(out["problem"]["activations"]) == ("tanh", "identity") and out["findings"] == []
    assert any(n.startswith("the activations read off the loss step returns") for n in out["notes"])
    assert main(["audit", "--code", str(variant(tmp_path, "cubed_loss_step")), "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "could be read neither off the arrays it binds nor off the loss" in err
