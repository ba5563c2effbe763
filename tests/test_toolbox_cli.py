"""The ``fcgrad check`` options of the toolbox, through the parser the CLI builds from them."""

import argparse
import json

import pytest

from fcgrad.cli.main import build_parser
from fcgrad.cli.toolbox import run_toolbox, wants_toolbox
from fcgrad.manual.errors import FcgradError


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["check", *argv])


def test_spec_run_with_an_optimizer_and_mini_batches_reports_json(capsys, tmp_path):
    save = tmp_path / "run.npz"
    args = _args("--spec", "3-5:tanh:bn-2", "--optimizer", "adam", "--b2", "0.99", "--batch-size", "16",
                 "--epochs", "2", "--json", "--save", str(save))  # fmt: skip
    assert wants_toolbox(args)
    assert run_toolbox(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["trajectory"]["steps"] == 2 * 4  # 64 random samples in batches of 16
    # exact: "0.99" parsed by float() on the way in, written back by json
    assert out["problem"]["b2"] == pytest.approx(0.99, abs=0) and out["problem"]["optimizer"] == "adam"
    assert save.exists()


def test_plain_problem_options_do_not_take_the_toolbox_path():
    assert not wants_toolbox(_args("--sizes", "2,3,1"))


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--spec", "3-2", "--optimizer", "sgd", "--b1", "0.5"], "does not apply to sgd"),
        (["--optimizer", "adam"], "need --spec"),
        (["--spec", "3-2", "--batch-size", "0"], "batch size"),
    ],
)
def test_bad_toolbox_options_raise_one_clear_error(argv, expected):
    with pytest.raises(FcgradError, match=expected):
        run_toolbox(_args(*argv))


def test_digits_example_prints_both_accuracies(capsys):
    args = _args("--example", "digits", "--epochs", "1")
    assert run_toolbox(args) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy (359 images): manual" in out and "labelled differently: 0" in out
