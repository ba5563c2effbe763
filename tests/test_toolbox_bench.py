"""The batch-norm + Adam step benchmark: its quick mode end to end (structure, never timings), and
that ``manual`` and ``jit-step`` time the same training step."""

import json
import math

import jax
import numpy as np
import pytest

from fcgrad.benchmarks import toolbox_step as tb
from fcgrad.reference.precision import x64_for

# Parameters, running averages and Adam's moments of manual and jit-step after each float64 step.
# Measured at 784-256:relu:bn-256:relu:bn-10, N=256, three steps: parameters within 1.9e-14 (Adam's
# m̂/(√ν̂ + eps) turns the rounding of gradients near zero into steps of a few 1e-14), running
# averages within 1.7e-15, losses within 2.3e-16. 1e-12 leaves a margin of 50 over the worst.
STEP_ABS_TOL = 1e-12
STEPS = 3
VARIANTS = [("manual", "numpy"), ("floor", "numpy"), ("jit-step", "jax"), ("floor", "jax")]  # (name, backend)
SUMMARY_KEYS = {
    "dtype", "manual_s", "manual_iqr_s", "manual_floor_ratio", "jit_step_s", "jit_step_iqr_s",
    "jit_step_floor_ratio", "jit_step_compile_s", "numpy_floor_s", "jax_floor_s", "manual_over_jit",
}  # fmt: skip
ROW_KEYS = {
    "variant", "backend", "sizes", "batch", "dtype", "device", "precision", "step_s_median", "step_s_iqr",
    "step_s_q1", "step_s_q3", "repeats", "calls_per_block", "steps_per_call", "compile_s", "products", "step_gflop",
    "gflops", "floor_ratio", "speedup_vs_manual",
}  # fmt: skip


def _max_abs(manual_tree: list[dict], jax_tree) -> float:
    jax_tree = jax.tree.map(np.asarray, jax_tree)
    return max(float(np.max(np.abs(m[k] - j[k]))) for m, j in zip(manual_tree, jax_tree) for k in m)


@pytest.mark.parametrize("spec, batch", [(tb.SPEC, tb.BATCH), (tb.QUICK_SPEC, tb.QUICK_BATCH)], ids=["timed", "quick"])
def test_manual_and_jit_step_make_the_same_adam_step_in_float64(spec, batch):
    case = tb.make_case(spec, batch, "float64")
    with x64_for("float64"):
        js = tb.jit_step(case, jax.devices("cpu")[0])
        manual, ref = tb.manual_start(case), js.start
        for step in range(STEPS):
            manual, loss = tb.manual_step(case, manual)
            *ref, value, moments = js.compiled(*ref, *js.data)
            assert abs(loss - float(value)) <= STEP_ABS_TOL, f"step {step}: loss"
            assert _max_abs(manual.params, ref[0]) <= STEP_ABS_TOL, f"step {step}: parameters"
            assert _max_abs(manual.running, ref[2]) <= STEP_ABS_TOL, f"step {step}: running averages"
            for name in ("mu", "nu"):
                assert _max_abs(manual.opt_state[name], moments[name]) <= STEP_ABS_TOL, f"step {step}: Adam {name}"
    # the comparison is not of two idle steps: Adam moves every weight by about lr per step
    moved = max(float(np.max(np.abs(m["w"] - p["w"]))) for m, p in zip(manual.params, case.problem.params))
    assert moved > 0.5 * tb.LR


@pytest.mark.slow
def test_quick_mode_writes_every_variant_ratio_and_summary(tmp_path, capsys):
    path = tmp_path / "toolbox.json"
    assert tb.main(["--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["spec"] == tb.QUICK_SPEC and result["quick"] is True
    assert {"machine", "device", "versions", "method"} <= set(result)
    assert result["optimizer"]["name"] == "adam" and math.isclose(result["optimizer"]["lr"], tb.LR)
    rows = result["rows"]
    expected = {(v, b, d) for v, b in VARIANTS for d in ("float64", "float32")}
    assert {(r["variant"], r["backend"], r["dtype"]) for r in rows} == expected
    for r in rows:
        assert set(r) == ROW_KEYS, r["variant"]
        assert r["step_s_median"] > 0 and r["step_s_iqr"] >= 0 and r["floor_ratio"] > 0
    assert [s["dtype"] for s in result["summary"]] == ["float64", "float32"]
    for s in result["summary"]:
        assert set(s) == SUMMARY_KEYS
        assert math.isclose(s["manual_over_jit"], s["manual_s"] / s["jit_step_s"], rel_tol=1e-12)
    assert "manual/jit" in capsys.readouterr().out


def test_an_unknown_dtype_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tb.main(["--quick", "--dtypes", "float16"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "float16" in err and len(err.splitlines()) == 1
