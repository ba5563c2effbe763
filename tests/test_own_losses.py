"""A loss the library lacks is audited against the file's own loss function, differentiated by JAX or by
finite differences, never refused.

tests/fixtures/own_losses/ holds the Huber loss in a step function; tests/fixtures/variants.py makes a log-cosh
loss module written with an in-place write (its gradient by finite differences) in PyTorch's shape, and a
pseudo-Huber loss function of (y_true, y_pred) in the tutorial's layer objects. Each correct file gets no
finding, its loss named in the notes; a derivative of the loss written wrong is found where it is computed.
"""

import json
import sys
from pathlib import Path

import pytest

from fcgrad.cli.main import main
from fcgrad.manual.losses import LOSSES
from fcgrad.reference import model as reference_model

FIXTURES = Path(__file__).parent / "fixtures" / "own_losses"
sys.path.insert(0, str(FIXTURES.parent))
from variants import VARIANTS, variant, variant_text  # noqa: E402

STEPS = 30  # every step compared: a gradient off by 1e-9 anywhere would show within them

CORRECT = {  # file -> (the loss the audit reads, how its gradient is had)
    "huber_step": ("huber", "JAX"),
    "logcosh_modules": ("LogCoshLoss", "finite differences"),
    "pseudo_huber_tutorial": ("pseudo_huber", "JAX"),
}


def _file(name: str, into: Path) -> Path:
    """The fixture ``name``: a file of FIXTURES, or a variant of another fixture written into ``into``."""
    return variant(into, name) if name in VARIANTS else FIXTURES / f"{name}.py"


def _text(name: str) -> str:
    return variant_text(name) if name in VARIANTS else (FIXTURES / f"{name}.py").read_text(encoding="utf-8")


def _audit(path: Path, capsys, steps: int = STEPS) -> dict:
    assert main(["audit", "--code", str(path), "--steps", str(steps), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", CORRECT)
def test_a_correct_file_with_its_own_loss_has_no_finding(name, tmp_path, capsys):
    before = (set(LOSSES), set(reference_model.LOSSES))
    out = _audit(_file(name, tmp_path), capsys)
    loss, how = CORRECT[name]
    assert out["problem"]["loss"] == loss
    assert out["ok"] and out["findings"] == [] and out["cannot_tell"] == []
    assert out["drift"]["first_step_params_differ"] is None and out["drift"]["steps"] == STEPS
    said = [n for n in out["notes"] if n.startswith(f"{loss}: the file's own function")]
    assert said and said[0].endswith(f"its derivative by {how}")
    assert (set(LOSSES), set(reference_model.LOSSES)) == before  # joined for the audit only


PLANTED = [  # (file, the line as written, the mistake, the catalogue's name)
    (
        "huber_step",
        "residual = np.clip(xs[-1] - T, -DELTA, DELTA) / n",
        "residual = (xs[-1] - T) / n",
        "loss_derivative_wrong",
    ),
    (
        "logcosh_modules",
        "return np.tanh(self.y - self.t) / self.y.shape[0]",
        "return np.tanh(self.y - self.t)",
        "missing_1_over_n",
    ),
    (
        "pseudo_huber_tutorial",
        "return d / np.sqrt(1 + d**2) / y_true.size",
        "return d / (1 + d**2) / y_true.size",
        "loss_derivative_wrong",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "named"), PLANTED, ids=[p[0] for p in PLANTED])
def test_a_wrong_derivative_of_the_files_loss_is_at_its_line_and_named(name, old, new, named, tmp_path, capsys):
    text = _text(name)
    assert text.count(old) == 1
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(old, new), encoding="utf-8")
    line = 1 + text[: text.index(old)].count("\n")
    findings = _audit(path, capsys, steps=2)["findings"]
    assert findings
    first = findings[0]
    assert (first["line"], first["layer"], first["quantity"]) == (line, 1, "residual_y")
    assert first["diagnoses"][0]["name"] == named and first["statement"].startswith(new)


def test_the_files_loss_joins_manual_and_jax_with_its_gradient():
    """Both sides run the file's Huber loss: manual's ∂L/∂y and JAX's gradient are the residual clipped to ±DELTA,
    over N; the same gradient by finite differences, as the file's in-place losses get it, agrees to 1e-12."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fcgrad.audits.code import own
    from fcgrad.audits.code.layout import Layout
    from fcgrad.audits.code.load import load_module, user_folder

    path = str(FIXTURES / "huber_step.py")
    rng = np.random.default_rng(3)
    y, t = rng.standard_normal((3, 10)), rng.standard_normal((3, 10))
    expected = np.clip(y - t, -0.5, 0.5) / 10
    with user_folder(path):
        module = load_module(path)
        with own.offered(module, path) as offered:
            offered.layout = Layout()
            assert offered.loss(float(module.huber(y, t)), y, t) == "huber"
            np.testing.assert_allclose(LOSSES["huber"].backward(y, t), expected, rtol=0, atol=1e-15)
            with jax.enable_x64(True):
                grad = jax.grad(reference_model.LOSSES["huber"])(jnp.asarray(y), jnp.asarray(t))
            np.testing.assert_allclose(np.asarray(grad), expected, rtol=0, atol=1e-15)
            by_fd = own.fd_gradient(lambda v: float(module.huber(v, t)), y)
            np.testing.assert_allclose(by_fd, expected, rtol=0, atol=1e-12)


def test_a_loss_asked_for_on_a_file_whose_loss_is_its_own_is_refused_in_one_line(capsys):
    assert main(["audit", "--code", str(FIXTURES / "huber_step.py"), "--loss", "square", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "computes a loss of its own, huber, none of the library's" in err
    assert "expected no --loss" in err
