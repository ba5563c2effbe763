"""The options that reach the newer checks from the command line: --data, --plot, --devices, --spec, --code.

matplotlib is in the test extra: the --plot tests run, never skip.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from fcgrad.cli.main import main
from fcgrad.engine.problems import and_example

ROOT = Path(__file__).resolve().parents[1]
BLOG = str(ROOT / "tests" / "fixtures" / "blog_net.py")
EXAMPLE_NET = str(ROOT / "examples" / "blog_shaped_net.py")
STEPS = "20"  # a few steps: these tests are about the wiring, the checks have their own tests


def _and_npz(tmp_path) -> str:
    p = and_example()
    path = tmp_path / "and.npz"
    np.savez(path, X=p.x, T=p.t, w0=p.params[0]["w"], b0=p.params[0]["b"], w1=p.params[1]["w"], b1=p.params[1]["b"])
    return str(path)


def test_check_runs_the_users_npz_with_its_initial_parameters(tmp_path, capsys):
    assert main(["check", "--data", _and_npz(tmp_path), "--steps", STEPS, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["meta"]["problem"]["sizes"] == [2, 4, 1]
    # the file's parameters were used: the run starts where the blog's AND example starts
    p = and_example().with_options(steps=int(STEPS))
    from fcgrad.engine.run import check

    assert out["extras"]["output"]["loss"] == pytest.approx(check(p).final_loss, rel=1e-12)


def test_data_and_example_together_are_refused(tmp_path, capsys):
    assert main(["check", "--data", _and_npz(tmp_path), "--example", "xor"]) == 2
    assert "expected one of the two" in capsys.readouterr().err


def test_targets_without_data_is_refused(capsys):
    assert main(["check", "--targets", "y"]) == 2
    assert "--targets" in capsys.readouterr().err


def test_check_plot_writes_a_png_and_nothing_else(tmp_path):
    target = tmp_path / "check.png"
    assert main(["check", "--steps", STEPS, "-q", "--plot", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.png"]  # no temporary file left


def test_a_plot_into_a_missing_folder_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    import fcgrad.engine.run

    monkeypatch.setattr(fcgrad.engine.run, "check", lambda *a, **k: pytest.fail("the run started"))
    assert main(["check", "--plot", str(tmp_path / "nowhere" / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--plot" in err


@pytest.mark.slow
def test_audit_plot_draws_the_blog_codes_drift(tmp_path):
    target = tmp_path / "audit.png"
    assert main(["audit", "--steps", STEPS, "-q", "--plot", str(target)]) == 0
    assert target.stat().st_size > 1000


def test_audit_code_names_the_blogs_departures_and_strict_exits_1(capsys):
    assert main(["audit", "--code", BLOG, "--steps", STEPS]) == 0
    text = capsys.readouterr().out
    for name in ("missing_1_over_n", "bias_summed_over_all_axes", "residual_through_updated_w"):
        assert name in text
    assert main(["audit", "--code", BLOG, "--steps", STEPS, "--strict"]) == 1


def test_audit_code_json_to_a_file_prints_the_text(tmp_path, capsys):
    target = tmp_path / "audit.json"
    assert main(["audit", "--code", EXAMPLE_NET, "--steps", STEPS, "--json", str(target)]) == 0
    assert json.loads(target.read_text())["findings"]
    assert "finding" in capsys.readouterr().out


SIDES = ["manual", "jax", "manual-sharded", "jax-jit-sharded", "jax-shard_map-sharded"]
# every sharded side against the one-device side of its own engine, and manual against JAX, as fcgrad check does
PAIRS = [("manual vs jax", "gradients"), ("manual-sharded vs manual", "gradients"),
         ("jax-jit-sharded vs jax", "gradients"), ("jax-shard_map-sharded vs jax", "gradients"),
         ("manual vs jax", "trajectories"), ("manual-sharded vs manual", "trajectories"),
         ("jax-jit-sharded vs jax", "trajectories"), ("jax-shard_map-sharded vs jax", "trajectories"),
         ("manual-sharded replicas vs replica 0", "trajectories")]  # fmt: skip


@pytest.mark.slow
def test_check_devices_compares_five_sides_over_the_shards_it_was_given(capsys):
    # 3 devices over the blog's N = 4 samples: uneven shards of 2, 1, 1, so the weights n_k/N matter
    assert main(["check", "--devices", "3", "--steps", STEPS, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["findings"] == [] and out["sides"] == SIDES
    extras = out["extras"]
    assert extras["devices"] == ["cpu:0", "cpu:1", "cpu:2"] and extras["shard_sizes"] == [2, 1, 1]
    assert out["meta"]["problem"]["devices"] == 3 and out["meta"]["problem"]["steps"] == int(STEPS)
    compared = [(" vs ".join(c["sides"]), what, c) for what in ("gradients", "trajectories") for c in out[what]]
    assert [(pair, what) for pair, what, _ in compared] == PAIRS
    rows = {(pair, what): {(r["layer"], r["quantity"]) for r in c["rows"]} for pair, what, c in compared}
    params = {(i, k) for i in (0, 1) for k in ("w", "b")}
    grads = {(i, q) for i in (0, 1) for q in ("grad_w", "grad_b")}
    assert rows[("manual vs jax", "gradients")] >= grads | {(i, "residual_x") for i in (0, 1)} | {(1, "residual_y")}
    for pair, what in PAIRS[1:4]:
        assert rows[(pair, what)] >= grads | {(1, "loss")}, pair
    for pair, what in PAIRS[4:8]:
        assert rows[(pair, what)] == params | {(-1, "loss")}, pair
    assert rows[PAIRS[8]] == params
    assert all(r["ok"] for _, _, c in compared for r in c["rows"])


@pytest.mark.slow
def test_check_devices_text_names_the_devices_the_shards_and_every_pair(capsys):
    assert main(["check", "--devices", "2", "--steps", STEPS]) == 0
    text = capsys.readouterr().out
    assert "2 cpu device(s); the N=4 columns in shards of 2, 2" in text
    for pair in dict(PAIRS):
        assert f"{pair}: " in text, pair
    assert f"OK: all five sides agree (gradients and every one of {STEPS} steps) over 2 devices" in text


@pytest.mark.slow
def test_check_spec_takes_the_toolbox_path(capsys):
    argv = ["check", "--spec", "3-4:relu:bn-2", "--optimizer", "adam", "--batch-size", "4", "--epochs", "2", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["form"] == "toolbox" and out["trajectories"][0]["steps"] == 2 * 64 // 4


def test_verbose_says_where_the_time_went_on_stderr(capsys):
    assert main(["check", "--steps", STEPS, "-q", "-v"]) == 0
    captured = capsys.readouterr()
    assert "time:" not in captured.out  # stdout keeps the report alone
    for words in ("gradients at the initial parameters", "trajectory: manual training", "trajectory: JAX",
                  "trajectory: the comparisons", "of which JAX compiling"):  # fmt: skip
        assert words in captured.err


def test_the_phases_add_up_to_the_checks_own_time():
    import time

    from fcgrad.engine.run import check

    start = time.perf_counter()
    report = check(and_example().with_options(steps=200))
    elapsed = time.perf_counter() - start
    phases = report.timings.as_dict()
    assert set(phases) >= {"gradients", "manual_run", "jax_run", "comparisons", "jax_compile"}
    assert all(v >= 0 for v in phases.values())
    spent = sum(v for k, v in phases.items() if k != "jax_compile")
    assert spent <= elapsed and phases["jax_compile"] <= elapsed
