"""The release: a wheel of code only under the one import name fcgrad, an sdist with examples and docs.

The wheel and the sdist are built once per run of the suite with ``python -m build --no-isolation`` (the
sdist first, then the wheel from the unpacked sdist, as a release is built; tests/conftest.py's ``release``),
and the fresh-environment tests install that same wheel.
"""

import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import fcgrad

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
DIST_INFO = f"fcgrad-{PYPROJECT['version']}.dist-info/"
# repository folder -> where it lands in the wheel: everything is under the one import name fcgrad
SOURCE_FOLDERS = {"fcgrad": "fcgrad", "manual": "fcgrad/manual", "reference": "fcgrad/reference",
                  "benchmarks": "fcgrad/benchmarks"}  # fmt: skip


@pytest.fixture(scope="module")
def wheel_names(release) -> list[str]:
    with zipfile.ZipFile(release["wheel"]) as whl:
        return whl.namelist()


def _source_modules() -> set[str]:
    return {
        f"{target}/{p.relative_to(ROOT / folder).as_posix()}"
        for folder, target in SOURCE_FOLDERS.items()
        for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    }


def test_wheel_holds_only_python_files_under_the_one_import_name_fcgrad(wheel_names):
    code = [n for n in wheel_names if not n.startswith(DIST_INFO)]
    assert {n.split("/")[0] for n in code} == {"fcgrad"}, "nothing may land beside fcgrad in site-packages"
    assert not [n for n in code if not n.endswith(".py")], "code only: no results, plots, scripts or READMEs"
    assert set(code) == _source_modules(), "the wheel must hold every module of the source tree, and only those"
    assert {f"{target}/__init__.py" for target in SOURCE_FOLDERS.values()} <= set(code)


def test_wheel_declares_the_console_script_dependencies_and_extras(release, wheel_names):
    with zipfile.ZipFile(release["wheel"]) as whl:
        entry_points = whl.read(DIST_INFO + "entry_points.txt").decode()
        metadata = whl.read(DIST_INFO + "METADATA").decode()
    assert "fcgrad = fcgrad.cli.main:main" in entry_points
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    for needed in ("numpy", "jax", "optax"):
        assert any(r.startswith(needed) and "extra ==" not in r for r in requires), f"{needed} in {requires}"
    extras = {line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Provides-Extra: ")}
    assert {"gpu", "plot", "data", "test"} <= extras
    for package, extra in (("jax[cuda12]", "gpu"), ("matplotlib", "plot"), ("scikit-learn", "data")):
        marker = f'extra == "{extra}"'
        assert any(r.startswith(package) and marker in r.replace("'", '"') for r in requires), (package, requires)


def test_sdist_ships_examples_docs_and_tests_but_no_local_environment(release):
    with tarfile.open(release["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    tracked_docs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    tracked_examples = {p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").iterdir() if p.is_file()}
    assert {"docs/design.md", "docs/derivation.md", "examples/README.md"} <= tracked_docs | tracked_examples
    assert tracked_docs | tracked_examples <= names
    assert {"README.md", "pyproject.toml", "tests/conftest.py", ".ci/run"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith((".venv/", "venv/", ".git/", "dist/"))]


def _python(code: str, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pythonpath), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def installed(release, tmp_path_factory) -> Path:
    """The wheel unpacked as an installer lays it out: packages and dist-info side by side, no source tree."""
    site = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(release["wheel"]) as whl:
        whl.extractall(site)
    return site


def test_installed_wheel_imports_fcgrad_and_takes_its_version_from_the_metadata(installed, tmp_path):
    done = _python(
        "import fcgrad, sys; print(fcgrad.__version__, fcgrad.__file__, 'jax' in sys.modules)",
        cwd=tmp_path,
        pythonpath=installed,
    )
    assert done.returncode == 0, done.stderr
    version, location, jax_loaded = done.stdout.split()
    assert version == PYPROJECT["version"]
    assert Path(location).is_relative_to(installed), "imported from the installed tree, not the source tree"
    assert jax_loaded == "False", "import fcgrad must not import JAX before a name that needs it is used"


def test_public_names_are_the_documented_ones():
    import fcgrad.audits.blog
    import fcgrad.engine.problems
    import fcgrad.engine.run
    import fcgrad.testing
    from fcgrad import manual, reference
    from fcgrad.manual.errors import FcgradError

    assert fcgrad.__version__ == PYPROJECT["version"]
    assert fcgrad.check is fcgrad.engine.run.check and fcgrad.audit is fcgrad.audits.blog.audit
    assert fcgrad.example is fcgrad.engine.problems.example and fcgrad.Problem is fcgrad.engine.problems.Problem
    assert fcgrad.random_problem is fcgrad.engine.problems.random_problem
    assert fcgrad.FcgradError is FcgradError and issubclass(FcgradError, ValueError)
    assert fcgrad.manual is manual and fcgrad.reference is reference and fcgrad.testing is fcgrad.testing
    from fcgrad.testing import assert_backward_matches

    assert assert_backward_matches is fcgrad.testing.assert_backward_matches
    assert set(fcgrad.__all__) <= set(dir(fcgrad))
    with pytest.raises(AttributeError, match="no attribute 'chek'"):
        fcgrad.chek  # noqa: B018


def test_fcgrad_check_runs_the_blogs_example():
    report = fcgrad.check(fcgrad.example("and").with_options(steps=5), finite_differences=False)
    assert report.ok


def test_python_dash_m_fcgrad_is_the_fcgrad_command(tmp_path):
    done = _python("import runpy; runpy.run_module('fcgrad', run_name='__main__')", cwd=tmp_path, pythonpath=ROOT)
    assert done.returncode == 2, done.stderr[-500:]  # no command given: the command's own usage error
    assert "fcgrad" in done.stderr and "error" in done.stderr and "Traceback" not in done.stderr
