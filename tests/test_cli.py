"""``fcgrad check``: exit codes, the table, --json, --save and the problem options.

Called in-process through ``fcgrad.cli.main.main`` (it returns the exit code) for speed;
test_bad_input.py runs the real process for exit status and tracebacks.
"""

import json

import numpy as np
import pytest

from fcgrad import manual
from fcgrad.cli.main import main
from fcgrad.engine import tolerances as tol
from fcgrad.engine.problems import and_example
from fcgrad.manual.layer import LayerGrads

SHORT = "50"  # steps for the option tests; the default check runs the full 10,000


def _run(capsys, *args) -> tuple[int, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    assert err == "", err
    return code, out


def test_default_check_exits_0_and_prints_every_row_and_the_data(capsys):
    code, out = _run(capsys)
    assert code == 0
    assert "sizes 2-4-1" in out and "steps 10000" in out and "lr 0.1" in out  # the blog's example
    for quantity in ("residual_z", "grad_w", "grad_b", "residual_x", "residual_y"):
        assert quantity in out
    # the blog's code prints X, t and y at the end
    assert "X=" in out and "t=" in out and "y=" in out
    assert "OK" in out and "MISMATCH" not in out


@pytest.mark.parametrize("name", ["xor", "mazur"])  # "and", the default, is run above
def test_every_example_exits_0(name, capsys):
    # the command's wiring for each example; their 10,000-step runs are compared in tests/test_trajectories.py
    code, out = _run(capsys, "--example", name, "--steps", SHORT)
    assert code == 0, out
    assert out.startswith(f"fcgrad check — {name}:") and f"steps {SHORT}," in out


def test_check_exits_1_and_names_the_wrong_term_when_manual_is_wrong(capsys, monkeypatch):
    def bias_summed_everywhere(residual_y, w, cache, activation):
        g = manual.layer.fc_backward(residual_y, w, cache, activation)
        return LayerGrads(g.residual_z, g.grad_w, np.full_like(g.grad_b, np.sum(g.residual_z)), g.residual_x)

    monkeypatch.setattr(manual.network, "fc_backward", bias_summed_everywhere)
    code, out = _run(capsys, "--steps", SHORT)
    assert code == 1
    assert "FAILED" in out and "layer 0 grad_b" in out


def test_json_has_the_documented_keys_within_tolerance(capsys):
    code, out = _run(capsys, "--json", "--steps", SHORT)
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True and report["sides"] == ["manual", "jax"]
    [gradients] = report["gradients"]
    assert gradients["sides"] == ["manual", "jax"] and gradients["rule"] == "rel"
    rows = {(g["layer"], g["quantity"]) for g in gradients["rows"]}
    assert {(i, q) for i in (0, 1) for q in ("residual_z", "grad_w", "grad_b", "residual_x")} <= rows
    for g in gradients["rows"]:
        assert {"layer", "quantity", "max_abs_err", "rel_err"} <= set(g)
        assert g["rel_err"] <= tol.GRAD_REL_TOL_F64, g
    [fd] = report["finite_differences"]
    assert fd["sides"] == ["manual", "finite differences"]
    assert max(r["rel_err"] for r in fd["rows"]) <= tol.FD_REL_TOL
    [traj] = report["trajectories"]
    assert traj["steps"] == int(SHORT) and traj["rule"] == "global" and traj["first_bad_step"] is None
    params = [r for r in traj["rows"] if r["quantity"] != "loss"]
    # each parameter row's bound is TRAJ_ABS_TOL_F64 scaled by max(1, max|param|)
    param_tol = max(r["tol"] for r in params)
    assert 1e-12 <= param_tol <= 1e-11 and max(r["max_abs_err"] for r in params) <= param_tol  # max|param| < 10
    [loss] = [r for r in traj["rows"] if r["quantity"] == "loss"]
    assert loss["tol"] == pytest.approx(1e-12, rel=1e-9) and loss["max_abs_err"] <= tol.TRAJ_ABS_TOL_F64
    assert all(isinstance(v, float) and v > 0 for v in report["last_step_loss"].values())
    output = report["extras"]["output"]  # manual's loss and output after the last step
    assert isinstance(output["loss"], float) and output["y_is"] == "network output"


# max|Δ| recomputed from the saved runs: the same float64 subtraction, so equal up to the last digit or two
SAME_NUMBERS_REL_TOL = 1e-12


def test_save_writes_the_documented_keys_and_shapes(capsys, tmp_path):
    steps = 20
    path = tmp_path / "run.npz"
    json_path = tmp_path / "run.json"
    code, _ = _run(capsys, "--steps", str(steps), "--save", str(path), "--json", str(json_path))
    assert code == 0
    p = and_example()
    sides = ("manual", "jax")
    with np.load(path) as f:
        expected = {"X", "T", "meta"} | {f"{s}/loss" for s in sides}
        expected |= {f"{k}{i}_init" for i in (0, 1) for k in ("w", "b")}
        expected |= {f"{s}/{k}{i}" for i in (0, 1) for k in ("w", "b") for s in sides}
        assert set(f.files) == expected
        # each trajectory row's max|Δ|: the largest difference of the two saved sides over the steps
        [traj] = json.loads(json_path.read_text())["trajectories"]
        for row in traj["rows"]:
            key = "loss" if row["layer"] < 0 else f"{row['quantity']}{row['layer']}"
            recomputed = np.max(np.abs(f[f"manual/{key}"] - f[f"jax/{key}"]))
            assert recomputed == pytest.approx(row["max_abs_err"], rel=SAME_NUMBERS_REL_TOL, abs=0), key
        # the data and initial parameters are stored as given: copies, so exact equality holds
        assert np.array_equal(f["X"], p.x) and np.array_equal(f["T"], p.t)
        for side in sides:
            assert f[f"{side}/loss"].shape == (steps,)
        for i, layer in enumerate(p.params):
            for k in ("w", "b"):
                assert np.array_equal(f[f"{k}{i}_init"], layer[k])
                for side in sides:
                    assert f[f"{side}/{k}{i}"].shape == (steps + 1, *layer[k].shape)
                    assert np.array_equal(f[f"{side}/{k}{i}"][0], layer[k])  # entry 0: the initial parameters
                diff = np.max(np.abs(f[f"manual/{k}{i}"] - f[f"jax/{k}{i}"]))
                assert diff <= tol.TRAJ_ABS_TOL_F64
        # entry k of the losses is the loss at the parameters of step k
        loss_0 = manual.gradients(p.params, p.x, p.t).loss
        assert abs(f["manual/loss"][0] - loss_0) <= tol.TRAJ_ABS_TOL_F64


def test_float32_exits_0(capsys):
    code, out = _run(capsys, "--dtype", "float32")
    assert code == 0, out
    assert "float32" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--sizes", "3,7,5,2", "--activation", "relu,tanh,sigmoid", "--batch", "1", "--seed", "5", "--lr", "0.5"],
        ["--sizes", "3,7,5,2", "--activation", "tanh"],  # one name for every layer
        ["--sizes", "3,7,5,2", "--loss", "cross-entropy"],
    ],
    ids=["per-layer-activations", "one-activation", "cross-entropy"],
)
@pytest.mark.slow
def test_problem_options_exit_0(args, capsys):
    code, out = _run(capsys, *args, "--steps", SHORT)
    assert code == 0, out
    assert "OK" in out
