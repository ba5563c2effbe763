"""The class-shaped published networks audit as written: no declaration, no layout option.

``network.py`` and ``network2.py`` (the textbook's weights (out, in), one sample at a time, ``update_mini_batch``
with the regularised form's extra arguments, cross-entropy on sigmoid outputs) and ``mlp_from_scratch.py`` (a
``fit`` that makes its own weights ``W``, ``w0``, ``V``, ``v0`` and minimises its per-entry loss summed) each:
clean where correct, and each planted mistake reported at its line, in its statement, with the catalogue's name.
"""

import sys
from pathlib import Path

import pytest

from fcgrad.audits.code import audit_code
from fcgrad.engine import tolerances as tol
from fcgrad.engine.problems import random_problem

PUBLISHED = Path(__file__).parent / "fixtures" / "published"
sys.path.insert(0, str(PUBLISHED))
from planted import PLANTED, planted_copy  # noqa: E402

STEPS = 2  # the trace reads step 0; two steps of drift are enough to see a wrong update
CATALOGUE_NAME = {"update_sign": "flipped_sign", "wrong_n": "missing_1_over_n"}  # planted.py's name -> the catalogue's
# w in place of wᵀ and a layer's output in place of its input keep the shapes only where the widths agree
SQUARE = {"network": (4, 5, 5), "network2": (4, 5, 5)}



def _audit(path: Path, shape: str):
    problem = random_problem(list(SQUARE[shape]), batch=8, seed=0) if shape in SQUARE else None
    return audit_code(str(path), problem, steps=STEPS)


@pytest.mark.parametrize("shape", ["network", "network2"])
def test_the_textbook_networks_as_published_have_no_finding(tmp_path, shape):
    path, _ = planted_copy(tmp_path, shape, None)
    report = audit_code(str(path), steps=STEPS)  # the default problem, no option at all
    assert report.ok and report.findings == []
    assert report.layout.weights == "out,in" and "read off the shapes" in report.layout_from


def test_the_regularised_textbook_network_is_run_without_regularisation_and_with_its_own_loss(tmp_path):
    path, _ = planted_copy(tmp_path, "network2", None)
    report = audit_code(str(path), steps=STEPS)
    assert report.problem.loss == "bce-logits" and report.problem.activations[-1] == "identity"
    # the file's own loss along its training is its cross-entropy of its σ outputs, the same numbers as JAX's
    assert report.drift.loss_max_abs_diff <= tol.TRAJ_ABS_TOL_F64
    assert any("update_mini_batch's lmbda: 0" in n for n in report.notes)
    assert any("update_mini_batch's n: N = 8" in n for n in report.notes)
    assert any("read off Network.total_cost" in n for n in report.notes)


def test_a_fit_that_makes_its_weights_and_minimises_its_summed_loss_has_no_finding(tmp_path):
    # its CrossEntropy gives one value per entry and is never reduced: the objective is their sum, whose gradient
    # carries no 1/N; the file's update is that gradient's, so no finding, and the notes say so
    path, _ = planted_copy(tmp_path, "mlp_from_scratch", None)
    report = audit_code(str(path), steps=STEPS)
    assert report.ok and report.findings == []
    assert report.problem.loss == "cross-entropy" and report.problem.sizes[-1] == 3  # softmax: classes
    assert any("summed over the samples, as its per-entry loss adds up" in n for n in report.notes)
    assert any("MultilayerPerceptron._initialize_weights" in n for n in report.notes)


CASES = [(shape, k) for shape in ("network", "network2", "mlp_from_scratch") for k in range(3)]


@pytest.mark.parametrize(("shape", "k"), CASES, ids=[f"{s}-{PLANTED[s][k].name}" for s, k in CASES])
def test_each_planted_mistake_is_at_its_line_and_named(tmp_path, shape, k):
    path, line = planted_copy(tmp_path, shape, k)
    report = _audit(path, shape)
    mistake = PLANTED[shape][k]
    (f,) = report.findings  # one mistake, one finding
    assert (Path(f.file).name, f.line) == (mistake.file, line)
    assert f.diagnoses[0].name == CATALOGUE_NAME.get(mistake.name, mistake.name)
    assert f.statement == mistake.replacement.strip()
