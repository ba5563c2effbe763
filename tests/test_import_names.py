"""A user's module named like one of fcgrad's packages: ``import fcgrad`` names it in one ImportError."""

import subprocess
import sys
from pathlib import Path

import pytest

from fcgrad._shadowing import GUARDED, assert_not_shadowed, shadowing

ROOT = Path(__file__).resolve().parents[1]


def _import_fcgrad_in(cwd: Path) -> subprocess.CompletedProcess:
    """``python -c "import fcgrad"`` run from ``cwd`` (first on sys.path), with the source tree after it."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", "import fcgrad"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "user_file,name",
    [("reference.py", "reference"), ("manual.py", "manual"), ("crosscheck/__init__.py", "crosscheck")],
    ids=["reference-module", "manual-module", "crosscheck-package"],
)
def test_a_users_module_in_the_working_directory_stops_import_fcgrad_with_one_line(tmp_path, user_file, name):
    path = tmp_path / user_file
    path.parent.mkdir(exist_ok=True)
    path.write_text("")
    done = _import_fcgrad_in(tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: fcgrad: 'import {name}' loads {path.resolve()} instead of")
    assert f"fcgrad's own {name} package in {ROOT}" in last


@pytest.mark.parametrize(
    "user_file",
    ["manual/notes.txt", "benchmarks/run.py", "data/reference.py"],
    ids=["folder-without-init", "benchmarks-folder-without-init", "same-name-in-a-subfolder"],
)
def test_a_folder_without_init_or_a_module_deeper_down_shadows_nothing(tmp_path, user_file):
    path = tmp_path / user_file
    path.parent.mkdir(parents=True)
    path.write_text("")
    done = _import_fcgrad_in(tmp_path)
    assert done.returncode == 0, done.stderr


def test_an_empty_working_directory_imports_fcgrad(tmp_path):
    done = _import_fcgrad_in(tmp_path)
    assert done.returncode == 0, done.stderr


def test_shadowing_is_none_for_our_own_packages_and_names_a_foreign_root():
    for name in GUARDED:
        assert shadowing(name, ROOT) is None
    elsewhere = ROOT / "tests"  # holds no manual/ of its own: whatever `import manual` finds is foreign to it
    assert shadowing("manual", elsewhere) == (ROOT / "manual" / "__init__.py").resolve()
    with pytest.raises(ImportError, match=r"^fcgrad: 'import manual' loads .* rename or move"):
        assert_not_shadowed(("manual",), elsewhere)


def test_a_module_put_in_sys_modules_by_hand_is_judged_by_its_file(monkeypatch, tmp_path):
    stand_in = type(sys)("reference")
    stand_in.__file__ = str(tmp_path / "reference.py")
    monkeypatch.setitem(sys.modules, "reference", stand_in)
    assert shadowing("reference", ROOT) == (tmp_path / "reference.py").resolve()
