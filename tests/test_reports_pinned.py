"""Every number and name a report prints about a finding, a step or a layer, held to the thing it points at.

A report can compute everything right and still print it one off: "inherited from finding 2" for the
findings of finding 1, "MISMATCH from step 13" in the notebook where the text says 12, "layer 1's output"
for layer 0's. Each test here reads what a report prints (text, JSON, HTML) and holds it to the structure it
was drawn from, or to a mistake planted where the test knows the answer.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from fcgrad import manual, reference
from fcgrad.audits.code import audit_code
from fcgrad.audits.code.report import as_json as audit_json
from fcgrad.audits.code.report import text as audit_text
from fcgrad.diagnosis.catalogue import diagnose
from fcgrad.diagnosis.network import network_context
from fcgrad.diagnosis.signature import SIGNATURE_REL_TOL, Context
from fcgrad.engine import tolerances as tol
from fcgrad.engine.description import describe_problem
from fcgrad.engine.notebook import check_html
from fcgrad.engine.problems import example, random_problem
from fcgrad.engine.report_forms import from_network
from fcgrad.engine.run import check
from fcgrad.reports.check import text as check_text
from fcgrad.testing import assert_backward_matches

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

# ---- audit --code: "finding k", and "inherited from finding k" -------------------------------------------------


@pytest.fixture(scope="module")
def two_mistakes():
    """A file with two independent mistakes, the second with what follows from it inherited."""
    return audit_code(str(FIXTURES / "qa_two_mistakes.py"), steps=2)


def test_each_finding_is_numbered_by_its_place_and_names_its_layer_and_quantity(two_mistakes):
    report = two_mistakes
    printed = re.findall(r"^finding (\d+): layer (\d+) (\w+) — ", audit_text(report), flags=re.M)
    assert [(int(k), int(layer), q) for k, layer, q in printed] == [
        (k, f.layer, f.quantity) for k, f in enumerate(report.findings, 1)
    ]
    assert [(f.layer, f.quantity) for f in report.findings] == [(1, "grad_b"), (0, "residual_z")]
    data = audit_json(report)
    assert [(f["layer"], f["quantity"]) for f in data["findings"]] == [(1, "grad_b"), (0, "residual_z")]


@pytest.mark.parametrize("quiet", [False, True], ids=["text", "quiet"])
def test_inherited_from_finding_k_points_at_the_kth_finding(two_mistakes, quiet):
    report = two_mistakes
    lines = re.findall(r"^inherited from finding (\d+)[^:]*: (.*)$", audit_text(report, quiet=quiet), flags=re.M)
    assert lines, "the fixture's second mistake passes something on"
    origin_of = {(h.layer, h.quantity): h.origin for h in report.inherited}
    for k, where in lines:
        finding = report.findings[int(k) - 1]  # "finding k" counts from 1, as the findings are printed
        for item in where.split(", "):
            layer, quantity = item.removeprefix("layer ").split(" ")
            assert origin_of[(int(layer), quantity)] == (finding.layer, finding.quantity), (k, item)
    # the one this fixture has: layer 0's residual_z, the second finding, passes on to layer 0's gradients
    assert any(k == "2" and "layer 0 grad_w" in where for k, where in lines), lines
    assert {tuple(h["origin"]) for h in audit_json(report)["inherited"]} == {(0, "residual_z")}


def test_every_inherited_quantity_is_printed_once_under_its_origin(two_mistakes):
    report = two_mistakes
    printed = re.findall(r"^inherited from [^:]*: (.*)$", audit_text(report), flags=re.M)
    items = [item for where in printed for item in where.split(", ")]
    assert sorted(items) == sorted(f"layer {h.layer} {h.quantity}" for h in report.inherited)


# ---- fcgrad check: the first failing step and the layer, in text, JSON and the notebook's HTML -----------------

PLANTED_STEP = 12  # the step whose new parameters are moved: steps count from 0, as the reports print them
PLANTED_LAYER = 1  # the layer whose w is moved; layer 0 would hide a shift towards 0


@pytest.fixture(scope="module")
def planted_report():
    """The blog's AND run with w1[0, 0] moved by 1e-9 after step PLANTED_STEP: one row fails, from that step."""
    real = manual.network.run_steps
    count = {"n": 0}

    def run_steps(step, params, steps, **kw):
        def planted(p):
            value, new = step(p)
            if count["n"] == PLANTED_STEP:
                new = [dict(layer) for layer in new]
                new[PLANTED_LAYER]["w"] = new[PLANTED_LAYER]["w"].copy()
                new[PLANTED_LAYER]["w"][0, 0] += 1e-9  # 1000× the float64 trajectory tolerance
            count["n"] += 1
            return value, new

        return real(planted, params, steps, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(manual.network, "run_steps", run_steps)
        return check(example("and").with_options(steps=20), finite_differences=False)


def test_the_first_failing_step_and_layer_are_one_in_text_json_and_html(planted_report):
    report = planted_report
    rows = {(r.layer, r.quantity): r.first_bad_step for r in report.trajectory if not r.ok}
    # the planted row fails from the planted step; the rows trained from it follow, later (the global rule)
    assert rows[(PLANTED_LAYER, "w")] == PLANTED_STEP and min(rows.values()) == PLANTED_STEP and len(rows) > 1
    shown = check_text(report)
    in_text = re.findall(r"^  (\d+)\s+(\w+)\s.*MISMATCH from step (\d+)$", shown, flags=re.M)
    assert {(int(layer), q): int(k) for layer, q, k in in_text} == rows
    failing = ", ".join(f"layer {layer} {q}" for layer, q in rows)
    assert shown.splitlines()[-1] == (
        f"FAILED: {len(rows)} mismatch(es): {failing}; first step beyond tolerance: {PLANTED_STEP}"
    )
    data = from_network(describe_problem(report.problem), report, seconds=0.0).as_json()
    [traj] = data["trajectories"]
    assert {(r["layer"], r["quantity"]): r["first_bad_step"] for r in traj["rows"] if not r["ok"]} == rows
    assert traj["first_bad_step"] == PLANTED_STEP
    html = check_html(report)
    in_html = re.findall(
        r'<tr class="bad"><td class="name">(\d+)</td><td class="name">(\w+)</td>(?:<td>[^<]*</td>){3}'
        r"<td>MISMATCH from step (\d+)</td></tr>",
        html,
    )
    assert {(int(layer), q): int(k) for layer, q, k in in_html} == rows


# ---- the catalogue: "grad_w computed from layer k's output" names the layer it was -----------------------------


def _grad_w_from(p, layer: int, source: int):
    """Layer ``layer``'s grad_w computed from layer ``source``'s output where its input x belongs."""
    _, caches = manual.network.forward(p.params, p.x, p.activations)
    ref = reference.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    wrong = caches[source].y @ np.asarray(ref["layers"][layer]["residual_z"]).T
    return wrong, ref


def test_a_grad_w_from_another_layers_output_names_that_layer():
    # widths 3-4-4-2: layer 0's output (4, N) has the shape of layer 2's input, which is layer 1's output
    p = random_problem([3, 4, 4, 2], activations="sigmoid", batch=6, seed=1)
    wrong, ref = _grad_w_from(p, layer=2, source=0)
    found = diagnose(wrong, ref["layers"][2]["grad_w"], network_context(p, ref, 2, "grad_w"))
    assert [d.name for d in found][:1] == ["grad_w_from_output"]
    assert "grad_w computed from layer 0's output where the layer's input x belongs" in found[0].message


def test_a_grad_w_from_the_networks_input_names_it():
    p = random_problem([3, 3, 3, 2], activations="sigmoid", batch=6, seed=2)
    _, caches = manual.network.forward(p.params, p.x, p.activations)
    ref = reference.gradients(p.params, p.x, p.t, activations=p.activations, loss=p.loss, dtype=p.dtype)
    wrong = caches[0].x @ np.asarray(ref["layers"][2]["residual_z"]).T  # X (3, N) where layer 1's output belongs
    found = diagnose(wrong, ref["layers"][2]["grad_w"], network_context(p, ref, 2, "grad_w"))
    assert "grad_w computed from the network's input X" in found[0].message


STEP_GRAD_W = "        grad_w = xs[i] @ residual_z.T  # (in, out)"


def test_the_audit_names_the_layer_whose_output_a_grad_w_read(tmp_path):
    source = (FIXTURES / "step_net.py").read_text()
    assert STEP_GRAD_W in source
    widths = 'ACTIVATIONS = ("sigmoid",) * 3\nSIZES = (3, 4, 4, 2)'
    source = source.replace('ACTIVATIONS = ("sigmoid", "sigmoid")', widths)
    source = source.replace(STEP_GRAD_W, "        grad_w = (xs[1] if i == 2 else xs[i]) @ residual_z.T  # layer 0's y")
    path = tmp_path / "net_grad_w_from_layer_0.py"
    path.write_text(source)
    report = audit_code(str(path), steps=1)
    assert [(f.layer, f.quantity) for f in report.findings] == [(2, "grad_w")]
    assert "grad_w computed from layer 0's output" in report.findings[0].diagnoses[0].message
    assert "layer 0's output" in audit_text(report) and "layer 1's output" not in audit_text(report)


# ---- the catalogue keeps a match only within its signature tolerance ---------------------------------------------


def _missing_one_over_n(rng, times: float):
    """residual_y without its 1/N (N = 8): N·reference, moved entry by entry by ``times`` × the tolerance. The
    scale family's entry judges its own fit."""
    reference_y = rng.normal(size=(3, 8))
    noise = rng.choice([-1.0, 1.0], size=reference_y.shape)  # ± on every entry: no constant factor absorbs it
    manual_y = 8 * reference_y * (1 + times * SIGNATURE_REL_TOL * noise)
    return manual_y, reference_y, Context(quantity="residual_y", n=8, lr=0.1), "missing_1_over_n"


def _through_updated_w(rng, times: float):
    """residual_x sent through the updated w, moved likewise: an entry that leaves the tolerance to ``diagnose``."""
    w, residual_z, x = rng.normal(size=(4, 3)), rng.normal(size=(3, 8)), rng.normal(size=(4, 8))
    grad_w = x @ residual_z.T
    noise = rng.choice([-1.0, 1.0], size=(4, 8))
    manual_x = (w - 0.5 * grad_w) @ residual_z * (1 + times * SIGNATURE_REL_TOL * noise)
    ctx = Context(quantity="residual_x", n=8, lr=0.5, w=w, grad_w=grad_w, residual_z=residual_z)
    return manual_x, w @ residual_z, ctx, "residual_through_updated_w"


@pytest.mark.parametrize("case", [_missing_one_over_n, _through_updated_w], ids=["scale", "updated-w"])
@pytest.mark.parametrize("times", [0.1, 30.0, 300.0, 3000.0])
def test_a_match_is_kept_within_its_signature_tolerance_and_dropped_beyond_it(case, times):
    manual_value, reference_value, ctx, name = case(np.random.default_rng(0), times)
    found = [d.name for d in diagnose(manual_value, reference_value, ctx)]
    if times < 1:
        assert name in found
    else:
        assert name not in found, found


# ---- --devices, free form: each dtype judged at its own tolerance ------------------------------------------------


# the 3-4-2 net's N(0, 1/in) parameters after 3 steps stay below 10 (about 2 here): a bound scaled by them stays within
# 10× the tolerance, while the other dtype's tolerance is 1e8 times away (1e-12 against 1e-4)
LARGEST_PARAM = 10.0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_sharded_form_judges_each_dtype_at_its_own_tolerance(dtype, capsys):
    import json

    from fcgrad.cli.main import main

    argv = ["check", "--devices", "2", "--sizes", "3,4,2", "--batch", "6", "--steps", "3", "--dtype", dtype, "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["form"] == {"float64": "sharded free", "float32": "sharded local"}[dtype]  # free: float64 only
    traj, grad = tol.traj_abs_tol(dtype), tol.grad_rel_tol(dtype)
    assert data["meta"]["tolerances"]["trajectory_abs"] == pytest.approx(traj, rel=0)
    assert data["meta"]["tolerances"]["gradient_rel"] == pytest.approx(grad, rel=0)
    rows = [r for c in data["trajectories"] for r in c["rows"]]
    # a row's bound: the tolerance × max(1, max|param|), at most LARGEST_PARAM × the tolerance here
    assert rows and all(traj <= r["tol"] <= LARGEST_PARAM * traj for r in rows), sorted({r["tol"] for r in rows})
    grads = [r for c in data["gradients"] for r in c["rows"]]
    assert all(r["tol"] == pytest.approx(grad, rel=0) for r in grads)
    assert grads or data["form"] == "sharded local"  # the local form compares steps only


# ---- the layer helper: a (1, out) bias gradient, accepted by row only ---------------------------------------------


def _forward_rows(x, w, b):  # x (N, in), w (out, in), b (out,)
    return x @ w.T + b


def _backward_rows(residual_y, x, w, b):
    return {"residual_x": residual_y @ w, "grad_w": residual_y.T @ x, "grad_b": residual_y.sum(axis=0, keepdims=True)}


def _forward_columns(x, w, b):  # x (in, N), w (in, out), b (out,): a flat bias, added to every column
    return w.T @ x + b[:, None]


def _backward_columns(residual_y, x, w, b):
    return {"residual_x": w @ residual_y, "grad_w": x @ residual_y.T, "grad_b": residual_y.sum(axis=1)[None, :]}


def test_a_one_row_bias_gradient_is_accepted_for_samples_by_row():
    checks = assert_backward_matches(
        _forward_rows, _backward_rows, {"x": (5, 3), "w": (2, 3), "b": (2,)}, weights="out,in", samples="rows"
    )
    assert [c.name for c in checks] == ["residual_x", "grad_w", "grad_b"] and all(c.ok for c in checks)


def test_a_one_row_bias_gradient_is_refused_for_samples_by_column():
    refused = "grad_b (∂L/∂b): expected shape (2,) (the shape of b), got (1, 2)"
    with pytest.raises(AssertionError, match=re.escape(refused)):
        assert_backward_matches(_forward_columns, _backward_columns, {"x": (3, 5), "w": (3, 2), "b": (2,)})


# ---- --devices: the step a data-parallel finding names, in the text and the JSON ---------------------------------


def test_the_step_replicas_part_is_one_number_in_the_text_and_the_json(monkeypatch):
    from conftest import HOST_DEVICES

    from fcgrad.engine.report_forms import from_sharded
    from fcgrad.engine.sharded import LOCAL_UPDATES, sharded_check
    from fcgrad.reports.sharded import text as sharded_text

    def no_all_reduce(local):  # each replica updates from its own shard's gradients
        return [[{"w": g.grad_w, "b": g.grad_b} for g in grads] for grads in local]

    monkeypatch.setattr(manual.sharded, "reduce_gradients", no_all_reduce)
    p = random_problem((3, 4, 4, 2), batch=10, seed=3, steps=6)
    report = sharded_check(p, min(4, HOST_DEVICES), platform="cpu")
    [finding] = report.findings
    assert (finding.mistake, finding.step) == (LOCAL_UPDATES, 1)  # the replicas part after the first update
    assert f"FOUND {LOCAL_UPDATES} in manual-sharded (first after step 1)" in sharded_text(report)
    data = from_sharded(describe_problem(p), report, 0.0, free=True).as_json()
    assert [(f["name"], f["side"], f["step"]) for f in data["findings"]] == [(LOCAL_UPDATES, "manual-sharded", 1)]
