"""The benchmark package: a quick run end to end (structure, never timings) and the correctness
of what it times (the minimal baselines, the fused loop and the compiled hand formulas compute
manual's step)."""

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import matplotlib.colors
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from fcgrad import manual, reference
from fcgrad.benchmarks import check_cost, cli, flops, suite
from fcgrad.benchmarks import plot as bench_plot
from fcgrad.benchmarks.minimal import minimal_jax_train, minimal_numpy_step
from fcgrad.benchmarks.variants import fused_train, manual_jit
from fcgrad.benchmarks.workloads import make_workload
from fcgrad.engine import blas_threads
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import errors
from fcgrad.manual import network

# tiny sizes keep the run at a few seconds; the blog's size is the one the performance goals name
QUICK_ARGS = ["--quick", "--sizes", "2-4-1", "6-9-3:5", "--drift", "6-9-3:5"]
VARIANTS = {
    "manual",
    "minimal-numpy",
    "jit-step",
    "jit-fused",
    "manual-jit",
    "minimal-jax",
    "floor",
    "floor-needed",
}
ROW_KEYS = {
    "variant",
    "sizes",
    "batch",
    "dtype",
    "device",
    "step_s_median",
    "step_s_iqr",
    "compile_s",
    "gflops",
    "floor_ratio",
    "vs_minimal",
    "speedup_vs_manual",
}
# the check's phases each read perf_counter at their own edges: their sum may pass the check's wall time by a few
# µs per phase; 1 ms is far above that and far below any phase
PHASE_CLOCK_S = 1e-3
NEGATIVE_ZERO = re.compile(r"-0\.0(?![\de])")  # as json.dumps writes −0.0; -0.01 and -0.0e-5 are not it
POSITIVE = ("step_s_median", "gflops", "floor_ratio", "floor_needed_ratio", "vs_minimal", "speedup_vs_manual")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run, in-process: (exit code, stdout, the JSON it wrote)."""
    path = tmp_path_factory.mktemp("bench") / "result.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main([*QUICK_ARGS, "--json", str(path)])
    return code, out.getvalue(), json.loads(path.read_text())


@pytest.mark.slow
def test_quick_run_exits_0_and_prints_table_and_goals(quick_run):
    code, stdout, _ = quick_run
    assert code == 0
    assert "variant" in stdout and "floor" in stdout and "x minimal" in stdout
    assert "the project's performance goals:" in stdout
    assert "blog's size: manual <= 1.3x minimal-numpy" in stdout
    assert "blog's size: jit-fused <= 1.1x minimal-jax" in stdout


@pytest.mark.slow
def test_quick_run_states_the_machines_load_under_its_goals(quick_run):
    _, stdout, result = quick_run
    start = result["machine"]["loadavg_at_start"][0]
    assert f"the machine's 1-minute load average: {start:.2f} at the start" in stdout.split("performance goals:")[1]
    assert not NEGATIVE_ZERO.findall(json.dumps(result))  # no negative zero in the JSON


@pytest.mark.slow
def test_quick_run_json_has_machine_versions_rows_and_goals(quick_run):
    _, _, result = quick_run
    assert {"machine", "device", "versions", "date", "rows", "goals"} <= set(result)
    judged = {(g["goal"], g["case"]) for g in result["goals"]}
    assert ("blog's size: manual <= 1.3x minimal-numpy", "float64") in judged
    assert result["rows"], "no rows"
    for row in result["rows"]:
        assert ROW_KEYS <= set(row), f"missing {ROW_KEYS - set(row)} in {row['variant']}"


@pytest.mark.slow
def test_quick_run_times_every_variant_for_every_size_and_dtype(quick_run):
    _, _, result = quick_run
    seen: dict = {}
    for r in result["rows"]:
        seen.setdefault((r["sizes"], r["batch"], r["dtype"]), set()).add(r["variant"])
    assert set(seen) == {(s, n, d) for s, n in (("2-4-1", 4), ("6-9-3", 5)) for d in ("float64", "float32")}
    for case, names in seen.items():
        assert names == VARIANTS, f"{case}: {names ^ VARIANTS}"


@pytest.mark.slow
def test_quick_run_values_are_finite_and_positive(quick_run):
    _, _, result = quick_run
    for r in result["rows"]:
        for key in POSITIVE:
            assert math.isfinite(r[key]) and r[key] > 0, f"{r['variant']} {r['sizes']} {key} = {r[key]}"
        assert math.isfinite(r["step_s_iqr"]) and r["step_s_iqr"] >= 0
        if r["backend"] == "jax":
            assert math.isfinite(r["compile_s"]) and r["compile_s"] > 0
        else:
            assert r["compile_s"] is None


@pytest.mark.slow
def test_quick_run_ratios_are_one_for_the_references(quick_run):
    """manual's speedup over itself, each floor's ratio to itself and each baseline's to itself are 1 by definition."""
    _, _, result = quick_run
    for r in result["rows"]:
        if r["variant"] == "manual":
            assert r["speedup_vs_manual"] == pytest.approx(1.0)
        if r["variant"] == "floor":
            assert r["floor_ratio"] == pytest.approx(1.0)
        if r["variant"].startswith("minimal-"):
            assert r["vs_minimal"] == pytest.approx(1.0)


@pytest.mark.slow
def test_quick_run_drift_float64_jax_agrees_with_manual(quick_run):
    _, _, result = quick_run
    (drift,) = result["drift"]
    by_case = {(e["impl"], e["dtype"], e["precision"]): e for e in drift["entries"]}
    assert set(by_case) == {("jax", "float32", "default"), ("jax", "float64", None), ("manual", "float32", None)}
    assert by_case[("jax", "float64", None)]["worst_rel"] <= tol.GRAD_REL_TOL_F64
    for e in drift["entries"]:
        assert all(math.isfinite(r["rel"]) and math.isfinite(r["max_abs"]) for r in e["layers"])


@pytest.mark.slow
def test_plot_writes_a_png(quick_run, tmp_path):
    import matplotlib  # noqa: F401  (in the test extra: this test must run, not skip)

    from fcgrad.benchmarks.plot import plot

    path = tmp_path / "bench.png"
    plot(quick_run[2], str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
JAX_VARIANTS = {"jit-step", "jit-fused", "minimal-jax", "manual-jit", "floor (jax)"}


def _panel_axes(fig, n_panels: int):
    """(time axes, floor_ratio axes) of the figure's device/dtype columns, left to right."""
    axes = fig.axes[: 2 * n_panels]
    return axes[0::2], axes[1::2]


def _variant_lines(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines() if line.get_label() in bench_plot.VARIANT_COLORS}


@pytest.mark.parametrize(
    "name, panels",
    [
        ("cpu", [("cpu", "float64"), ("cpu", "float32")]),
        ("gpu", [("cpu", "float64"), ("cpu", "float32"), ("gpu", "float64"), ("gpu", "float32")]),
    ],
)
def test_the_figure_has_a_column_per_device_and_dtype_with_time_and_floor_ratio(name, panels):
    result = json.loads((RESULTS / f"{name}.json").read_text())
    assert bench_plot.panels(result["rows"]) == panels
    fig = bench_plot.figure(result)
    assert len(fig.axes) == 2 * len(panels) + 1  # the last: the blog's loss curves
    time_axes, ratio_axes = _panel_axes(fig, len(panels))
    for (device, dtype), ax_t, ax_r in zip(panels, time_axes, ratio_axes):
        assert dtype in ax_t.get_title() and ax_t.get_title().startswith("CPU" if device == "cpu" else "JAX on")
        drawn = set(_variant_lines(ax_t))
        assert {"jit-step", "jit-fused"} <= drawn  # the question the figure answers, in every panel
        assert ("manual" in drawn) == (device == "cpu")  # NumPy runs on the host only
        if device == "gpu":
            assert drawn <= JAX_VARIANTS
        ratios = set(_variant_lines(ax_r))
        assert ratios == {v for v in drawn if not v.startswith("floor")}  # a floor's ratio to itself is 1


def test_the_figure_gives_each_variant_one_colour_in_every_panel():
    result = json.loads((RESULTS / "gpu.json").read_text())
    fig = bench_plot.figure(result)
    colours: dict = {}
    for ax in fig.axes[: 2 * len(bench_plot.panels(result["rows"]))]:
        for label, line in _variant_lines(ax).items():
            colours.setdefault(label, set()).add(matplotlib.colors.to_hex(line.get_color()))
    assert colours == {v: {matplotlib.colors.to_hex(c)} for v, c in bench_plot.VARIANT_COLORS.items() if v in colours}
    assert len({matplotlib.colors.to_hex(c) for c in bench_plot.VARIANT_COLORS.values()}) == len(
        bench_plot.VARIANT_COLORS
    )  # no two variants share a colour
    assert {"manual", "jit-step", "jit-fused", "floor (numpy)", "floor (jax)"} <= set(colours)


@pytest.mark.parametrize(
    "option, name, words",
    [
        ("--json", "missing/out.json", "--json: expected an existing directory"),
        ("--json", "out.txt", "--json: expected a file name ending in .json"),
        ("--plot", "out.jpg", "--plot: expected a file name ending in .png"),
        ("--plot", "missing/out.png", "--plot: expected an existing directory"),
    ],
    ids=["json-no-folder", "json-suffix", "plot-suffix", "plot-no-folder"],
)
def test_a_bad_output_path_is_refused_in_one_line_before_any_timing(option, name, words, tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("the benchmark started timing")

    monkeypatch.setattr(suite, "run", never)
    assert cli.main(["--quick", "--sizes", "2-4-1", option, str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fcgrad bench: error: {words}"), err
    assert not list(tmp_path.iterdir())  # nothing written


def test_fcgrad_bench_refuses_a_bad_json_path_as_fcgrad_check_does(tmp_path, monkeypatch, capsys):
    from fcgrad.cli.main import main

    monkeypatch.setattr(suite, "run", lambda *a, **k: pytest.fail("the benchmark started timing"))
    assert main(["bench", "--quick", "--json", str(tmp_path / "missing" / "out.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcgrad bench: error: --json: expected an existing directory") and err.count("\n") == 1


@pytest.mark.slow
def test_check_cost_quick_run_gives_one_ratio_per_rule(tmp_path, capsys):
    path = tmp_path / "check_cost.json"
    assert check_cost.main(["--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert {"machine", "device", "versions", "method", "goal"} <= set(result) and result["quick"] is True
    assert [(c["activation"], c["rule"]) for c in result["cases"]] == [("relu", "local"), ("tanh", "global")]
    for case in result["cases"]:
        assert (case["sizes"], case["batch"], case["steps"]) == ("16-32-32-4", 32, 50)
        assert {"manual_run", "jax_run", "comparisons", "finite_differences"} <= set(case["phases_s"])
        assert isinstance(case["goal_met"], bool) and len(case["rounds"]) == 1
        r = case["rounds"][0]
        assert r["trajectory_s"] == pytest.approx(sum(r["phases_s"][k] for k in check_cost.TRAJECTORY))
        sides = (r["manual_step_s"] + r["jit_step_s"]) * case["steps"]
        assert r["ratio"] == pytest.approx(r["trajectory_s"] / sides)
        assert math.isfinite(r["ratio_without_compile"]) and r["finite_differences_s"] >= 0
        # the overlap's floor: manual on the host's share of the cores, step by step, and the comparisons
        host_path = r["manual_share_step_s"] * case["steps"] + r["phases_s"]["comparisons"]
        assert r["host_path_s"] == pytest.approx(host_path) and r["floor_ratio"] == pytest.approx(host_path / sides)
        # the whole check beside its trajectory, every phase in it
        assert r["check_s"] >= sum(r["phases_s"].values()) - PHASE_CLOCK_S
        conditions = r["conditions"]  # stated beside each round's ratio
        assert len(conditions["loadavg_at_start"]) == 3 and len(conditions["loadavg_at_end"]) == 3
        assert conditions["others_share"] is None or 0 <= conditions["others_share"] <= 1
        assert case["idle"] in (True, False, None)
        assert case["manual_beside_jax"] is True  # threadpoolctl is a dependency: the check overlapped its sides
    assert result["goal"] in (check_cost.GOAL_FEW_CORES, check_cost.GOAL_MANY_CORES)
    out = capsys.readouterr().out
    assert "local rule" in out and "global rule" in out and "ratio" in out and "load" in out
    # a smoke run judges no goal, loaded or not: its steps are too small beside JAX's fixed costs
    assert "not judged: the quick problem's steps are too small" in out and "goal: the check" not in out


def test_check_cost_says_a_round_with_others_at_work_is_too_loaded_to_judge():
    rounds = [{"ratio": 1.2, "conditions": {"loadavg_at_start": [0.1] * 3, "loadavg_at_end": [2.0] * 3,
                                            "others_share": share}} for share in (0.0, 0.5)]  # fmt: skip
    case = {"rule": "local", "activation": "relu", "ratio": 1.2, "goal_met": True, "rounds": rounds,
            "idle": check_cost._idle(rounds), "trajectory_s": 2.0, "trajectory_compile_s": 0.1, "sides_s": 1.7,
            "manual_step_s": 4e-3, "jit_step_s": 4e-3, "ratio_without_compile": 1.1, "finite_differences_s": 1.0,
            "phases_s": {"manual_run": 1.0, "jax_run": 0.8, "comparisons": 0.2}}  # fmt: skip
    assert case["idle"] is False
    text = check_cost.table([case])
    assert "too loaded to judge the goal" in text and "others used 50% of the cores" in text
    case["idle"] = check_cost._idle(rounds[:1])
    assert case["idle"] is True and "too loaded" not in check_cost.table([case])
    quick = check_cost.table([case], quick=True)  # the smoke run's steps are too small for any goal
    assert "not judged" in quick and "goal: the check" not in quick and "missed" not in quick


def test_check_cost_says_a_run_without_threadpoolctl_did_not_overlap_and_judges_no_goal():
    rounds = [{"ratio": 1.2, "floor_ratio": 0.9, "conditions": {"loadavg_at_start": [0.1] * 3,
                                                                "loadavg_at_end": [0.2] * 3, "others_share": 0.0}}]
    case = {"rule": "local", "activation": "relu", "ratio": 1.2, "goal_met": True, "rounds": rounds, "idle": True,
            "trajectory_s": 2.0, "trajectory_compile_s": 0.1, "sides_s": 1.7, "manual_step_s": 4e-3,
            "jit_step_s": 4e-3, "ratio_without_compile": 1.1, "finite_differences_s": 1.0,
            "phases_s": {"manual_run": 1.0, "jax_run": 0.8, "comparisons": 0.2}}  # fmt: skip
    assert "the least ratio the overlap can have" in check_cost.table([case])  # a run recorded before: overlapped
    case["manual_beside_jax"] = True
    overlapped = check_cost.table([case])
    assert "as it runs beside JAX" in overlapped and "install threadpoolctl" not in overlapped
    case["manual_beside_jax"] = False
    apart = check_cost.table([case])
    assert "local rule: threadpoolctl is not installed" in apart and "ran after JAX's, not beside them" in apart
    assert "as it runs beside JAX" not in apart  # the share step is not what that line would say
    goal_line = [line for line in apart.splitlines() if line.startswith("goal:")]
    assert len(goal_line) == 1 and goal_line[0].endswith("install threadpoolctl to judge the goal")


def test_check_cost_records_whether_manual_ran_beside_jax(monkeypatch):
    conditions = {"loadavg_at_start": [0.1] * 3, "loadavg_at_end": [0.2] * 3, "others_share": 0.0}
    monkeypatch.setattr(check_cost, "one_round", lambda *a: {"rule": "local", "phases_s": {"manual_run": 1.0},
                                                            "conditions": conditions,
                                                            **dict.fromkeys(check_cost.SUMMARY_KEYS, 1.0)})  # fmt: skip
    for can in (True, False):
        monkeypatch.setattr(blas_threads, "can_limit", lambda can=can: can)
        case = check_cost.run_case("relu", "local", quick=True, rounds=1, progress=lambda line: None)
        assert case["manual_beside_jax"] is can



def test_check_cost_times_manual_on_the_host_share_of_the_blas_threads(monkeypatch):
    seen = []
    monkeypatch.setattr(blas_threads, "host_share", lambda cores=None: 1)
    monkeypatch.setattr(check_cost.variants.network, "train_step", lambda *a: seen.append(_blas_threads()) or 0.5)
    p = check_cost.make_problem("relu", quick=True)
    with threadpool_limits(limits=2, user_api="blas"):
        check_cost.host_share_variant(check_cost._workload(p)).run(2)
        after = _blas_threads()
    assert seen == [1, 1] and after == 2  # held to the share during its steps only


def _blas_threads() -> int:
    return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


def test_check_cost_refuses_a_bad_json_path_before_any_check(tmp_path, capsys):
    assert check_cost.main(["--quick", "--json", str(tmp_path / "missing" / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--json: expected an existing directory" in err


def test_fcgrad_bench_is_a_subcommand():
    from fcgrad.cli.main import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--sizes", "2-4-1"])
    assert args.run is cli.run_bench and args.quick and args.sizes == ["2-4-1"]


@pytest.mark.parametrize(
    "spec", ["2-x-1", "5", "3-0-2", "2-4-1:0"], ids=["not-a-number", "one-width", "zero", "zero-batch"]
)
def test_bad_sizes_exit_2_naming_the_option(spec, capsys):
    assert cli.main(["--quick", "--sizes", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcgrad bench: error: --sizes: expected") and spec in err
    assert "Traceback" not in err


def test_step_flops_count_three_products_per_layer():
    # 2-4-1, N=4: products of 2·2·4·4 = 64 and 2·4·1·4 = 32 FLOPs, three of each
    assert flops.step_flops((2, 4, 1), 4, flops.ALL) == 3 * (64 + 32)
    assert flops.step_flops((2, 4, 1), 4, flops.NEEDED) == 3 * (64 + 32) - 64  # layer 0's residual_x dropped
    assert flops.gemm_count((784, 256, 256, 10), flops.ALL) == 9
    assert flops.gemm_count((784, 256, 256, 10), flops.NEEDED) == 8


CASES = [((2, 4, 1), 4), ((5, 7, 6, 3), 6)]
CASE_IDS = ["2-4-1", "5-7-6-3"]


def _manual_step(wl):
    g = network.loss_and_gradients(wl.params, wl.x, wl.t, wl.activations, wl.loss)
    trainable = [{"w": True, "b": True}] * len(wl.params)
    return float(g.loss), network.sgd_update(wl.params, g.layers, wl.lr, trainable)


def _assert_same_step(loss, params, want_loss, want_params, rel_tol):
    _, loss_rel = errors(loss, want_loss)
    assert loss_rel <= rel_tol, f"loss: rel {loss_rel:.1e}"
    for i, (got, want) in enumerate(zip(params, want_params)):
        for key in ("w", "b"):
            _, rel = errors(np.asarray(got[key]), want[key])
            assert rel <= rel_tol, f"layer {i} {key}: rel {rel:.1e}"


@pytest.mark.parametrize("sizes,batch", CASES, ids=CASE_IDS)
def test_manual_jit_step_matches_manual_step(sizes, batch):
    """jax.jit of manual's own formulas gives manual's loss and updated parameters (float64)."""
    wl = make_workload(sizes, batch, "float64")
    want_loss, want_params = _manual_step(wl)
    with reference.x64_for("float64"):
        params, x, t = reference.as_jax(wl.params, wl.x, wl.t, "float64")
        loss, new = manual_jit(wl)(params, x, t, wl.lr)
        assert new[0]["w"].dtype == np.float64
        # GRAD_REL_TOL_F64: the same float64 formulas, summed in another order by XLA (measured ≤ 1.2e-15, bias sums)
        _assert_same_step(float(loss), jax.device_get(new), want_loss, want_params, tol.GRAD_REL_TOL_F64)


@pytest.mark.parametrize("sizes,batch", CASES, ids=CASE_IDS)
def test_manual_jit_step_matches_jax_autodiff_step(sizes, batch):
    """The compiled hand formulas agree with reference.jit_step (jax.grad), an independent derivation."""
    wl = make_workload(sizes, batch, "float64")
    with reference.x64_for("float64"):
        params, x, t = reference.as_jax(wl.params, wl.x, wl.t, "float64")
        loss, new = manual_jit(wl)(params, x, t, wl.lr)
        trainable = reference.static_trainable(None, len(params))
        ref_loss, ref_new = reference.jit_step(
            params, x, t, wl.lr, activations=wl.activations, loss_name=wl.loss, trainable=trainable
        )
        ref_params = jax.device_get(ref_new)
        _assert_same_step(float(loss), jax.device_get(new), float(ref_loss), ref_params, tol.GRAD_REL_TOL_F64)


# The baselines use the naive sigmoid 1/(1 + e^−z), manual the tanh form: the same values to about 1 eps
# (tests/test_fast_path.py). After one step of these nets, measured rel ≤ 3e-16 (float64); GRAD_REL_TOL_F64
# (1e-12) leaves room, and a wrong term (a dropped y(1 − y), a missing 1/N) gives rel > 1e-2.
BASELINE_REL_TOL = tol.GRAD_REL_TOL_F64


@pytest.mark.parametrize("sizes,batch", CASES, ids=CASE_IDS)
def test_minimal_numpy_step_matches_manual_step(sizes, batch):
    """minimal-numpy is a baseline for manual's step: the same loss and update, to rounding."""
    wl = make_workload(sizes, batch, "float64")
    want_loss, want_params = _manual_step(wl)
    ws, bs = [p["w"].copy() for p in wl.params], [p["b"].copy() for p in wl.params]
    loss = minimal_numpy_step(ws, bs, wl.x, wl.t, wl.lr)
    _assert_same_step(loss, [{"w": w, "b": b} for w, b in zip(ws, bs)], want_loss, want_params, BASELINE_REL_TOL)


@pytest.mark.parametrize("sizes,batch", CASES, ids=CASE_IDS)
@pytest.mark.slow
def test_compiled_loops_make_manuals_steps(sizes, batch):
    """minimal-jax and jit-fused (unrolled or not) end where manual.train ends after 3 steps (float64)."""
    wl = make_workload(sizes, batch, "float64")
    want = manual.train(wl.params, wl.x, wl.t, activations=wl.activations, lr=wl.lr, steps=3, record_params=False)
    with reference.x64_for("float64"):
        params, x, t = reference.as_jax(wl.params, wl.x, wl.t, "float64")
        pairs = minimal_jax_train([(p["w"], p["b"]) for p in params], x, t, wl.lr, steps=3)
        got = {"minimal-jax": [{"w": w, "b": b} for w, b in jax.device_get(pairs)]}
        static = dict(
            activations=wl.activations, loss_name=wl.loss, trainable=reference.static_trainable(None, len(params))
        )
        for unroll in (1, 2):
            final = fused_train(params, x, t, wl.lr, steps=3, unroll=unroll, **static)
            got[f"jit-fused unroll {unroll}"] = jax.device_get(final)
    for name, final in got.items():
        for i, (g, w) in enumerate(zip(final, want.final)):
            for key in ("w", "b"):
                _, rel = errors(np.asarray(g[key]), w[key])
                assert rel <= BASELINE_REL_TOL, f"{name} layer {i} {key}: rel {rel:.1e}"


@pytest.mark.slow
def test_merge_replaces_a_workloads_rows_and_keeps_the_others(quick_run):
    from fcgrad.benchmarks.merge import merge

    base = quick_run[2]
    slower = [dict(r, step_s_median=2 * r["step_s_median"]) for r in base["rows"] if r["sizes"] == "6-9-3"]
    merged = merge(base, {"date": "later", "rows": slower})
    assert len(merged["rows"]) == len(base["rows"])
    for old, new in zip(base["rows"], merged["rows"]):
        factor = 2 if old["sizes"] == "6-9-3" else 1
        assert new["step_s_median"] == pytest.approx(factor * old["step_s_median"])
        assert new["speedup_vs_manual"] == pytest.approx(old["speedup_vs_manual"])  # ratios within one run
    assert [m["date"] for m in merged["merged_from"]] == [base["date"], "later"]


GPU_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.sh"
SCRIPT_TIMEOUT_S = 60  # the usage line comes back at once; a minute means the script hangs
SMOKE_TIMEOUT_S = 240  # the smoke run takes about 20 s here; the margin is for a busy machine


def test_gpu_script_is_valid_bash_and_wants_its_output_folder():
    assert subprocess.run(["bash", "-n", str(GPU_SCRIPT)], timeout=SCRIPT_TIMEOUT_S).returncode == 0
    run = subprocess.run(["bash", str(GPU_SCRIPT)], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
    assert run.returncode == 2 and "usage: PYTHONPATH=. bash benchmarks/gpu.sh OUTDIR" in run.stderr


@pytest.mark.slow
@pytest.mark.timeout(SMOKE_TIMEOUT_S + 60)  # the script's own limit first, then the suite's
def test_gpu_script_smoke_run_on_cpu_writes_every_file(tmp_path):
    """FCGRAD_GPU_SMOKE=1: the script's every step with tiny sizes on the CPU, into the folder it is given."""
    out = tmp_path / "gpu run"  # a space in the name must survive the script's quoting
    env = {**os.environ, "FCGRAD_GPU_SMOKE": "1", "PYTHONPATH": str(GPU_SCRIPT.parent.parent), "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", str(GPU_SCRIPT), str(out)], capture_output=True, text=True, env=env, cwd=GPU_SCRIPT.parent.parent,
        timeout=SMOKE_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert {"nvidia-smi.txt", "gpu.log", "gpu.json", "gpu.txt", "gpu.png"} <= {p.name for p in out.iterdir()}
    result = json.loads((out / "gpu.json").read_text())
    assert "partial" not in result and result["drift"]
    names = {(r["variant"], r["precision"]) for r in result["rows"]}
    assert {("minimal-jax", "highest"), ("jit-fused", "default"), ("minimal-numpy", None)} <= names
    assert "the project's performance goals:" in (out / "gpu.txt").read_text()
    assert "[gpu.sh" in run.stderr and "done; files in" in run.stderr
