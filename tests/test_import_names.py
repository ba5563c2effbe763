"""One import name: installed, fcgrad is ``fcgrad`` and nothing else, so a user's own modules never interfere.

The wheel is built, installed with pip into a fresh virtual environment (its dependencies reached
through a path entry to this environment's packages, so nothing is downloaded), and a user's pytest
suite runs there from a folder that also holds a ``reference.py``, a ``manual.py`` and a
``benchmarks/`` package of the user's own, plus a ``tests/reference.py`` beside the user's tests:
the places the pytest helpers are meant for.
"""

import subprocess
import zipfile
from pathlib import Path

from conftest import user_env

ROOT = Path(__file__).resolve().parents[1]

USER_TEST = '''
import jax.numpy as jnp
import numpy as np

import benchmarks
import manual
import reference
from fcgrad.testing import assert_backward_matches


def forward(x, w, b):
    return jnp.tanh(w.T @ x + b)


def backward(residual_y, x, w, b):
    y = np.tanh(w.T @ x + b)  # (out, N)
    residual_z = residual_y * (1 - y * y)  # (out, N)
    return {"residual_x": w @ residual_z, "grad_w": x @ residual_z.T, "grad_b": residual_z.sum(axis=1, keepdims=True)}


def test_the_users_modules_are_the_users():
    assert manual.OWNER == reference.OWNER == benchmarks.OWNER == "the user"


def test_my_layer():
    assert_backward_matches(forward, backward, {"x": (3, 5), "w": (3, 2), "b": (2, 1)})
'''


def test_the_wheel_installs_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as whl:
        tops = {n.split("/")[0] for n in whl.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fcgrad"}


def test_a_users_suite_beside_reference_manual_and_benchmarks_of_its_own_runs(fresh_python, tmp_path):
    (tmp_path / "reference.py").write_text('OWNER = "the user"\n')
    (tmp_path / "manual.py").write_text('OWNER = "the user"\n')
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text('OWNER = "the user"\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "reference.py").write_text('OWNER = "the user"\n')
    (tmp_path / "tests" / "test_mine.py").write_text(USER_TEST)
    env = user_env(tmp_path)
    cmd = [str(fresh_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "tests"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout
    where = subprocess.run(
        [str(fresh_python), "-c", "import fcgrad.manual, fcgrad; print(fcgrad.manual.__file__, fcgrad.__version__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    location, version = where.stdout.split()
    assert Path(location).is_relative_to(fresh_python.parent.parent), "fcgrad.manual from the fresh environment"
    assert not Path(location).is_relative_to(ROOT), "not from the source tree"
    assert version != "0+unknown"
