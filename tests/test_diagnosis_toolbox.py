"""The toolbox's classic mistakes are named from their numbers; correct code and other mistakes never are.

Batch norm and dropout: the planted backwards of test_normalization.py and test_dropout.py against
jax.vjp, through ``diagnose``. Optimizers: the planted updates of test_optimizers.py (and a few
written here) through the toolbox check, whose failing parameter rows carry the diagnosis.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_dropout import DROP, backward_with_a_fresh_mask, backward_without_scale, jax_dropout
from test_normalization import bn_backward, bn_backward_without_mean_and_variance_paths, jax_batchnorm
from test_optimizers import (
    _problem,
    adam_without_bias_correction,
    adamw_with_l2_in_the_loss,
    momentum_with_lr_twice,
)

from fcgrad.cli import toolbox as toolbox_cli
from fcgrad.cli.main import main
from fcgrad.cli.render import quiet_text
from fcgrad.diagnosis import toolbox as diagnosis_toolbox
from fcgrad.diagnosis.catalogue import Context, diagnose
from fcgrad.diagnosis.toolbox import StepRecord, diagnose_layers, diagnose_step
from fcgrad.engine import tolerances as tol
from fcgrad.engine.compare import errors
from fcgrad.engine.report_forms import from_toolbox
from fcgrad.engine.toolbox import MASK_STREAM, check_toolbox, compare_spec_gradients, diagnose_gradients, make_problem
from fcgrad.manual import batches, network, optimizers
from fcgrad.manual.batchnorm import BatchNormGrads, batchnorm_backward
from fcgrad.manual.dropout import draw_mask, dropout_backward, dropout_forward
from fcgrad.manual.spec import init_spec_params, parse_spec

KEEP = 1.0 - DROP


def _vjp(forward, inputs: dict, residual_y):
    with jax.enable_x64(True):
        args = [jnp.asarray(v, jnp.float64) for v in inputs.values()]
        _, pull = jax.vjp(forward, *args)
        return [np.asarray(g) for g in pull(jnp.asarray(residual_y))]


def _names(found) -> list[str]:
    return [d.name for d in found]


# ---- batch normalisation ----


def _bn_case(d, n, seed):
    rng = np.random.default_rng(seed)
    x = 2 + 3 * rng.standard_normal((d, n))  # (D, N) batch norm's input
    gamma, beta = rng.uniform(0.5, 2, (d, 1)), rng.standard_normal((d, 1))
    residual_y = rng.standard_normal((d, n))  # (D, N) ∂L/∂y
    ref = _vjp(jax_batchnorm, {"x": x, "gamma": gamma, "beta": beta}, residual_y)[0]
    ctx = Context(quantity="residual_x", n=n, x=x, gamma=gamma, upstream=residual_y)
    return x, gamma, beta, residual_y, ref, ctx


@pytest.mark.parametrize("d,n", [(4, 8), (3, 5), (6, 32)], ids=lambda v: str(v))
def test_batchnorm_backward_without_the_mean_and_variance_paths_is_named(d, n):
    x, gamma, beta, residual_y, ref, ctx = _bn_case(d, n, seed=d * n)
    wrong = bn_backward_without_mean_and_variance_paths(residual_y, x, gamma, beta)["residual_x"]
    found = diagnose(wrong, ref, ctx)
    assert _names(found)[:1] == ["batchnorm_without_mean_variance_paths"], found
    assert "batch mean and variance" in found[0].message


@pytest.mark.parametrize("d,n", [(4, 8), (3, 5), (6, 32)], ids=lambda v: str(v))
def test_correct_batchnorm_backward_gets_no_name(d, n):
    x, gamma, beta, residual_y, ref, ctx = _bn_case(d, n, seed=d * n)
    assert diagnose(bn_backward(residual_y, x, gamma, beta)["residual_x"], ref, ctx) == []


# ---- dropout ----


def _dropout_case(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, 7))  # (D, N)
    mask = draw_mask(x.shape, DROP, rng)  # (D, N) the forward's mask
    residual_y = rng.standard_normal(x.shape)
    ref = _vjp(jax_dropout, {"x": x, "mask": mask}, residual_y)[0]
    ctx = Context(quantity="residual_x", n=7, x=x, keep=KEEP, mask=mask, upstream=residual_y)
    return x, mask, residual_y, ref, ctx


def backward_without_any_mask(residual_y, x, mask):
    return {"residual_x": residual_y / KEEP}


@pytest.mark.parametrize(
    "broken,name",
    [
        (backward_without_scale, "dropout_without_keep_scale"),
        (backward_with_a_fresh_mask, "dropout_mask_not_reused"),
        (backward_without_any_mask, "dropout_mask_not_reused"),
    ],
    ids=["without_keep_scale", "fresh_mask", "no_mask"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_dropout_mistake_is_named(broken, name, seed):
    x, mask, residual_y, ref, ctx = _dropout_case(seed)
    found = diagnose(broken(residual_y, x, mask)["residual_x"], ref, ctx)
    assert _names(found) == [name], found


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_dropout_backward_gets_no_name(seed):
    x, mask, residual_y, ref, ctx = _dropout_case(seed)
    _, cache = dropout_forward(x, mask, DROP)
    assert diagnose(dropout_backward(residual_y, cache), ref, ctx) == []


# ---- optimizers, through the toolbox check ----


def adam_loses_bias_correction_after_three_steps(opt, grads, state, params):
    """Written out anew: right for steps 1-3, then m / (√ν + eps) with no correction."""
    if state["count"] < 3:
        return optimizers.update(opt, grads, state, params)
    b1, b2, eps = opt.hyper["b1"], opt.hyper["b2"], opt.hyper["eps"]
    mu = [{k: (1 - b1) * g[k] + b1 * m[k] for k in g} for g, m in zip(grads, state["mu"])]
    nu = [{k: (1 - b2) * g[k] ** 2 + b2 * v[k] for k in g} for g, v in zip(grads, state["nu"])]
    new = [{k: p[k] - opt.lr * m[k] / (np.sqrt(v[k]) + eps) for k in p} for p, m, v in zip(params, mu, nu)]
    return new, {"count": state["count"] + 1, "mu": mu, "nu": nu}


PLANTED = [
    (adam_without_bias_correction, optimizers.make_optimizer("adam", 0.01), "adam_without_bias_correction", 0),
    (adam_loses_bias_correction_after_three_steps, optimizers.make_optimizer("adam", 0.01),
     "adam_without_bias_correction", 3),
    (adamw_with_l2_in_the_loss, optimizers.make_optimizer("adamw", 0.01, weight_decay=0.1),
     "l2_instead_of_decoupled_weight_decay", 0),
    (momentum_with_lr_twice, optimizers.make_optimizer("momentum", 0.01), "momentum_lr_applied_twice", 0),
    (momentum_with_lr_twice, optimizers.make_optimizer("momentum", 0.3, momentum=0.5), "momentum_lr_applied_twice",
     0),
]  # fmt: skip


@pytest.mark.parametrize("broken,opt,name,step", PLANTED, ids=[f"{c[0].__name__}-lr{c[1].lr:g}" for c in PLANTED])
def test_planted_optimizer_mistake_is_named_on_the_failing_parameter_rows(broken, opt, name, step):
    report = check_toolbox(_problem(opt, steps=8), update=broken)
    failing_params = {(r.layer, r.quantity) for r in report.failures() if r.quantity in ("w", "b")}
    assert report.first_failing_step == step and failing_params
    assert set(report.diagnoses) <= failing_params and (0, "w") in report.diagnoses
    assert {d.name for found in report.diagnoses.values() for d in found} == {name}
    if name == "adam_without_bias_correction":
        assert f"step t = {step + 1}" in report.diagnoses[(0, "w")][0].message


def adam_with_a_flipped_update(opt, grads, state, params):
    new, state = optimizers.update(opt, grads, state, params)
    return [{k: 2 * p[k] - n[k] for k in p} for p, n in zip(params, new)], state  # p − Δ


def momentum_without_lr(opt, grads, state, params):
    trace = [{k: g[k] + opt.hyper["momentum"] * m[k] for k in g} for g, m in zip(grads, state["trace"])]
    return [{k: p[k] - m[k] for k in p} for p, m in zip(params, trace)], {"trace": trace}  # Δ = right Δ / lr


def adamw_decay_without_lr(opt, grads, state, params):
    new, state = optimizers.update(opt, grads, state, params)
    wd, lr = opt.hyper["weight_decay"], opt.lr
    return [{k: n[k] + lr * wd * p[k] - wd * p[k] for k in p} for p, n in zip(params, new)], state  # −wd·p, no lr


OTHER_MISTAKES = [
    (adam_with_a_flipped_update, optimizers.make_optimizer("adam", 0.01)),
    (momentum_without_lr, optimizers.make_optimizer("momentum", 0.01)),
    (adamw_decay_without_lr, optimizers.make_optimizer("adamw", 0.01, weight_decay=0.1)),
]


@pytest.mark.parametrize("broken,opt", OTHER_MISTAKES, ids=[c[0].__name__ for c in OTHER_MISTAKES])
def test_a_mistake_of_another_kind_fails_but_gets_no_name(broken, opt):
    report = check_toolbox(_problem(opt, steps=4), update=broken)
    assert not report.ok and report.diagnoses == {}


CORRECT = [
    ("4-6:tanh-3", optimizers.make_optimizer("adam", 0.01), 0.0),
    ("4-6:relu:bn:drop0.2-3", optimizers.make_optimizer("adamw", 0.01, weight_decay=0.1), 0.0),
    ("4-5:tanh:bn-3", optimizers.make_optimizer("momentum", 0.1), 1e-3),
    ("4-3", optimizers.make_optimizer("sgd", 1.0), 0.0),
]


@pytest.mark.parametrize("spec,opt,l2", CORRECT, ids=[f"{c[0]}-{c[1].name}" for c in CORRECT])
def test_correct_toolbox_runs_get_no_name(spec, opt, l2):
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((4, 20)), np.eye(3)[:, rng.integers(0, 3, 20)]
    report = check_toolbox(make_problem(spec, x, t, optimizer=opt, batch_size=10, epochs=3, l2=l2, seed=5))
    assert report.ok and report.diagnoses == {} and report.first_failing_step is None


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_correct_updates_get_no_name_when_every_entry_is_asked_at_every_step(name):
    """The entries run on right updates directly (as if every row failed), over 50 steps and lr up to 1."""
    rng = np.random.default_rng(8)
    for lr in (1e-3, 0.1, 1.0):
        opt = optimizers.make_optimizer(name, lr)
        params = [{"w": rng.standard_normal((3, 2)), "b": rng.standard_normal((2, 1))}]
        state = optimizers.init_state(opt, params)
        for k in range(50):
            grads = [{key: rng.standard_normal(v.shape) / (1 + k) for key, v in params[0].items()}]
            new, next_state = optimizers.update(opt, grads, state, params)
            assert diagnose_step(opt, StepRecord(k, params, grads, state, new), [(0, "w"), (0, "b")]) == {}
            params, state = new, next_state


def test_toolbox_text_and_json_say_what_the_failing_rows_look_like():
    opt = optimizers.make_optimizer("momentum", 0.01)
    report = check_toolbox(_problem(opt, steps=3), update=momentum_with_lr_twice)
    shown = toolbox_cli.text(report, [])
    assert "layer 0 w: looks like momentum with the learning rate applied twice" in shown
    assert "looks like momentum" in quiet_text(shown)
    entries = [f.as_dict() for f in from_toolbox(None, report, [], {}, 0.0).findings]  # the JSON's findings
    assert {(e["layer"], e["quantity"]) for e in entries} == set(report.diagnoses)
    assert all(e["name"] == "momentum_lr_applied_twice" and e["step"] == 0 for e in entries)
    assert all(e["message"].startswith("looks like ") for e in entries)


# ---- batch norm and dropout inside a spec network, through the toolbox's gradient rows ----


def network_bn_without_mean_and_variance_paths(residual_y, cache):
    right = batchnorm_backward(residual_y, cache)
    return BatchNormGrads(cache.gamma * residual_y * cache.inv_std, right.grad_gamma, right.grad_beta)


def network_dropout_without_scale(residual_y, cache):
    return residual_y * cache.mask


def network_dropout_with_a_fresh_mask(residual_y, cache):
    return residual_y * draw_mask(cache.mask.shape, 1 - cache.keep, np.random.default_rng(99)) / cache.keep


SPECS = ["4-6:tanh:bn:drop0.3-3", "4-6:relu:bn-5:sigmoid:drop0.5-3:bn"]
NETWORK_PLANTS = [
    ("batchnorm_backward", network_bn_without_mean_and_variance_paths, "batchnorm",
     "batchnorm_without_mean_variance_paths"),
    ("dropout_backward", network_dropout_without_scale, "dropout", "dropout_without_keep_scale"),
    ("dropout_backward", network_dropout_with_a_fresh_mask, "dropout", "dropout_mask_not_reused"),
]  # fmt: skip


def _network_problem(spec):
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((4, 20)), np.eye(3)[:, rng.integers(0, 3, 20)]
    params = init_spec_params(parse_spec(spec), seed=5)
    for p in params:  # γ and β away from their initial 1 and 0, so that a γ lost on the way shows
        if "gamma" in p:
            p["gamma"], p["beta"] = rng.uniform(0.5, 2, p["gamma"].shape), rng.standard_normal(p["beta"].shape)
    return make_problem(spec, x, t, optimizer=optimizers.make_optimizer("adam", 0.01), params=params, seed=5)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("where,broken,stage,name", NETWORK_PLANTS, ids=[c[1].__name__ for c in NETWORK_PLANTS])
@pytest.mark.slow
def test_planted_layer_mistake_in_a_network_is_named_where_the_gradient_rows_fail(
    monkeypatch, spec, where, broken, stage, name
):
    p = _network_problem(spec)
    monkeypatch.setattr(network, where, broken)
    rows = compare_spec_gradients(p)
    assert not all(r.ok for r in rows)
    found = diagnose_gradients(p, rows)
    layers = [i for i, layer in enumerate(p.spec) if (layer.norm == "batch" if stage == "batchnorm" else layer.dropout)]
    assert sorted(found) == [(i, f"{stage} residual_x") for i in layers]
    assert all([d.name for d in v] == [name] for v in found.values()), found


@pytest.mark.parametrize("spec", SPECS)
def test_correct_batchnorm_and_dropout_in_a_network_get_no_name(spec):
    p = _network_problem(spec)
    rows = compare_spec_gradients(p)
    assert all(r.ok for r in rows) and diagnose_gradients(p, rows) == {}
    for seed in range(3):  # asked directly, as if a row had failed
        masks = batches.step_masks(p.spec, 20, np.random.default_rng([seed, MASK_STREAM]))
        assert diagnose_layers(p, p.params, masks) == {}


@pytest.mark.parametrize("spec", SPECS)
def test_on_a_correct_network_each_layers_reference_is_manuals_backward(spec, monkeypatch):
    """The diagnosis holds manual's dropout and batch-norm residual_x against JAX's pullback of that stage: on a
    correct network they agree, so a wrong reference (which would put correct code through the catalogue, where
    no entry may match it) fails here."""
    compared = []

    def record(manual, ref, ctx):
        compared.append((ctx.quantity, manual, ref))
        return []

    monkeypatch.setattr(diagnosis_toolbox, "diagnose", record)
    p = _network_problem(spec)
    masks = batches.step_masks(p.spec, 20, np.random.default_rng([0, MASK_STREAM]))
    diagnose_layers(p, p.params, masks)
    stages = sum(bool(layer.dropout) + (layer.norm == "batch") for layer in p.spec)
    assert len(compared) == stages
    for quantity, manual, ref in compared:
        assert quantity == "residual_x"
        assert errors(manual, ref)[1] <= tol.GRAD_REL_TOL_F64


@pytest.mark.slow
def test_the_check_prints_and_writes_the_layer_mistake_it_recognises(monkeypatch, capsys):
    monkeypatch.setattr(network, "batchnorm_backward", network_bn_without_mean_and_variance_paths)
    base = ["check", "--spec", "3-5:tanh:bn-2", "--optimizer", "sgd", "--epochs", "1"]
    assert main(base) == 1
    assert "layer 0 batchnorm residual_x: looks like batch norm's backward without the paths" in capsys.readouterr().out
    assert main([*base, "--json"]) == 1
    entries = json.loads(capsys.readouterr().out)["findings"]
    assert entries[0] == {**entries[0], "layer": 0, "quantity": "batchnorm residual_x", "step": None,
                          "name": "batchnorm_without_mean_variance_paths", "side": "manual"}  # fmt: skip
