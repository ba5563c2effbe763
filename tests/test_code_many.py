"""``fcgrad audit --code`` over several files or a folder: one line per file and a summary, ``--json`` one object
per file, each file in a process of its own (a hang or a crash stops nothing else), the exit status for all."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fcgrad.audits.code import many as code_many
from fcgrad.audits.code.load import NO_PROTOCOL
from fcgrad.cli.main import main
from tests.conftest import REPO_ROOT

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEXTBOOK = FIXTURES / "textbook_net.py"
STEPS = 20  # a few steps of drift: enough to run each file's training, the default is for people
# A file's audit takes 2–10 s here (2 cores shared with other work): a hung file is stopped well after any of them.
HANG_TIMEOUT_S = 40
RUN_TIMEOUT_S = 300  # the whole folder's run, in the test that makes it: the hung file's limit and the others
PLANTED = ("sigmoid_prime(zs[-k])  # (in, 1)", "sigmoid_prime(activations[-k])  # (in, 1)")  # σ' at y, not z
HANG = ("    def update_mini_batch(self, mini_batch, eta):\n", "    def update_mini_batch(self, mini_batch, eta):\n"
        "        while True:\n            pass\n")  # fmt: skip
PRINTS = 'print("loading")\n'
TRAINING_PRINT = ("    def update_mini_batch(self, mini_batch, eta):\n",
                  '    def update_mini_batch(self, mini_batch, eta):\n        print("a step")\n')  # fmt: skip


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m fcgrad <args>`` from the repository root, as a user runs it."""
    command = [sys.executable, "-m", "fcgrad", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def _variant(folder: Path, name: str, *changes: tuple[str, str], prefix: str = "") -> Path:
    source = TEXTBOOK.read_text()
    for old, new in changes:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    path = folder / name
    path.write_text(prefix + source)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A class's submissions: two clean, one with a planted mistake, one that hangs in training, one that is not
    Python, one that kills its own process, and a network whose layers live in a sibling module."""
    f = tmp_path_factory.mktemp("submissions")
    _variant(f, "a_hang.py", HANG)  # first: it holds one process for the whole run, the rest go through the other
    shutil.copy(FIXTURES / "step_net.py", f / "b_step.py")
    _variant(f, "c_textbook.py")
    _variant(f, "d_planted.py", PLANTED)
    (f / "e_syntax.py").write_text("import numpy as np\n\n\ndef step(params, X, T, lr)\n    pass\n")
    (f / "f_crash.py").write_text("import os\nimport signal\n\nos.kill(os.getpid(), signal.SIGKILL)\n")
    shutil.copy(FIXTURES / "sibling_net" / "net.py", f / "net.py")
    shutil.copy(FIXTURES / "sibling_net" / "sigmoid_layers.py", f / "sigmoid_layers.py")
    return f


@pytest.fixture(scope="module")
def folder_run(folder, tmp_path_factory):
    """The folder audited once: the text on stdout and the JSON in a file."""
    out = tmp_path_factory.mktemp("out") / "all.json"
    argv = ["audit", "--code", str(folder), "--steps", str(STEPS), "--jobs", "2", "--timeout", str(HANG_TIMEOUT_S)]
    done = run_cli(*argv, "--json", str(out), timeout=RUN_TIMEOUT_S)
    return done, json.loads(out.read_text())


def _lines(stdout: str) -> dict[str, str]:
    return {Path(s.split(": ", 1)[0]).name: s for s in stdout.splitlines() if ": " in s and ".py: " in s}


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_a_folder_gets_one_line_per_file_and_a_summary(folder, folder_run):
    done, _ = folder_run
    lines = _lines(done.stdout)
    assert lines.keys() == {p.name for p in folder.glob("*.py")}, done.stdout
    assert lines["a_hang.py"].endswith(f"timed out: still running after {HANG_TIMEOUT_S:g} s")
    assert lines["b_step.py"].endswith(": clean (step protocol)")
    assert lines["c_textbook.py"].endswith(": clean (train_step protocol)")
    line = next(i for i, s in enumerate((folder / "d_planted.py").read_text().splitlines(), 1) if PLANTED[1] in s)
    assert re.search(rf"d_planted.py: 1 finding\(s\) .*d_planted.py:{line} layer 0 residual_z \(derivative_at_y\)$",
                     lines["d_planted.py"]), lines["d_planted.py"]  # fmt: skip
    syntax = r"e_syntax.py: refused: .*e_syntax.py:4: loading e_syntax.py raised SyntaxError"
    assert re.search(syntax, lines["e_syntax.py"]), lines["e_syntax.py"]
    assert re.search(r"f_crash.py: crashed: killed by signal 9", lines["f_crash.py"]), lines["f_crash.py"]
    assert lines["net.py"].endswith(": clean (store-then-update protocol)")
    assert lines["sigmoid_layers.py"].endswith(f": a module of {folder / 'net.py'}, not a network")
    summary = done.stdout.splitlines()[-1]
    assert summary == (
        "8 files: 3 clean, 1 with findings, 1 refused, 1 timed out, 1 crashed, 1 module(s) of another file"
    )
    assert done.returncode == 2, done.stderr  # noqa: PLR2004  (a file refused, timed out or crashed)


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_the_json_has_one_object_per_file_each_the_one_file_json(folder_run):
    _, data = folder_run
    by_name = {Path(f["path"]).name: f for f in data["files"]}
    statuses = {k: f["status"] for k, f in by_name.items()}
    assert statuses == {
        "a_hang.py": "timed out",
        "b_step.py": "clean",
        "c_textbook.py": "clean",
        "d_planted.py": "findings",
        "e_syntax.py": "refused",
        "f_crash.py": "crashed",
        "net.py": "clean",
        "sigmoid_layers.py": "module",
    }
    planted = by_name["d_planted.py"]
    assert planted["meta"]["code"] == planted["path"] and planted["drift"]["steps"] == STEPS  # the options reached it
    assert [d["name"] for d in planted["findings"][0]["diagnoses"]][:1] == ["derivative_at_y"]
    assert "SyntaxError" in by_name["e_syntax.py"]["error"] and "meta" not in by_name["e_syntax.py"]
    assert by_name["sigmoid_layers.py"]["imported_by"] == [by_name["net.py"]["path"]]
    assert data["summary"] == {
        "files": 8, "clean": 3, "findings": 1, "cannot tell": 0, "refused": 1, "timed out": 1, "crashed": 1,
        "module": 1, "exit": 2,
    }  # fmt: skip


@pytest.mark.slow
def test_all_clean_exits_0_and_a_finding_1_and_quiet_shows_what_is_not_clean(tmp_path):
    clean = [str(_variant(tmp_path, "one.py")), str(FIXTURES / "step_net.py")]
    done = run_cli("audit", "--code", *clean, "--steps", str(STEPS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "2 files: 2 clean"
    planted = str(_variant(tmp_path, "planted.py", PLANTED))
    done = run_cli("audit", "--code", clean[0], planted, "--steps", str(STEPS), "-q")
    assert done.returncode == 1, done.stdout + done.stderr
    assert [s.split(": ")[0] for s in done.stdout.splitlines()] == [planted, "2 files"]


@pytest.mark.slow
def test_the_json_on_stdout_is_pure_though_the_files_print(tmp_path):
    printing = _variant(tmp_path, "printing.py", TRAINING_PRINT, prefix=PRINTS)
    broken = tmp_path / "broken.py"
    broken.write_text("print('before the error')\nx = 1 / 0\n")
    done = run_cli("audit", "--code", str(printing), str(broken), "--steps", str(STEPS), "--json")
    data = json.loads(done.stdout)
    assert [f["status"] for f in data["files"]] == ["clean", "refused"], done.stderr
    assert re.match(rf"{broken}:2: loading broken.py raised ZeroDivisionError", data["files"][1]["error"])
    assert data["summary"]["exit"] == done.returncode == 2  # noqa: PLR2004


# --- refused before any work: one line, exit 2 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--code", "tests/fixtures/step_net.py", "tests/fixtures/textbook_net.py", "--plot", "x.png"],
         "--plot x.png with several --code files: it draws one file's curves; expected it with one file"),
        (["--code", "tests/fixtures/step_net.py", "--code", "tests/fixtures/textbook_net.py", "--plot", "x.png"],
         "--plot x.png with several --code files"),
        (["--code", "tests/fixtures/step_net.py", "--jobs", "2"],
         "--jobs 2 with one --code file: they pace the audits of several files; expected several files or a folder"),
        (["--code", "tests/fixtures/step_net.py", "--timeout", "5"], "--timeout 5.0 with one --code file"),
        (["--code", "tests/fixtures/step_net.py", "missing.py"],
         "--code: expected existing .py files or folders of them, got 'missing.py'"),
        (["--code", "tests/fixtures/published", "--save", "x.npz"], "--save with --code: expected no --save"),
        (["--code", "tests/fixtures/step_net.py", "tests/fixtures/textbook_net.py", "--spec", "2-4-1"],
         "--spec 2-4-1 with --code"),
    ],
    ids=["plot", "plot-code-twice", "jobs-one-file", "timeout-one-file", "missing", "save", "spec"],
)  # fmt: skip
def test_an_option_the_run_cannot_honour_is_refused_in_one_line(argv, said, capsys):
    assert main(["audit", *argv]) == 2  # noqa: PLR2004
    err = capsys.readouterr().err
    assert err.startswith(f"fcgrad audit: error: {said}") and err.count("\n") == 1, err


def test_an_empty_folder_is_refused(tmp_path, capsys):
    assert main(["audit", "--code", str(tmp_path)]) == 2  # noqa: PLR2004
    assert "the folder has no .py file; expected network files in it" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_jobs_is_a_positive_integer(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["audit", "--code", "tests/fixtures", "--jobs", value])
    assert info.value.code == 2 and f"expected a positive integer, got {value!r}" in capsys.readouterr().err  # noqa: PLR2004


def test_the_exit_codes_of_several_files_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    out = capsys.readouterr().out
    assert "with several --code files or a folder" in out and "--jobs N" in out and "--timeout SECONDS" in out


# --- which files, and which are modules of another ------------------------------------------------------------


def test_a_folder_is_its_py_files_sorted_each_file_once(tmp_path):
    for name in ("b.py", "a.py", "__init__.py", "notes.txt"):
        (tmp_path / name).write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.py").write_text("x = 1\n")
    files = code_many.files_of([str(tmp_path), str(tmp_path / "a.py")])
    assert [Path(f).name for f in files] == ["a.py", "b.py"]


def test_a_module_imported_by_another_file_of_the_folder_is_found():
    files = code_many.files_of([str(FIXTURES / "published")])
    by = {Path(f).name: [Path(g).name for g in gs] for f, gs in code_many.importers(files).items()}
    assert by["dense_layers.py"] == ["dense_framework.py"]
    assert by["dense_framework.py"] == [] and by["network.py"] == []


def test_only_a_file_that_fits_no_protocol_is_taken_for_a_module(tmp_path):
    no_protocol = code_many.Outcome("layers.py", code_many.REFUSED, error=f"layers.py: {NO_PROTOCOL}; ...")
    broken = code_many.Outcome("layers.py", code_many.REFUSED, error="layers.py:3: loading raised ZeroDivisionError")
    assert code_many._as_module(no_protocol, ["net.py"]).status == code_many.MODULE
    assert code_many._as_module(broken, ["net.py"]).status == code_many.REFUSED  # its own error is the user's news
    lone = code_many.Outcome("layers.py", code_many.REFUSED, error=f"layers.py: {NO_PROTOCOL}; ...")
    assert code_many._as_module(lone, []).status == code_many.REFUSED  # nothing imports it: a file that fits nothing


def test_a_line_writes_the_paths_under_the_working_directory_from_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = "/elsewhere/net.py:3: raised"
    o = code_many.Outcome("a.py", code_many.REFUSED, error=f"{tmp_path / 'a.py'}:3: raised; see {elsewhere}")
    assert code_many.line(o) == f"a.py: refused: a.py:3: raised; see {elsewhere}"
