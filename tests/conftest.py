"""Shared helpers of the core suite: which rows of a comparison failed, running the CLI; and 4 host devices for JAX."""

import gc
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# Before JAX starts its CPU backend: XLA's cheapest compile for this process and the commands it starts. The tests'
# programs are tiny and compiled hundreds of times, each run a few times: compiling was most of their time, and
# the numbers the tests compare are the same programs' (their tolerances are rounding's, not an optimizer's).
# Without the newer fusion emitters, a small program's backend compile takes about 40% less time here. Its machine
# code generated in one piece (not split over threads that every process here would start at once, for programs
# this small) and its instructions in plain order (no scheduling for concurrency): the compile-heavy test files
# about 15% less CPU time again, measured side by side. None of these changes an operation a program performs.
FAST_COMPILE_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false"
    " --xla_cpu_parallel_codegen_split_count=1 --xla_cpu_enable_concurrency_optimized_scheduler=false"
)
os.environ.setdefault("XLA_FLAGS", FAST_COMPILE_FLAGS)

import jax  # noqa: E402
import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402

# Before any test starts JAX: the CPU platform, so that the suite runs the same with the CUDA build of JAX
# installed (its float64 tolerances are the CPU's, and the data-parallel tests want host devices); the
# variable reaches the commands the tests start, the config this process.
os.environ["JAX_PLATFORMS"] = "cpu"
jax.config.update("jax_platforms", "cpu")
# 4 host CPU devices for the data-parallel tests. Unsharded work still runs on the default device
# (device 0), as it would with one.
HOST_DEVICES = 4
jax.config.update("jax_num_cpu_devices", HOST_DEVICES)

REPO_ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["pytester"]  # a user's own pytest run, in this process (tests/test_testing_helper.py)


def failing(rows) -> set[tuple[int, str]]:
    """The (layer, quantity) of every row that is not ok."""
    return {(r.layer, r.quantity) for r in rows if not r.ok}


def describe(rows) -> str:
    """One line per failed row, naming its layer and quantity, for assertion messages."""
    bad = [r for r in rows if not r.ok]
    return "; ".join(f"layer {r.layer} {r.quantity}: max|Δ| {r.max_abs_err:.1e}, rel {r.rel_err:.1e}" for r in bad)


def assert_all_ok(rows) -> None:
    assert rows, "no rows were compared"
    assert all(r.ok for r in rows), "mismatch: " + describe(rows)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m fcgrad <args>`` from the repository root, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "fcgrad", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="session")
def data_file(tmp_path_factory) -> str:
    """A user's ``--data`` file: 3 inputs and 2 targets, 6 samples by column (``X``, ``T``)."""
    import numpy as np

    path = tmp_path_factory.mktemp("data") / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.standard_normal((3, 6)), T=rng.uniform(0, 1, (2, 6)))
    return str(path)


# --- fcgrad as a user installs it: a wheel built from this checkout, in a fresh virtual environment ---------------


def _once_per_run(tmp_path_factory, name: str, make) -> Path:
    """``make(folder)`` run once per run of the suite, even over several processes (pytest-xdist): the first process
    to get there makes it under a lock in the run's shared temporary folder, the others wait and use it. Returns the
    path ``make`` returned."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    made = shared / f"{name}.made"
    with FileLock(str(shared / f"{name}.lock")):
        if not made.exists():
            folder = shared / name
            shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
            folder.mkdir()
            made.write_text(str(make(folder)), encoding="utf-8")
    return Path(made.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel of this checkout, built once per run as a release is (``python -m build``: the sdist,
    then the wheel from the unpacked sdist; no isolation, so nothing is downloaded): {"sdist": path, "wheel": path}."""

    def build(out: Path) -> Path:
        cmd = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return out

    out = _once_per_run(tmp_path_factory, "release", build)
    return {"wheel": next(out.glob("fcgrad-*.whl")), "sdist": next(out.glob("fcgrad-*.tar.gz"))}


@pytest.fixture(scope="session")
def wheel(release) -> Path:
    return release["wheel"]


@pytest.fixture(scope="session")
def fresh_python(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed by pip; NumPy, JAX and pytest from this one's packages."""

    def make(folder: Path) -> Path:
        env_dir = folder / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
        python = env_dir / "bin" / "python"
        pip = [sys.executable, "-m", "pip", "--python", str(python)]
        done = subprocess.run([*pip, "install", "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True,
                              timeout=240)  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        site = Path(subprocess.check_output([str(python), "-c", purelib], text=True, timeout=60).strip())
        # a plain path entry: the packages there load, but none of the .pth files there run (no editable finder)
        (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        return python

    return _once_per_run(tmp_path_factory, "env", make)


def user_env(home: Path) -> dict[str, str]:
    """A user's bare environment for commands of the fresh one: system PATH, their own HOME, JAX on the CPU, and
    the suite's cheap compile (the only variable of this process they keep)."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ["XLA_FLAGS"]}


# --- the suite's time limit (pytest-timeout, pyproject.toml) for the tests that run a pipeline of subprocesses ---

FRESH_ENV_TIMEOUT_S = 660  # a wheel built, a fresh environment made, snippets run with their own 600 s limit


# The files of the longest tests (10 s and more here), handed out first when the suite runs in several processes
# (pytest-xdist gives each process one file at a time, in this order), so that no process is left with one long
# file at the end while the others wait; the order within a file is unchanged.
LONG_FILES_FIRST = (
    "tests/test_properties.py", "tests/test_benchmarks.py", "tests/test_readme.py", "tests/test_schema.py",
    "tests/test_diagnosis_toolbox.py", "tests/test_kinks.py", "tests/test_optimizers.py", "tests/test_notebook.py",
    "tests/test_sharded_toolbox.py", "tests/test_fast_path.py", "tests/test_float32.py", "tests/test_option_matrix.py",
    "tests/test_user_snippets.py", "tests/test_toolbox_properties.py", "examples/test_batchnorm_mlp.py",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """The long files first; and tests that use the fresh environment run pip and the user's own snippets: the
    suite's limit sits above theirs."""
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: files keep their order
    for item in items:
        if "fresh_python" in getattr(item, "fixturenames", ()) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FRESH_ENV_TIMEOUT_S))


# A full pass of the garbage collector after every this many passes over its middle generation (Python's default:
# 10). JAX's caches of compiled programs grow through the run, and each full pass walks all of them: at 10 a test
# process made 20-21 full passes, 3.5-4.2 s, at 100 it makes 5-9, 1.1-1.7 s, and all its collecting 4.6-5.7 s -> 2.6-3 s
# (measured here over the whole suite; peak memory per process 1.0-1.5 GB, against 1.2-1.3 GB). A cycle made and
# dropped within a test still goes at a young generation's pass.
FULL_GC_EVERY = 100


def pytest_collection_finish(session):
    """What collection made (the imported modules, JAX's own tables, the test items) lives to the end of the run:
    frozen, it is left out of the garbage collector's full passes, which the tests' many compiled programs make
    frequent (measured here: the full passes' time over the whole suite 8.7 s -> 6.4 s); and those passes are
    made less often (``FULL_GC_EVERY``)."""
    gc.collect()  # nothing already garbage is frozen
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_EVERY)


# --- the built-in examples at their full 10,000 steps, run once per session and shared by the files that read them ---


@pytest.fixture(scope="session")
def example_check():
    """``example_check(name)``: ``check(example(name), keep_history=True)``, run on first use and kept.

    Both sides' every loss and parameter are in its histories (``loss_manual``, ``w0_reference``, ...), so
    the tests of the trajectory, of Mazur's printed figures and of what the run learns read one run.
    Read only: a test that plants a mistake runs its own.
    """
    from fcgrad.engine.problems import example
    from fcgrad.engine.run import check

    done = {}

    def get(name: str):
        if name not in done:
            done[name] = check(example(name), keep_history=True)
        return done[name]

    return get


@pytest.fixture(scope="session")
def blog_audit(tmp_path_factory) -> dict:
    """``fcgrad audit`` on the blog's AND example (four runs of 10,000 steps), run as a command once per run of
    the suite, even over several processes: {"text": what it printed, "json": the JSON it wrote with --json}.
    README's sample of it and docs/derivation.md's quoted figures are both read from this one run."""
    from readme_samples import command_output

    def make(folder: Path) -> Path:
        printed = command_output("audit", "--json", str(folder / "audit.json"))
        (folder / "audit.txt").write_text(printed, encoding="utf-8")
        return folder

    folder = _once_per_run(tmp_path_factory, "blog-audit", make)
    return {
        "text": (folder / "audit.txt").read_text(encoding="utf-8"),
        "json": json.loads((folder / "audit.json").read_text(encoding="utf-8")),
    }
