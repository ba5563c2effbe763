"""Output files: paths refused before any work, names used exactly, writes atomic (nothing half-written)."""

import json
import os

import numpy as np
import pytest

import fcgrad.engine.run
from fcgrad.cli.main import main
from fcgrad.files.output import atomic_write, check_output_path, write_json, write_npz
from fcgrad.manual.errors import FcgradError


def _files(folder) -> set[str]:
    return set(os.listdir(folder))


@pytest.mark.parametrize(
    "name,needles",
    [
        ("", ["empty name"]),
        ("/", ["directory", "'/'"]),
        ("{tmp}", ["directory"]),
        ("{tmp}/sub/", ["directory"]),
        ("{tmp}/run.txt", [".npz", "exactly as given", "run.txt"]),
        ("{tmp}/.npz", [".npz", "'{tmp}/.npz'"]),
        ("{tmp}/missing/run.npz", ["existing directory", "missing"]),
        ("/sys/run.npz", ["cannot create a file in '/sys'"]),  # read-only, even for root
    ],
    ids=["empty", "root", "a-directory", "trailing-slash", "other-suffix", "suffix-only", "missing-folder", "no-write"],
)
def test_a_path_that_cannot_take_the_file_is_refused_with_the_reason(tmp_path, name, needles):
    name = name.format(tmp=tmp_path)
    if name.startswith("/sys/") and not os.path.isdir("/sys"):
        pytest.skip("no /sys on this system")
    with pytest.raises(FcgradError) as info:
        check_output_path(name, "--save", ".npz")
    message = str(info.value)
    assert message.startswith("--save: ")
    missing = [s.format(tmp=tmp_path) for s in needles if s.format(tmp=tmp_path) not in message]
    assert not missing, f"{message!r} lacks {missing}"
    assert _files(tmp_path) == set()  # the probe left nothing


def test_an_existing_target_that_is_not_a_regular_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(FcgradError, match="not one"):
        check_output_path(str(tmp_path / "pipe.npz"), "--save", ".npz")


def test_a_good_path_is_returned_unchanged_and_the_probe_leaves_nothing(tmp_path):
    target = str(tmp_path / "run.npz")
    assert check_output_path(target, "--save", ".npz") == target
    assert _files(tmp_path) == set()


def test_a_relative_name_in_the_current_directory_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output_path("run.npz", "--save", ".npz") == "run.npz"


def test_an_npz_keeps_its_exact_name(tmp_path):
    target = tmp_path / "run.npz"
    write_npz(str(target), lambda f: np.savez(f, a=np.arange(3)))
    assert _files(tmp_path) == {"run.npz"}  # not run.npz.npz, no temporary file
    with np.load(target) as d:
        assert d["a"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError, MemoryError])
def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "run.json"
    target.write_text("old")
    with pytest.raises(error):
        with atomic_write(str(target)) as f:
            f.write(b"half of the new")
            raise error()
    assert target.read_text() == "old"
    assert _files(tmp_path) == {"run.json"}


def test_an_interrupted_first_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(str(tmp_path / "run.npz")) as f:
            np.savez(f, a=np.zeros(10))
            raise KeyboardInterrupt
    assert _files(tmp_path) == set()


def test_a_finished_write_replaces_the_file_with_the_usual_permissions(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old")
    write_json(str(target), {"ok": True})
    assert json.loads(target.read_text()) == {"ok": True}
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def _no_run(*args, **kwargs):
    raise AssertionError("the run started before its output path was checked")


@pytest.mark.parametrize(
    "option,path,needle",
    [
        ("--save", "{tmp}/no-such-folder/run.npz", "existing directory"),
        ("--save", "{tmp}", "directory"),
        ("--save", "{tmp}/run.txt", "ending in .npz"),
        ("--json", "{tmp}/run.txt", "ending in .json"),
        ("--json", "{tmp}/missing/run.json", "existing directory"),
    ],
    ids=["save-missing-folder", "save-directory", "save-suffix", "json-suffix", "json-missing-folder"],
)
@pytest.mark.parametrize("command", ["check", "audit"])
def test_the_cli_refuses_a_bad_output_path_before_any_work(
    tmp_path, capsys, monkeypatch, command, option, path, needle
):
    monkeypatch.setattr(fcgrad.engine.run, "check", _no_run)
    monkeypatch.setattr("fcgrad.audits.blog.audit", _no_run)  # the command imports it when it runs
    assert main([command, option, path.format(tmp=tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"fcgrad {command}: error: {option}: ") and needle in err
    assert err.count("\n") == 1
    assert [p for p in tmp_path.iterdir() if p.is_file()] == []


def test_json_to_a_file_writes_it_and_prints_the_text(tmp_path, capsys):
    target = tmp_path / "report.json"
    assert main(["check", "--steps", "3", "--json", str(target)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fcgrad check")  # the text on stdout
    data = json.loads(target.read_text())
    assert data["ok"] is True and data["meta"]["problem"]["steps"] == 3
    assert _files(tmp_path) == {"report.json"}
