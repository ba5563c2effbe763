"""Bad input, through the Python API and the CLI: a clear error naming what was expected and what came.

API: ``FcgradError`` before any work. CLI: exit 2, one ``fcgrad check: error: ...`` line on
stderr, no traceback (argparse's own errors exit 2 the same way); a run that diverges exits 1.
"""

import json
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import REPO_ROOT, run_cli

from fcgrad import manual
from fcgrad.cli.main import main
from fcgrad.engine.problems import example, random_problem
from fcgrad.engine.run import check
from fcgrad.manual.errors import DivergenceError, FcgradError

SIZES = (3, 5, 2)
N = 8


def _good():
    """Params for 3-5-2, X (3, N), T (2, N): each test breaks one thing."""
    p = random_problem(SIZES, batch=N, seed=0)
    return [dict(layer) for layer in p.params], p.x.copy(), p.t.copy()


def _with_value(a, value, index=(0, 1)):
    a = a.copy()
    a[index] = value
    return a


def _bad_api_calls():
    params, x, t = _good()
    w1 = params[1]["w"]
    return {
        # (call, substrings the message must contain: what was expected, what came)
        "X-by-row": (lambda: manual.gradients(params, x.T, t), ["(3, N)", "(8, 3)", "transpose", "by column"]),
        "T-by-row": (lambda: manual.gradients(params, x, t.T), ["(2, N)", "(8, 2)", "transpose"]),
        "T-wrong-rows": (lambda: manual.gradients(params, x, np.zeros((3, N))), ["(2, N)", "(3, 8)"]),
        "T-wrong-columns": (lambda: manual.gradients(params, x, t[:, :5]), ["8 columns", "(2, 5)"]),
        "layer-widths-mismatch": (
            lambda: manual.gradients([params[0], {"w": w1[:4], "b": params[1]["b"]}], x, t),
            ["5 input rows", "(4, 2)"],
        ),
        "b-as-row": (
            lambda: manual.gradients([{"w": params[0]["w"], "b": params[0]["b"].T}, params[1]], x, t),
            ["(5, 1)", "(1, 5)"],
        ),
        "X-1d": (lambda: manual.gradients(params, x[0], t), ["2-D", "(8,)"]),
        "NaN-in-X": (lambda: manual.gradients(params, _with_value(x, np.nan), t), ["X", "finite", "nan", "(0, 1)"]),
        "Inf-in-X": (lambda: manual.gradients(params, _with_value(x, np.inf), t), ["X", "finite", "inf"]),
        "NaN-in-T": (lambda: manual.gradients(params, x, _with_value(t, np.nan)), ["T", "finite", "nan"]),
        "Inf-in-T": (lambda: manual.train(params, x, _with_value(t, -np.inf), steps=1), ["T", "finite", "-inf"]),
        "NaN-in-w": (
            lambda: manual.gradients([params[0], {"w": _with_value(w1, np.nan), "b": params[1]["b"]}], x, t),
            ["layer 1 w", "finite", "nan"],
        ),
        "Inf-in-b": (
            lambda: manual.train(
                [{"w": params[0]["w"], "b": _with_value(params[0]["b"], np.inf, (2, 0))}, params[1]], x, t
            ),
            ["layer 0 b", "finite", "inf", "(2, 0)"],
        ),
        "empty-batch": (lambda: manual.gradients(params, x[:, :0], t[:, :0]), ["at least one sample", "(3, 0)"]),
        "lr-zero": (lambda: manual.train(params, x, t, lr=0.0, steps=1), ["positive finite", "0.0"]),
        "lr-negative": (lambda: manual.train(params, x, t, lr=-0.1, steps=1), ["positive finite", "-0.1"]),
        "lr-nan": (lambda: manual.train(params, x, t, lr=float("nan"), steps=1), ["positive finite", "nan"]),
        "steps-negative": (lambda: manual.train(params, x, t, steps=-1), ["non-negative integer", "-1"]),
        "unknown-activation": (
            lambda: manual.gradients(params, x, t, activations="softplus"),
            ["sigmoid", "tanh", "'softplus'"],
        ),
        "activation-count": (
            lambda: manual.gradients(params, x, t, activations=["relu", "tanh", "sigmoid"]),
            ["2 (one per layer)", "got 3"],
        ),
        "unknown-loss": (lambda: manual.gradients(params, x, t, loss="huber"), ["square", "cross-entropy", "'huber'"]),
        "width-zero": (lambda: manual.init_params([3, 0, 2]), ["positive integer width", "got 0"]),
        "width-negative": (lambda: manual.init_params([3, -4, 2]), ["positive integer width", "got -4"]),
        "one-size": (lambda: random_problem([3]), ["at least 2", "[3]"]),
        "problem-width-zero": (lambda: random_problem([3, 0]), ["positive integer width", "got 0"]),
        "problem-batch-zero": (lambda: random_problem(SIZES, batch=0), ["positive number of samples", "got 0"]),
        "unknown-example": (lambda: example("nand"), ["'and'", "'nand'"]),
        "problem-lr-zero": (lambda: example("and").with_options(lr=0), ["positive finite", "got 0"]),
        "problem-steps-negative": (lambda: example("and").with_options(steps=-5), ["non-negative", "-5"]),
        "problem-dtype": (lambda: example("and").with_options(dtype="float16"), ["float64", "float32", "'float16'"]),
        "check-NaN-in-X": (
            lambda: check(replace(example("and"), x=_with_value(example("and").x, np.nan))),
            ["X", "nan"],
        ),
    }


BAD_API = _bad_api_calls()


@pytest.mark.parametrize("case", list(BAD_API))
def test_api_rejects_bad_input_naming_expected_and_received(case):
    call, needles = BAD_API[case]
    with pytest.raises(FcgradError) as info:
        call()
    message = str(info.value)
    missing = [s for s in needles if s not in message]
    assert not missing, f"message {message!r} lacks {missing}"


def test_diverging_run_raises_naming_the_step():
    params, x, t = _good()
    with pytest.raises(DivergenceError) as info:
        manual.train(params, x, t, activations="identity", lr=1e3, steps=100)
    step = info.value.step
    assert 0 < step < 100
    assert f"step {step}" in str(info.value)
    # the run was fine before that step: the losses up to it are finite
    ok = manual.train(params, x, t, activations="identity", lr=1e3, steps=step, record_params=False)
    assert np.all(np.isfinite(ok.losses))


# CLI: (arguments after "check", substrings of the message); FcgradError paths return 2
BAD_CLI = {
    "width-zero": (["--sizes", "2,0,1"], ["positive integer width", "got 0"]),
    "width-negative": (["--sizes", "2,-3,1"], ["positive integer width", "got -3"]),
    "one-size": (["--sizes", "5"], ["at least 2", "[5]"]),
    "steps-negative": (["--steps", "-1"], ["non-negative integer", "-1"]),
    "lr-zero": (["--lr", "0"], ["positive finite", "0.0"]),
    "lr-negative": (["--lr", "-0.5"], ["positive finite", "-0.5"]),
    "lr-nan": (["--lr", "nan"], ["positive finite", "nan"]),
    "unknown-activation": (["--sizes", "2,3", "--activation", "softplus"], ["sigmoid", "'softplus'"]),
    "activation-count": (["--sizes", "2,3,1", "--activation", "relu,tanh,relu"], ["2 (one per layer)", "got 3"]),
    "sizes-with-example": (["--example", "xor", "--sizes", "2,4,1"], ["--example and --sizes", "one network"]),
    "activation-with-example": (["--activation", "tanh"], ["needs --sizes", "--activation"]),
    "batch-zero": (["--sizes", "2,3", "--batch", "0"], ["positive number of samples", "got 0"]),
    "save-into-missing-folder": (
        ["--steps", "1", "--save", "/nonexistent-fcgrad/run.npz"],
        ["existing directory", "/nonexistent-fcgrad"],
    ),
}

# argparse's own errors: SystemExit(2), usage and message on stderr
BAD_ARGPARSE = {
    "unknown-loss": (["--loss", "huber"], ["invalid choice", "'huber'", "'square'"]),
    "unknown-example": (["--example", "nand"], ["invalid choice", "'nand'", "'and'"]),
    "unknown-option": (["--bogus"], ["unrecognized arguments", "--bogus"]),
    "sizes-not-integers": (["--sizes", "2,x,1"], ["layer widths such as 2,4,1 or 2-4-1", "'2,x,1'"]),
    "unknown-dtype": (["--dtype", "float16"], ["invalid choice", "'float16'", "'float64'"]),
    "seed-negative": (["--seed", "-1"], ["non-negative integer", "'-1'"]),
    "sizes-mixed-separators": (["--sizes", "2,4-1"], ["layer widths such as", "'2,4-1'"]),
    "rtol-negative": (["--rtol", "-1"], ["--rtol", "positive finite", "'-1'"]),
    "rtol-nan": (["--rtol", "nan"], ["--rtol", "positive finite", "'nan'"]),
    "rtol-text": (["--rtol", "tight"], ["--rtol", "positive finite", "'tight'"]),
    "atol-zero": (["--atol", "0"], ["--atol", "positive finite", "'0'"]),
    "atol-inf": (["--atol", "inf"], ["--atol", "positive finite", "'inf'"]),
}


@pytest.mark.parametrize("case", list(BAD_CLI))
def test_cli_rejects_bad_input_with_exit_2(case, capsys):
    args, needles = BAD_CLI[case]
    assert main(["check", *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("fcgrad check: error: ")
    assert "Traceback" not in err
    missing = [s for s in needles if s not in err]
    assert not missing, f"stderr {err!r} lacks {missing}"


@pytest.mark.parametrize("case", list(BAD_ARGPARSE))
def test_cli_rejects_bad_options_with_exit_2(case, capsys):
    args, needles = BAD_ARGPARSE[case]
    with pytest.raises(SystemExit) as info:
        main(["check", *args])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("fcgrad check: error: ") and err.count("\n") == 1, err  # one line, no usage block
    missing = [s for s in needles if s not in err]
    assert not missing, f"stderr {err!r} lacks {missing}"


DIVERGING = ["check", "--sizes", "2,8,8,1", "--activation", "identity", "--lr", "1e3", "--steps", "100"]


def test_cli_diverging_run_exits_1_and_prints_the_comparisons_that_finished(capsys):
    assert main(DIVERGING) == 1
    out, err = capsys.readouterr()
    assert err == ""
    assert "diverged" in out and re.search(r"step \d+", out), out
    for quantity in ("residual_z", "grad_w", "grad_b", "residual_x"):  # the step-0 comparisons are kept
        assert quantity in out


# the same through a real process: exit status, stderr, and no traceback
SUBPROCESS_CASES = {
    "fcgrad-error": ["check", "--sizes", "2,0,1"],
    "argparse-error": ["check", "--loss", "huber"],
}


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
@pytest.mark.slow
def test_cli_process_exits_2_with_one_line_and_no_traceback(case):
    proc = run_cli(*SUBPROCESS_CASES[case])
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("fcgrad check: error: ")
    assert proc.stderr.count("\n") == 1, proc.stderr


# Answered before JAX is imported (a second, not one): help, argparse's errors, bad values the run description
# refuses before any work, the output paths, a data file and a network file that cannot be used, and the options
# audit cannot honour. Run one after another in one fresh process, as ``python -m fcgrad`` runs each.
BEFORE_JAX = [["--help"], ["check", "--help"], ["check", "--loss", "huber"], ["check", "--sizes", "2,0,1"],
              ["check", "--spec", "3-x"], ["audit", "--departures", "bogus"], ["bench", "--help"],
              ["check", "--plot", "x.jpg"], ["audit", "--plot", "x.jpg"], ["check", "--save", "x.txt"],
              ["audit", "--code", "missing.py"], ["audit", "--code", "SYNTAX_ERROR.py"],
              ["check", "--sizes", "3,2", "--batch", "2", "--devices", "3"], ["check", "--devices", "8"],
              ["check", "--data", "missing.npz"], ["check", "--example", "mazur", "--seed", "3"],
              ["check", "--optimizer", "adam", "--optimizer", "sgd"],
              ["audit", "--optimizer", "adam", "--devices", "2"],
              ["audit", "--spec", "3-4:bn-2"], ["audit", "--code", "examples/blog_shaped_net.py", "--spec", "3-4-2"],
              ["check", "--spec", "3-4:bn-2", "--plot", "x.png"]]  # fmt: skip
_EACH_AS_THE_COMMAND = """
import contextlib, io, json, runpy, sys
seen = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["fcgrad", *argv]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            runpy.run_module("fcgrad", run_name="__main__")
            code = 0
        except SystemExit as exit:
            code = exit.code
    seen.append([argv, code, err.getvalue().count("\\n"), "jax" in sys.modules])
print(json.dumps(seen))
"""


def test_help_and_usage_errors_answer_without_importing_jax(tmp_path):
    broken = tmp_path / "broken_net.py"
    broken.write_text("class Net:\n    def forward(self, x)\n        return x\n")  # a colon missing: line 2
    asked = [[str(broken) if a == "SYNTAX_ERROR.py" else a for a in argv] for argv in BEFORE_JAX]
    done = subprocess.run([sys.executable, "-c", _EACH_AS_THE_COMMAND, json.dumps(asked)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert [argv for argv, *_ in seen] == asked
    for argv, code, error_lines, jax_loaded in seen:
        assert code == (0 if argv[-1] == "--help" else 2), argv
        assert error_lines == (0 if code == 0 else 1), argv  # an error is one line on stderr
        assert not jax_loaded, f"fcgrad {' '.join(argv)} imported JAX"


@pytest.mark.parametrize("seed", [-1, 1.5, True], ids=["negative", "float", "bool"])
def test_bad_seed_is_rejected_by_the_python_api(seed):
    with pytest.raises(FcgradError, match=r"seed: expected a non-negative integer, got"):
        manual.init_params([2, 3], seed=seed)
    with pytest.raises(FcgradError, match=r"seed: expected a non-negative integer, got"):
        random_problem([2, 3], seed=seed)


@pytest.mark.parametrize(
    "x_shape,t_shape,expected",
    [
        ((4, 2), (1, 4), r"X: expected shape \(2, N\).*got \(4, 2\)"),
        ((2, 4), (4, 1), r"T: expected shape \(1, 4\), got \(4, 1\)"),
    ],
    ids=["X-by-row", "T-by-row"],
)
def test_reference_rejects_the_wrong_layout_with_a_clear_message(x_shape, t_shape, expected):
    from fcgrad import reference

    params = manual.init_params([2, 3, 1])
    with pytest.raises(ValueError, match=expected):
        reference.gradients(params, np.zeros(x_shape), np.zeros(t_shape), activations=["sigmoid"] * 2)
