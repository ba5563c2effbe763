"""CLI conventions: help and exit codes, --version, one sizes syntax, -q, --strict, meta, notes, tolerances."""

import importlib.metadata
import io
import json
import re
import tomllib

import numpy as np
import pytest
from conftest import REPO_ROOT

import fcgrad.engine.run
import fcgrad.manual.network
from fcgrad import manual
from fcgrad.audits.blog import audit
from fcgrad.benchmarks.cli import main as bench_main
from fcgrad.benchmarks.cli import spec_arg
from fcgrad.cli import terminal
from fcgrad.cli.args import parse_sizes
from fcgrad.cli.main import main
from fcgrad.engine.problems import and_example
from fcgrad.files import meta
from fcgrad.manual.blog_code import BlogDepartures
from fcgrad.manual.layer import LayerGrads


def _version_in_pyproject() -> str:
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


@pytest.mark.parametrize("command", [[], ["check"], ["audit"], ["bench"]], ids=["fcgrad", "check", "audit", "bench"])
def test_every_help_has_a_description_and_the_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes" in out and "  2 " in out and "130" in out
    assert out.split("\n\n")[1].strip()  # a description after the usage


def test_version_names_fcgrad_numpy_jax_and_python(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("fcgrad ") and "NumPy" in out and "JAX" in out and "Python" in out
    assert out.split()[1] == meta.fcgrad_version()


def test_version_falls_back_to_the_source_trees_pyproject(monkeypatch):
    real = importlib.metadata.version

    def not_installed(name):
        if name == "fcgrad":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert meta.fcgrad_version() == _version_in_pyproject()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.8.7")
    assert meta.fcgrad_version() == "9.8.7"  # an installed distribution's metadata comes first


@pytest.mark.parametrize(
    "text,sizes",
    [("2,4,1", (2, 4, 1)), ("2-4-1", (2, 4, 1)), (" 784 - 256 - 10 ", (784, 256, 10)), ("3,-1", (3, -1))],
)
def test_sizes_read_with_commas_or_dashes(text, sizes):
    assert parse_sizes(text) == sizes


@pytest.mark.parametrize("text", ["2,4-1", "2--4", "2,,1", "2;4;1", "", "2.5,1", "-"])
def test_sizes_in_any_other_form_are_refused(text):
    with pytest.raises(ValueError, match="expected layer widths such as 2,4,1 or 2-4-1"):
        parse_sizes(text)


@pytest.mark.parametrize("command", ["check", "audit"])
def test_check_and_audit_read_both_sizes_forms_as_one_problem(command, capsys):
    problems = []
    for sizes in ("3,5,2", "3-5-2"):
        assert main([command, "--sizes", sizes, "--steps", "2", "--json"]) == 0
        problems.append(json.loads(capsys.readouterr().out)["meta"]["problem"])
    assert problems[0] == problems[1] and problems[0]["sizes"] == [3, 5, 2]


@pytest.mark.parametrize(
    "text,spec", [("784,256,10", "784-256-10"), ("784-256-10:128", "784-256-10:128"), ("2,4,1:4", "2-4-1:4")]
)
def test_bench_reads_the_same_sizes_syntax(text, spec):
    assert spec_arg(text) == spec


def test_bench_errors_are_one_line_too(capsys):
    assert bench_main(["--quick", "--sizes", "784,x,10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fcgrad bench: error: --sizes: ") and "'784,x,10'" in err
    with pytest.raises(SystemExit) as info:
        bench_main(["--dtypes", "float16"])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


# an option given twice with different values: (argv, the option the refusal names); each would otherwise run with
# the last value in silence
REPEATED = {
    "check-optimizer": (["check", "--optimizer", "adam", "--optimizer", "sgd"], "--optimizer"),
    "check-lr": (["check", "--lr", "0.5", "--lr", "0.1"], "--lr"),
    "check-sizes": (["check", "--sizes", "2,4,1", "--sizes", "2-5-1"], "--sizes"),
    "check-json": (["check", "--json", "--json", "run.json"], "--json"),
    "audit-steps": (["audit", "--steps", "3", "--steps", "4"], "--steps"),
    "audit-departures": (["audit", "--departures", "none", "--departures", "all"], "--departures"),
    "bench-device": (["bench", "--device", "cpu", "--device", "auto"], "--device"),
    "bench-sizes": (["bench", "--sizes", "2,4,1", "--sizes", "3-4-1"], "--sizes"),
}


@pytest.mark.parametrize("case", list(REPEATED))
def test_an_option_given_twice_with_different_values_is_refused_naming_it(case, capsys, monkeypatch):
    argv, option = REPEATED[case]
    monkeypatch.setattr(fcgrad.engine.run, "check", lambda *a, **k: pytest.fail("the run started"))
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"fcgrad {argv[0]}: error: argument {option}: given twice with different values"), err


def test_an_option_given_twice_with_the_same_value_is_taken_once(capsys):
    assert main(["check", "--sizes", "2,4,1", "--sizes", "2-4-1", "--lr", "0.3", "--lr", "0.3", "--steps", "2",
                 "--json"]) == 0  # fmt: skip
    run = json.loads(capsys.readouterr().out)["meta"]["problem"]
    assert run["sizes"] == [2, 4, 1] and run["lr"] == pytest.approx(0.3, rel=0, abs=0) and run["steps"] == 2


def test_bench_refuses_a_repeated_option_as_its_own_program_too(capsys):
    with pytest.raises(SystemExit) as info:
        bench_main(["--quick", "--dtypes", "float32", "--dtypes", "float64"])
    assert info.value.code == 2
    assert "argument --dtypes: given twice with different values" in capsys.readouterr().err


def _break_bias(monkeypatch):
    def bias_summed_everywhere(residual_y, w, cache, activation):
        g = manual.layer.fc_backward(residual_y, w, cache, activation)
        return LayerGrads(g.residual_z, g.grad_w, np.full_like(g.grad_b, np.sum(g.residual_z)), g.residual_x)

    monkeypatch.setattr(manual.network, "fc_backward", bias_summed_everywhere)


def test_quiet_check_prints_only_the_verdict_when_all_agree(capsys):
    assert main(["check", "--steps", "3", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("OK") for line in lines) and len(lines) <= 2  # the verdict (and a note at most)
    assert not any("MISMATCH" in line or "residual_z" in line or "X=" in line for line in lines)


def test_quiet_check_prints_the_failing_rows_and_the_verdict(capsys, monkeypatch):
    _break_bias(monkeypatch)
    assert main(["check", "--steps", "3", "--quiet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    verdict = [line for line in lines if line.startswith("FAILED")]
    rows = [line for line in lines if "MISMATCH" in line]
    header = [line for line in lines if line.startswith(("failing rows", "  layer"))]  # the table's two titles
    named = [line for line in lines if ": looks like" in line]  # the catalogue's name for a failing row
    assert len(verdict) == 1 and rows and len(verdict) + len(header) + len(rows) + len(named) == len(lines)
    assert any("grad_b" in line for line in rows)


def test_audit_strict_exits_1_on_a_finding_and_0_without(capsys):
    assert main(["audit", "--steps", "2", "-q"]) == 0  # findings, but not strict
    assert main(["audit", "--steps", "2", "-q", "--strict"]) == 1
    assert main(["audit", "--steps", "2", "-q", "--strict", "--departures", "none"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == lines[1] and lines[0].startswith("3 finding(s): unnormalized_loss_grad (layer 1 residual_y)")
    assert lines[2] == "no findings: the variant matches JAX"


def test_audit_help_speaks_of_the_blogs_code(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    out = capsys.readouterr().out
    assert "the blog's code" in " ".join(out.split())
    assert "seed" not in out.replace("--seed SEED", "").replace("--seed", "").replace("random seed", "")


def _readme_audit_options() -> set[str]:
    """The options of the ``fcgrad audit [...]`` synopsis (docs/audit.md, which README links)."""
    readme = (REPO_ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    block = re.search(r"^```\n(fcgrad audit \[.*?)^```", readme, flags=re.S | re.M).group(1)
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", block))


def test_audit_help_and_readme_list_exactly_the_options_audit_takes(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    out = capsys.readouterr().out
    usage = out.split("\n\n")[0]
    assert set(re.findall(r"\[(--?[a-z][a-z0-9-]*)", usage)) - {"-h"} == _readme_audit_options()
    text = " ".join(out.split())
    for stale in ("digits", "mini-batch", "dropout", "adam", "{in,out,out,in}", "--optimizer", "--devices", "-v,"):
        assert stale not in text, stale
    assert "--weights in,out|out,in" in text


def test_json_header_holds_seed_problem_final_loss_tolerances_and_versions(capsys):
    argv = ["check", "--sizes", "3,4,2", "--seed", "7", "--steps", "4", "--lr", "0.3", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    head = report["meta"]
    assert next(iter(report)) == "meta"  # the header comes first
    assert head["seed"] == 7 and head["problem"]["seed"] == 7
    assert head["problem"] == {  # the whole run description: nothing the run did is left out
        "source": "random",
        "data_file": None,
        "targets": None,
        "spec": "3-4:sigmoid-2:sigmoid",
        "sizes": [3, 4, 2],
        "activations": ["sigmoid", "sigmoid"],
        "loss": "square",
        "samples": 8,
        "init": "N(0, 1/in)",
        "trainable": "every parameter",
        "optimizer": "sgd",
        "lr": 0.3,
        "hyperparameters": {},
        "l2": 0.0,
        "batch_size": None,
        "epochs": None,
        "steps": 4,
        "seed": 7,
        "dtype": "float64",
        "rtol": None,
        "atol": None,
        "devices": None,
        "engine": "network",
    }
    assert head["final_loss"] == pytest.approx(report["extras"]["output"]["loss"], rel=0, abs=0)
    assert set(head["tolerances"]) >= {"gradient_rel", "trajectory_abs"}
    assert all(isinstance(head["versions"][k], str) for k in ("fcgrad", "numpy", "jax", "python"))


def test_save_holds_the_same_meta_as_a_json_string(tmp_path, capsys):
    path = tmp_path / "run.npz"
    assert main(["check", "--example", "mazur", "--steps", "2", "--json", "--save", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)["meta"]
    with np.load(path) as f:  # no pickle needed
        assert f["meta"].shape == ()
        stored = json.loads(str(f["meta"]))
    assert stored == printed
    assert stored["seed"] is None  # Mazur's weights are the post's
    assert stored["problem"]["trainable"] == [{"w": True, "b": False}] * 2


def test_seed_on_mazur_is_refused_in_one_line_since_nothing_is_drawn(capsys):
    assert main(["check", "--example", "mazur", "--seed", "3", "--steps", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fcgrad check: error: --seed 3: nothing in this run is drawn")
    assert "expected no --seed" in err


@pytest.mark.parametrize("args", [["--seed", "3"], ["--example", "mazur"]], ids=["seed-on-and", "mazur-no-seed"])
def test_an_option_that_takes_effect_gets_no_note(args, capsys):
    assert main(["check", *args, "--steps", "2", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_the_random_seed_changes_the_problem():
    assert and_example(seed=1).seed == 1
    assert not np.array_equal(and_example(seed=1).params[0]["w"], and_example(seed=2).params[0]["w"])


@pytest.mark.parametrize("option", ["--rtol", "--atol"])
def test_tolerance_overrides_reach_the_comparisons(option, capsys):
    # float64 differences are ~1e-16, never below 1e-30: a 1e-30 tolerance must fail the rows it governs
    assert main(["check", "--steps", "5", option, "1e-30", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    key = "gradient_rel" if option == "--rtol" else "trajectory_abs"
    assert report["meta"]["tolerances"][key] == 1e-30
    rows = (report["gradients"] if option == "--rtol" else report["trajectories"])[0]["rows"]
    assert any(not r["ok"] for r in rows)
    assert main(["check", "--steps", "5", option, "1e-30", "-q"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_loose_tolerances_are_reported_in_force(capsys):
    assert main(["check", "--steps", "2", "--rtol", "1e-3", "--atol", "1e-4", "--json"]) == 0
    tolerances = json.loads(capsys.readouterr().out)["meta"]["tolerances"]
    assert tolerances["gradient_rel"] == 1e-3 and tolerances["trajectory_abs"] == 1e-4


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_waits_a_few_seconds_then_redraws_at_most_twice_a_second():
    clock, out = _Clock(), io.StringIO()
    progress = terminal.Progress("fcgrad check", out, clock=clock)
    for t, done in [(0.5, 10), (1.9, 20), (2.1, 30), (2.3, 40), (2.7, 50), (2.8, 100)]:
        clock.now = t
        progress(done, 100)
    lines = out.getvalue().split("\r")[1:]
    assert [line.split()[3] for line in lines] == ["30/100", "50/100", "100/100"]  # the last always shows
    assert "fcgrad check: step 30/100 (30%), 2 s, about 5 s left" == lines[0].strip()
    progress.close()
    assert out.getvalue().endswith("\n")


def test_a_short_run_prints_no_progress_at_all():
    out = io.StringIO()
    progress = terminal.Progress("fcgrad check", out, clock=_Clock())
    progress(100, 100)
    progress.close()
    assert out.getvalue() == ""


def test_progress_shows_on_a_terminal_and_not_under_quiet_or_in_a_pipe():
    assert terminal.progress_enabled(False, _Tty())
    assert not terminal.progress_enabled(True, _Tty())
    assert not terminal.progress_enabled(False, io.StringIO())


@pytest.mark.parametrize("quiet", [False, True])
def test_the_cli_hands_progress_to_the_engine_only_when_shown(quiet, capsys, monkeypatch):
    seen = {}

    def record(*args, progress=None, **kwargs):
        seen["progress"] = progress
        raise KeyboardInterrupt  # stop here: only the call matters

    monkeypatch.setattr(fcgrad.engine.run, "check", record)
    monkeypatch.setattr("sys.stderr", _Tty())
    assert main(["check", *(["-q"] if quiet else [])]) == 130
    assert (seen["progress"] is None) == quiet
    assert isinstance(seen["progress"], terminal.Progress) or quiet


def test_audit_reports_progress_over_all_its_runs():
    calls = []
    p = and_example().with_options(steps=7)
    departures = BlogDepartures.from_names("scalar_bias_grad,residual_after_update")
    audit(p, departures, progress=lambda done, total: calls.append((done, total)))
    assert {total for _, total in calls} == {3 * 7}  # one run per departure found, and the combined run
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == 3 * 7
