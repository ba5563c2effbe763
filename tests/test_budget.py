"""Memory and disk before a run: refuse what cannot fit (exit 2, with the figures), announce a large --save."""

import os

import pytest

import fcgrad.engine.run
from fcgrad.cli.main import main
from fcgrad.engine import budget
from fcgrad.engine.problems import and_example, random_problem
from fcgrad.manual.errors import FcgradError

# The model counts the histories and loss curves exactly and the zip container not at all; measured on
# the blog's network at 1,000 steps, the file is 2.5% larger than the estimate (zip and .npy headers per entry).
SAVE_ESTIMATE_REL_TOL = 0.05


def _no_run(*args, **kwargs):
    raise AssertionError("the run started before its memory was estimated")


def test_the_save_estimate_matches_the_file_written(tmp_path, capsys):
    p = and_example().with_options(steps=1000)
    est = budget.estimate(p, keep_history=True)
    target = tmp_path / "run.npz"
    assert main(["check", "--steps", "1000", "--save", str(target)]) == 0
    assert os.path.getsize(target) == pytest.approx(est.save_bytes, rel=SAVE_ESTIMATE_REL_TOL)


def test_the_estimate_grows_with_steps_only_when_histories_are_kept():
    p = random_problem([20, 30, 5], batch=4)  # 785 parameters: a 64 MiB chunk holds 10,686 float64 steps
    n_params = 20 * 30 + 30 + 30 * 5 + 5
    long, longer = p.with_options(steps=20_000), p.with_options(steps=1_000_000)
    working = budget.estimate(long, keep_history=False, chunk_bytes=64 * 2**20).memory_bytes
    assert budget.estimate(longer, keep_history=False, chunk_bytes=64 * 2**20).memory_bytes == working
    assert working > 10_686 * 3 * n_params * 8  # the chunk's histories and differences are counted
    kept = budget.estimate(long, keep_history=True)
    assert kept.history_bytes == 2 * 2 * 20_001 * n_params * 8  # both sides, held twice while joined
    assert budget.estimate(long.with_options(dtype="float32"), keep_history=True).history_bytes * 2 == (
        kept.history_bytes
    )


def test_a_run_that_cannot_fit_in_memory_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    # 784-256-256-10: 269,322 parameters; 100,000 steps of both histories in float64 are 431 GB, held twice
    monkeypatch.setattr(fcgrad.engine.run, "check", _no_run)
    monkeypatch.setattr(budget, "available_memory", lambda: 64 * 10**9)
    args = ["check", "--sizes", "784-256-256-10", "--steps", "100000", "--save", str(tmp_path / "big.npz")]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("fcgrad check: error: memory: this run needs about 862.0 GB")
    assert "64.0 GB is available" in err and "--save histories" in err
    assert err.endswith("expected fewer --steps or no --save\n") and "--batch" not in err  # the histories drive it
    assert list(tmp_path.iterdir()) == []


# (options, what the refusal must ask for): each run is too large by one part of the estimate alone, and the
# refusal names the options that drive that part, not the others'
DRIVERS = {
    "samples": (["--sizes", "2,4,1", "--batch", "100000000"], "expected a smaller --batch"),
    "widths": (["--sizes", "30000,30000,1"], "expected smaller --sizes"),
    "spec-widths": (["--spec", "30000-30000-1", "--optimizer", "adam"], "expected smaller --spec"),
    "epochs": (
        ["--sizes", "784-256-256-10", "--epochs", "100000", "--save", "SAVE"],
        "expected fewer --epochs or no --save",
    ),
}


@pytest.mark.parametrize("case", list(DRIVERS))
def test_a_run_that_cannot_fit_names_the_options_that_drive_its_estimate(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("fcgrad.engine.check_run.build", _no_run)
    monkeypatch.setattr(budget, "available_memory", lambda: 10 * 10**9)
    options, asked = DRIVERS[case]
    assert main(["check", *[str(tmp_path / "run.npz") if o == "SAVE" else o for o in options]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fcgrad check: error: memory: this run needs about"), err
    assert err.endswith(f"; {asked}\n"), err


def test_audit_names_the_options_that_drive_its_estimate_too(capsys, monkeypatch):
    monkeypatch.setattr("fcgrad.audits.blog.audit", _no_run)
    monkeypatch.setattr(budget, "available_memory", lambda: 10 * 10**9)
    assert main(["audit", "--sizes", "2,4,1", "--batch", "100000000"]) == 2
    assert capsys.readouterr().err.endswith("; expected a smaller --batch\n")


def test_every_part_of_the_estimate_that_drives_it_is_named_largest_first():
    est = budget.Estimate(comparison_bytes=3 * 10**9, samples_bytes=4 * 10**9, history_bytes=10**8, save_bytes=0)
    knobs = {"comparison": "WIDTHS", "samples": "N", "histories": "STEPS"}
    with pytest.raises(FcgradError, match=r"needs about 7.1 GB .*; expected N, or WIDTHS$"):
        budget.require_fit(est, save_path=None, memory=10**9, disk=None, knobs=knobs)


def test_a_run_that_fits_runs(capsys, monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 10**9)
    assert main(["check", "--steps", "3", "-q"]) == 0


def test_audit_is_estimated_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("fcgrad.audits.blog.audit", _no_run)  # the command imports it when it runs
    monkeypatch.setattr(budget, "available_memory", lambda: 10**6)
    assert main(["audit", "--sizes", "100,100", "--steps", "1000", "--save", str(tmp_path / "a.npz")]) == 2
    assert "fcgrad audit: error: memory: this run needs about" in capsys.readouterr().err


def test_a_file_larger_than_the_free_disk_is_refused():
    est = budget.Estimate(comparison_bytes=1, samples_bytes=0, history_bytes=1, save_bytes=5 * 10**9)
    with pytest.raises(FcgradError, match=r"--save: the file will take about 5.0 GB, but the disk .* has 1.0 GB free"):
        budget.require_fit(est, save_path="run.npz", memory=None, disk=10**9)
    budget.require_fit(est, save_path=None, memory=None, disk=10**9)  # no --save: the disk does not matter


def test_a_large_save_is_announced_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "LARGE_SAVE_BYTES", 1000)  # the blog's 20 steps take about 6 kB
    target = tmp_path / "run.npz"
    assert main(["check", "--steps", "20", "-q", "--save", str(target)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"fcgrad check: note: --save {target} will take about ") and err.endswith("kB\n")


def test_a_small_save_is_not_announced(tmp_path, capsys):
    assert main(["check", "--steps", "20", "-q", "--save", str(tmp_path / "run.npz")]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("error", [MemoryError, RuntimeError("RESOURCE_EXHAUSTED: out of memory allocating")])
def test_running_out_of_memory_anyway_is_one_line_and_exit_2(capsys, monkeypatch, error):
    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(fcgrad.engine.run, "check", exhausted)
    assert main(["check", "--steps", "3"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("fcgrad check: error: out of memory")


def test_available_memory_is_read_from_the_system():
    avail = budget.available_memory()
    assert avail is None or avail > 0


@pytest.mark.parametrize("n,text", [(812, "812 B"), (3_400_000, "3.4 MB"), (431e9, "431.0 GB"), (2e15, "2000.0 TB")])
def test_sizes_are_printed_in_powers_of_1000(n, text):
    assert budget.human(n) == text
