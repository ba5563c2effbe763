"""Loading a user's file for ``audit --code``: a file that trains at import, NumPy's global state, the file's prints
kept out of ``--json``, and the one line a file that fits no protocol gets."""

import json
import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from fcgrad.audits.code import audit_code
from fcgrad.audits.code import imports as code_import
from fcgrad.audits.code.load import load_module, user_folder
from fcgrad.cli.main import main
from fcgrad.manual.errors import FcgradError
from tests.conftest import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STEP = FIXTURES / "step_net.py"
STEPS = 20  # a few steps of drift: enough to run the file's training, the default is for people
LIMIT_S = 0.5  # the import limit in these tests: long enough for a small file to load, short for a test
SLACK_S = 3.0  # how late the refusal may come after the limit: a loaded machine's scheduling, not the timer


def _write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(body)
    return path


def _line_of(path: Path, text: str) -> int:
    return next(i for i, s in enumerate(path.read_text().splitlines(), 1) if text in s)


def _load(path: Path):
    with user_folder(str(path)):
        return load_module(str(path))


# --- a file that trains at import ----------------------------------------------------------------------------


@pytest.fixture
def short_limit(monkeypatch):
    monkeypatch.setattr(code_import, "IMPORT_LIMIT_S", LIMIT_S)


def test_a_file_training_at_import_is_refused_in_seconds_at_the_line_it_was_running(tmp_path, short_limit):
    body = "import numpy as np\n\nw = np.zeros(3)\nwhile True:\n    w = w - 0.1 * w  # train\n"
    path = _write(tmp_path, "net.py", body)
    start = time.monotonic()
    with pytest.raises(FcgradError) as info:
        _load(path)
    took = time.monotonic() - start
    message = str(info.value)
    assert LIMIT_S <= took < LIMIT_S + SLACK_S, took
    line = _line_of(path, "while True") if ":4:" in message else _line_of(path, "# train")
    assert message.startswith(f"{path}:{line}: loading net.py was still running after {LIMIT_S:g} s"), message
    assert 'if __name__ == "__main__":' in message and "\n" not in message


def test_training_in_a_sibling_module_at_import_is_named_at_the_siblings_line(tmp_path, short_limit):
    helper = _write(tmp_path, "helper.py", "import time\n\nwhile True:\n    time.sleep(0.01)\n")
    path = _write(tmp_path, "net.py", "import helper\n")
    with pytest.raises(FcgradError, match=rf"^{helper}:[34]: loading net.py was still running"):
        _load(path)


def test_a_file_that_trains_briefly_at_import_is_audited(tmp_path, short_limit):
    brief = "\nimport time as _time\n_time.sleep(0.05)  # a short demo at import\n"
    path = _write(tmp_path, "net.py", STEP.read_text() + brief)
    assert audit_code(str(path), steps=STEPS).ok


@pytest.fixture
def own_timer():
    """The test's own SIGALRM handler and timer; the test runner's (its time limit) put back afterwards."""
    handler = signal.getsignal(signal.SIGALRM)
    runner = signal.setitimer(signal.ITIMER_REAL, 0.0)
    start = time.monotonic()
    yield
    signal.setitimer(signal.ITIMER_REAL, 0.0)
    signal.signal(signal.SIGALRM, handler)
    if runner[0] > 0.0:
        signal.setitimer(signal.ITIMER_REAL, max(runner[0] - (time.monotonic() - start), 0.01), runner[1])


class Due(BaseException):
    """What the test's own timer raises when it fires."""


def _raise_due(signum, frame):
    raise Due


def test_the_timer_is_stopped_and_the_previous_handler_put_back(tmp_path, short_limit, own_timer):
    signal.signal(signal.SIGALRM, _raise_due)
    _load(_write(tmp_path, "net.py", "x = 1\n"))
    with pytest.raises(FcgradError):
        _load(_write(tmp_path, "loop.py", "while True:\n    pass\n"))
    assert signal.getsignal(signal.SIGALRM) is _raise_due
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0  # noqa: PLR2004  (disarmed: exactly zero)


OUTER_S = 60.0  # a timer already running, due long after the import limit


def test_a_timer_already_running_keeps_its_time(tmp_path, short_limit, own_timer):
    signal.signal(signal.SIGALRM, _raise_due)
    signal.setitimer(signal.ITIMER_REAL, OUTER_S)
    with pytest.raises(FcgradError):
        _load(_write(tmp_path, "loop.py", "while True:\n    pass\n"))
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert OUTER_S - LIMIT_S - SLACK_S < left < OUTER_S - LIMIT_S, left
    assert signal.getsignal(signal.SIGALRM) is _raise_due


def test_a_timer_due_before_the_import_limit_fires_with_its_own_handler(tmp_path, short_limit, own_timer):
    signal.signal(signal.SIGALRM, _raise_due)
    signal.setitimer(signal.ITIMER_REAL, LIMIT_S / 5)
    with pytest.raises(Due):
        _load(_write(tmp_path, "loop.py", "while True:\n    pass\n"))
    assert signal.getsignal(signal.SIGALRM) is _raise_due


# --- NumPy's global state ------------------------------------------------------------------------------------

CHANGES_NUMPY = """
np.seterr(all="ignore")
np.seterrcall(print)
np.set_printoptions(precision=2, threshold=5)
np.random.seed(12345)
"""


def test_numpys_global_state_is_as_it_was_after_loading(tmp_path):
    path = _write(tmp_path, "net.py", "import numpy as np\n" + CHANGES_NUMPY)
    np.random.seed(7)
    before = np.geterr(), np.geterrcall(), np.get_printoptions(), np.random.get_state()[1].copy()
    _load(path)
    after = np.geterr(), np.geterrcall(), np.get_printoptions(), np.random.get_state()[1]
    assert after[:3] == before[:3]
    assert np.array_equal(after[3], before[3])


def test_a_file_that_changes_numpys_state_at_import_is_audited_clean_and_leaves_it(tmp_path):
    path = _write(tmp_path, "net.py", STEP.read_text() + CHANGES_NUMPY)
    before = np.geterr(), np.get_printoptions()
    assert audit_code(str(path), steps=STEPS).ok
    assert (np.geterr(), np.get_printoptions()) == before


# --- the file's prints kept out of --json ---------------------------------------------------------------------

PRINTS = """
import os as _os
import sys as _sys

print("loading")
_sys.__stdout__.write("written to the real stdout\\n")
_os.write(1, b"written to descriptor 1\\n")
_step = step


def step(params, X, T, lr):  # noqa: N803
    print("a step")
    return _step(params, X, T, lr)
"""


def test_the_files_prints_at_import_and_in_training_stay_out_of_the_json(tmp_path):
    path = _write(tmp_path, "net.py", STEP.read_text() + PRINTS)
    done = run_cli("audit", "--code", str(path), "--steps", str(STEPS), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    for said in ("loading", "written to the real stdout", "written to descriptor 1", "a step"):
        assert said in done.stderr


# --- the one line of a file that fits no protocol -------------------------------------------------------------


def _refusal(tmp_path, body: str) -> str:
    with pytest.raises(FcgradError) as info:
        audit_code(str(_write(tmp_path, "net.py", body)))
    return str(info.value)


def test_a_file_of_functions_only_is_closest_to_the_functions_protocol(tmp_path):
    body = "def init(sizes):\n    return {}\n\n\ndef predict(params, X):\n    return X\n"
    message = _refusal(tmp_path, body)
    assert "found function init; function predict; closest: functions" in message, message


def test_inherited_methods_are_named_with_the_class_they_come_from(tmp_path):
    body = (
        "class Base:\n    def fit(self, X, T, epochs):\n        pass\n\n    def predict(self, X):\n        pass\n\n\n"
        "class Net(Base):\n    def forward(self, X):\n        return X\n\n    def predict(self, X):\n        return X\n"
    )
    message = _refusal(tmp_path, body)
    assert "class Net(forward, predict; from Base: fit)" in message, message


def test_no_parameters_says_where_it_looked_and_what_it_found(tmp_path):
    body = (
        "import numpy as np\n\n\nclass Net:\n    def __init__(self, sizes):\n        self.sizes = sizes\n"
        "        self.theta = {'A': np.zeros((2, 4))}\n        self.rate = 0.1\n\n"
        "    def fit(self, X, T, epochs):\n        pass\n"
    )
    message = _refusal(tmp_path, body)
    assert "no parameters: looked for layers" in message and "W1, b1, W2, b2" in message, message
    assert "found after Net(...): sizes (list of 3 int); theta (dict of A); rate (float)" in message, message


def test_an_error_in_a_sibling_module_is_named_at_that_modules_line(tmp_path):
    helper = _write(tmp_path, "helper.py", "import numpy as np\n\nSCALE = np.ones(2) @ np.ones(3)\n")
    path = _write(tmp_path, "net.py", "import helper\n")
    with pytest.raises(FcgradError, match=rf"^{helper}:3: loading net.py raised ValueError"):
        audit_code(str(path))


def test_an_error_in_a_sibling_modules_backward_is_named_at_that_modules_line(tmp_path):
    folder = tmp_path / "sibling_net"
    shutil.copytree(FIXTURES / "sibling_net", folder)
    layers = folder / "sigmoid_layers.py"
    wrong = "        return self.w.T @ residual_z  # wrong shape"
    layers.write_text(layers.read_text().replace("        return self.w @ residual_z", wrong))
    line = _line_of(layers, "wrong shape")
    with pytest.raises(FcgradError, match=rf"^{layers}:{line}: .*raised ValueError"):
        audit_code(str(folder / "net.py"), steps=STEPS)


def test_the_command_refuses_a_file_training_at_import_in_one_line(tmp_path, short_limit, capsys):
    path = _write(tmp_path, "net.py", STEP.read_text() + "\nwhile True:  # the training script\n    pass\n")
    assert main(["audit", "--code", str(path)]) == 2  # noqa: PLR2004
    err = capsys.readouterr().err
    line = _line_of(path, "# the training script")
    assert re.match(rf"fcgrad audit: error: {path}:({line}|{line + 1}): loading net.py was still running", err), err
    assert err.count("\n") == 1
