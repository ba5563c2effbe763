"""The ``fcgrad check`` options of the toolbox: each one reaches the run (the description and the JSON say so)."""

import json

import numpy as np
import pytest

from fcgrad.cli.main import main


def _json(capsys, *argv: str) -> dict:
    assert main(["check", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_spec_run_with_an_optimizer_and_mini_batches_states_every_setting(capsys, tmp_path):
    save = tmp_path / "run.npz"
    out = _json(capsys, "--spec", "3-5:tanh:bn-2", "--optimizer", "adam", "--b2", "0.99", "--batch-size", "16",
                "--epochs", "2", "--save", str(save))  # fmt: skip
    run = out["meta"]["problem"]
    assert out["ok"] and out["trajectories"][0]["steps"] == 2 * 4  # 64 random samples in batches of 16
    assert run["optimizer"] == "adam" and run["engine"] == "toolbox"
    # exact: "0.99" parsed by float() on the way in, written back by json
    assert run["hyperparameters"]["b2"] == pytest.approx(0.99, abs=0)
    assert (run["batch_size"], run["epochs"], run["steps"], run["lr"]) == (16, 2, 8, 1e-3)
    with np.load(save) as f:
        assert f["batch_index"].shape == (8, 16) and f["manual/loss"].shape == (8,)
        assert f["jax/nu_gamma0"].shape == (8 + 1, 5, 1)  # Adam's second moment of batch norm's scale, every step


def test_steps_counts_mini_batch_steps(capsys):
    out = _json(capsys, "--spec", "4-6:tanh-3", "--batch-size", "10", "--steps", "5")
    assert out["trajectories"][0]["steps"] == 5 and out["meta"]["problem"]["steps"] == 5


def test_an_epoch_ends_with_the_smaller_last_batch(capsys):
    # 64 random samples in batches of 24: 24, 24 and 16, three steps an epoch (ceil(64 / 24))
    out = _json(capsys, "--spec", "4-6:tanh-3", "--batch-size", "24", "--epochs", "2")
    assert out["trajectories"][0]["steps"] == 6 and out["meta"]["problem"]["steps"] == 6


def test_an_optimizer_runs_on_the_blogs_network(capsys):
    out = _json(capsys, "--optimizer", "momentum", "--steps", "30")
    run = out["meta"]["problem"]
    assert (run["source"], run["spec"], run["optimizer"], run["engine"]) == (
        "and", "2-4:sigmoid-1:sigmoid", "momentum", "toolbox",
    )  # fmt: skip
    assert run["hyperparameters"] == {"momentum": 0.9} and out["trajectories"][0]["steps"] == 30


def test_plain_sgd_on_plain_layers_takes_the_full_derivation_check(capsys):
    out = _json(capsys, "--spec", "4-6:tanh-3", "--loss", "square", "--steps", "3")
    assert out["meta"]["problem"]["engine"] == "network"
    assert {r["quantity"] for r in out["gradients"][0]["rows"]} >= {"residual_z", "grad_w", "grad_b", "residual_x"}


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--spec", "3-2", "--optimizer", "sgd", "--b1", "0.5"], "--b1 does not apply to --optimizer sgd"),
        (["--spec", "3-2", "--batch-size", "0"], "--batch-size: expected a positive integer, got 0"),
        (["--spec", "3-2", "--steps", "4", "--epochs", "2"], "--steps and --epochs: expected one of the two"),
    ],
)
def test_bad_toolbox_options_are_refused_in_one_line(argv, expected, capsys):
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_digits_example_prints_both_accuracies(capsys):
    assert main(["check", "--example", "digits", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy (359 images): manual" in out and "labelled differently: 0" in out


# Every output path is checked before any work, whichever engine the options lead to: a run that then fails
# to write would have thrown its minutes away.
ENGINES = {
    "network": [],
    "toolbox": ["--spec", "3-4:relu:bn-2", "--optimizer", "adam"],
    "sharded": ["--devices", "2"],
}
BAD_PATHS = [
    ("--save", "nowhere/run.npz"),
    ("--save", "run.txt"),
    ("--json", "nowhere/run.json"),
    ("--plot", "nowhere/run.png"),
]


@pytest.mark.parametrize("option, name", BAD_PATHS, ids=[f"{o}-{n}" for o, n in BAD_PATHS])
@pytest.mark.parametrize("engine", list(ENGINES))
def test_an_output_path_is_refused_before_any_run(engine, option, name, tmp_path, monkeypatch, capsys):
    import fcgrad.engine.run
    import fcgrad.engine.sharded
    import fcgrad.engine.toolbox

    def started(*args, **kwargs):
        pytest.fail("the run started")

    for module, attr in [(fcgrad.engine.run, "check"), (fcgrad.engine.toolbox, "check_toolbox"),
                         (fcgrad.engine.toolbox, "compare_spec_gradients"), (fcgrad.engine.sharded, "sharded_check")]:
        monkeypatch.setattr(module, attr, started)  # fmt: skip
    assert main(["check", *ENGINES[engine], option, str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option in err
    assert list(tmp_path.iterdir()) == []


# ---- a ReLU entry within rounding of its kink -------------------------------------------------------------------


def _jax_on_the_other_side_of_one_kink(monkeypatch):
    """JAX's step as if one ReLU entry of layer 0 (column 0, unit 0) had rounded to the other side of 0."""
    from fcgrad.engine import toolbox

    def step(pr, sr, rr, xb, tb, masks, lr, hyper, l2, spec, loss, opt):
        params = [{k: np.asarray(v) for k, v in layer.items()} for layer in pr]
        running = [{k: np.asarray(v) for k, v in layer.items()} for layer in rr]
        branches = toolbox._manual_branches(params, xb, spec, masks, running)
        branches[0] = branches[0].copy()
        branches[0][0, 0] = 1.0 - branches[0][0, 0]
        return toolbox.jit_spec_step_on_branches(pr, sr, rr, xb, tb, masks, branches, lr, hyper, l2, spec, loss, opt)

    monkeypatch.setattr(toolbox, "jit_spec_step", step)


def test_a_relu_entry_on_the_other_side_of_its_kink_is_judged_again_not_called_a_mismatch(monkeypatch):
    from fcgrad.engine.check_run import check_run
    from fcgrad.engine.description import describe

    _jax_on_the_other_side_of_one_kink(monkeypatch)
    done = check_run(describe(spec="4-6:relu-3", optimizer="adam", batch_size=8, steps=6))
    assert done.ok and list(done.report.trajectories[0].kink_steps) == list(range(6))


def test_a_wrong_term_still_fails_after_the_kink_is_judged_again(monkeypatch):
    from fcgrad.engine.check_run import check_run
    from fcgrad.engine.description import describe
    from fcgrad.manual import network

    _jax_on_the_other_side_of_one_kink(monkeypatch)
    real = network.spec_loss_and_gradients

    def l2_doubled(params, x, t, spec, loss, masks, running, l2=0.0):
        return real(params, x, t, spec, loss, masks, running, 2 * l2)

    monkeypatch.setattr(network, "spec_loss_and_gradients", l2_doubled)
    done = check_run(describe(spec="4-6:relu-3", optimizer="sgd", l2=0.1, batch_size=8, steps=3))
    assert not done.ok and list(done.report.trajectories[0].kink_steps) == [0, 1, 2]
