"""Every pair of options of ``fcgrad check`` and of ``fcgrad audit`` runs as asked or is refused in one line.

"As asked" is read from the run description the command builds before any work
(``fcgrad.engine.description``): each option of the pair must be found there with the value given.
"Refused" is one line, exit 2, naming both options of a pair that each run alone. A handful of pairs then
run end to end, and the JSON's numbers show the option at work, not only its name.
"""

import itertools
import json
import math

import pytest

from fcgrad.cli.audit import audit_description
from fcgrad.cli.main import build_parser, description_from_args, main, refuse_outputs
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.spec import format_spec, parse_spec

# one valid value of each option of check, as the user types it; hyperparameters come with their optimizer
CHECK_SAMPLES = {
    "example": ["--example", "xor"],
    "sizes": ["--sizes", "3,4,2"],
    "activation": ["--activation", "tanh"],
    "spec": ["--spec", "3-4:tanh-2"],
    "loss": ["--loss", "mae"],
    "batch": ["--batch", "12"],
    "data": ["--data", "DATA"],
    "seed": ["--seed", "5"],
    "lr": ["--lr", "0.05"],
    "steps": ["--steps", "7"],
    "epochs": ["--epochs", "2"],
    "batch_size": ["--batch-size", "3"],
    "optimizer": ["--optimizer", "adam"],
    "momentum": ["--optimizer", "nesterov", "--momentum", "0.5"],
    "b1": ["--optimizer", "adamw", "--b1", "0.8"],
    "l2": ["--l2", "0.01"],
    "dtype": ["--dtype", "float32"],
    "rtol": ["--rtol", "1e-9"],
    "atol": ["--atol", "1e-10"],
    "devices": ["--devices", "2"],
}
OUTPUTS = {
    "quiet": ["-q"],
    "verbose": ["-v"],
    "json": ["--json"],
    "save": ["--save", "SAVE"],
    "plot": ["--plot", "PLOT"],
}


PARSER = build_parser()  # the command's own parser, built once: parsing leaves it as it was


def _argv(parts, data_file, tmp_path) -> list[str]:
    swap = {"DATA": data_file, "SAVE": str(tmp_path / "run.npz"), "PLOT": str(tmp_path / "run.png")}
    return [swap.get(a, a) for a in parts]


def _outcome(command: str, parts: list[str], data_file, tmp_path):
    """("ok", description, args) or ("refused", one-line message)."""
    args = PARSER.parse_args([command, *_argv(parts, data_file, tmp_path)])
    try:
        d = description_from_args(args) if command == "check" else audit_description(args)
        if command == "check":
            refuse_outputs(d, args)
    except FcgradError as exc:
        message = str(exc)
        assert "\n" not in message
        return "refused", message
    return "ok", d, args


def _value(parts: list[str]) -> str:
    return parts[-1]


def _honoured(name: str, parts: list[str], d, data_file) -> bool:
    """Does the description carry option ``name`` with the value it was given?"""
    v = _value(parts)
    checks = {
        "example": lambda: d.source == v,
        "sizes": lambda: d.sizes == (3, 4, 2),
        "activation": lambda: set(d.activations) == {"tanh"},
        "spec": lambda: format_spec(d.spec) == format_spec(parse_spec(v)),
        "loss": lambda: d.loss == v,
        "batch": lambda: d.samples == int(v),
        "data": lambda: d.data_file == data_file and d.samples == 6,
        "seed": lambda: d.seed == int(v),
        "lr": lambda: d.optimizer.lr == pytest.approx(float(v), rel=0, abs=0),
        "steps": lambda: d.steps == int(v),
        "epochs": lambda: d.epochs == int(v) and d.steps == int(v) * (1 if d.batch_size is None else
                                                                      math.ceil(d.samples / d.batch_size)),
        "batch_size": lambda: d.batch_size == int(v),
        "optimizer": lambda: d.optimizer.name == v,
        "momentum": lambda: d.optimizer.name == "nesterov" and dict(d.optimizer.hyper)["momentum"] == 0.5,
        "b1": lambda: d.optimizer.name == "adamw" and dict(d.optimizer.hyper)["b1"] == 0.8,
        "l2": lambda: d.l2 == float(v),
        "dtype": lambda: d.dtype == v,
        "rtol": lambda: d.rtol == float(v),
        "atol": lambda: d.atol == float(v),
        "devices": lambda: d.devices == int(v) and d.kind == "sharded",
    }  # fmt: skip
    return checks[name]()


def _alone(command, samples, data_file, tmp_path) -> dict:
    return {name: _outcome(command, parts, data_file, tmp_path)[0] for name, parts in samples.items()}


PAIRS = list(itertools.combinations(CHECK_SAMPLES, 2))


@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_every_pair_of_check_options_runs_as_asked_or_is_refused_naming_both(a, b, data_file, tmp_path, capsys):
    alone = {n: _outcome("check", CHECK_SAMPLES[n], data_file, tmp_path)[0] for n in (a, b)}
    if "--optimizer" in CHECK_SAMPLES[a] and "--optimizer" in CHECK_SAMPLES[b]:  # two optimizers: neither wins
        with pytest.raises(SystemExit) as info:
            PARSER.parse_args(["check", *CHECK_SAMPLES[a], *CHECK_SAMPLES[b]])
        assert info.value.code == 2 and "argument --optimizer: given twice" in capsys.readouterr().err
        return
    got = _outcome("check", CHECK_SAMPLES[a] + CHECK_SAMPLES[b], data_file, tmp_path)
    if got[0] == "ok":
        d = got[1]
        assert _honoured(a, CHECK_SAMPLES[a], d, data_file), f"{a} dropped: {d.summary()}"
        assert _honoured(b, CHECK_SAMPLES[b], d, data_file), f"{b} dropped: {d.summary()}"
    elif alone == {a: "ok", b: "ok"}:  # each runs alone: the refusal is about the pair, and names both
        _names_both(got[1], CHECK_SAMPLES[a], CHECK_SAMPLES[b])


def _names_both(message: str, parts_a: list[str], parts_b: list[str]) -> None:
    """The message names an option of each side (a hyperparameter's sample also gives its --optimizer)."""
    for parts in (parts_a, parts_b):
        flags = [p for p in parts if p.startswith("-")]
        assert any(f in message for f in flags), f"{message!r} should name one of {flags}"


@pytest.mark.parametrize("name", list(CHECK_SAMPLES))
def test_every_check_option_alone_runs_as_asked_or_says_what_it_needs(name, data_file, tmp_path):
    got = _outcome("check", CHECK_SAMPLES[name], data_file, tmp_path)
    if got[0] == "ok":
        assert _honoured(name, CHECK_SAMPLES[name], got[1], data_file)
    else:  # only options that need another one: a network, a data file
        assert name in ("activation", "loss", "batch"), got[1]
        needs = "needs --sizes or --data" if name == "activation" else "needs --sizes, --spec or --data"
        assert got[1].startswith(f"--{name} {needs}"), got[1]


@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("name", list(CHECK_SAMPLES))
def test_every_output_with_every_option_is_written_or_refused_naming_both(name, output, data_file, tmp_path):
    got = _outcome("check", CHECK_SAMPLES[name] + OUTPUTS[output], data_file, tmp_path)
    alone = _outcome("check", CHECK_SAMPLES[name], data_file, tmp_path)
    if alone[0] == "refused":
        assert got[0] == "refused"
        return
    if got[0] == "refused":
        assert OUTPUTS[output][0] in got[1] and ("--" in got[1]), got[1]
        return
    assert _honoured(name, CHECK_SAMPLES[name], got[1], data_file)


# ---- audit ----------------------------------------------------------------------------------------------------

AUDIT_SAMPLES = {k: CHECK_SAMPLES[k] for k in ("example", "sizes", "activation", "spec", "loss", "batch", "data",
                                               "seed", "lr", "steps", "epochs", "dtype", "rtol", "atol")}  # fmt: skip
# check's options that leave the blog's full-batch SGD on plain layers (and -v): audit refuses each, naming it
NOT_FOR_AUDIT = {**{k: v for k, v in CHECK_SAMPLES.items() if k not in AUDIT_SAMPLES}, "verbose": ["-v"]}
AUDIT_PAIRS = list(itertools.combinations(AUDIT_SAMPLES, 2))


@pytest.mark.parametrize("a,b", AUDIT_PAIRS, ids=[f"{a}+{b}" for a, b in AUDIT_PAIRS])
def test_every_pair_of_audit_options_runs_as_asked_or_is_refused_naming_both(a, b, data_file, tmp_path):
    alone = {n: _outcome("audit", AUDIT_SAMPLES[n], data_file, tmp_path)[0] for n in (a, b)}
    got = _outcome("audit", AUDIT_SAMPLES[a] + AUDIT_SAMPLES[b], data_file, tmp_path)
    if got[0] == "ok":
        assert _honoured(a, AUDIT_SAMPLES[a], got[1], data_file) and _honoured(b, AUDIT_SAMPLES[b], got[1], data_file)
        assert got[1].kind == "network"
    elif alone == {a: "ok", b: "ok"}:
        _names_both(got[1], AUDIT_SAMPLES[a], AUDIT_SAMPLES[b])


@pytest.mark.parametrize("name", list(NOT_FOR_AUDIT))
def test_every_check_option_audit_cannot_honour_is_refused_in_one_line_naming_it(name, capsys, monkeypatch):
    monkeypatch.setattr("fcgrad.audits.blog.audit", lambda *a, **k: pytest.fail("the audit ran"))
    parts = NOT_FOR_AUDIT[name]
    assert main(["audit", *parts]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "unrecognized" not in err, err
    assert err.startswith("fcgrad audit: error: ") and all(p in err for p in parts if p.startswith("-")), err


def test_every_refused_option_given_together_is_named_in_one_line(capsys):
    given = ["--optimizer", "adam"]  # a hyperparameter's sample brings its own --optimizer: left out here
    given += [part for parts in NOT_FOR_AUDIT.values() if parts[0] != "--optimizer" for part in parts]
    given += [part for parts in NOT_FOR_AUDIT.values() if parts[0] == "--optimizer" for part in parts[2:]]
    assert main(["audit", *given]) == 2
    err = capsys.readouterr().err
    named = [p for p in given if p.startswith("-")]
    assert len(named) == len(NOT_FOR_AUDIT) and err.count("\n") == 1 and all(p in err for p in named), err


@pytest.mark.parametrize("name", ["spec", "epochs", "rtol", "atol"])
def test_audit_code_refuses_the_options_its_file_decides(name, capsys):
    assert main(["audit", "--code", "examples/blog_shaped_net.py", *AUDIT_SAMPLES[name]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{AUDIT_SAMPLES[name][0]} " in err, err
    assert "with --code" in err


def test_audit_refuses_a_spec_that_is_not_of_the_blogs_plain_layers(capsys):
    assert main(["audit", "--spec", "3-4:bn-2", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--spec 3-4:bn-2: the blog's code has plain layers" in err


def test_audit_code_refuses_the_departures_of_the_blogs_code(capsys):
    assert main(["audit", "--code", "examples/blog_shaped_net.py", "--departures", "none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--departures with --code" in err


# ---- the numbers show each option at work --------------------------------------------------------------------


def _run_json(capsys, *argv) -> dict:
    code = main(["check", *argv, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    return out


def test_adam_on_four_devices_runs_adam_on_five_sides(capsys):
    out = _run_json(capsys, "--devices", "4", "--optimizer", "adam", "--steps", "6")
    run = out["meta"]["problem"]
    assert (run["optimizer"], run["devices"], run["engine"]) == ("adam", 4, "sharded")
    assert {tuple(c["sides"]) for c in out["trajectories"]} == {
        ("jax", "manual"), ("manual-sharded", "manual"), ("jax-jit-sharded", "jax"), ("jax-shard_map-sharded", "jax"),
    }  # fmt: skip
    assert out["extras"]["shard_sizes"] == [1, 1, 1, 1] and out["ok"]


def test_a_data_file_with_momentum_trains_the_blogs_network_on_the_files_samples(capsys, data_file):
    out = _run_json(capsys, "--data", data_file, "--optimizer", "momentum", "--steps", "5")
    run = out["meta"]["problem"]
    assert (run["spec"], run["samples"], run["optimizer"], run["steps"]) == ("3-4:sigmoid-2:sigmoid", 6, "momentum", 5)
    [traj] = out["trajectories"]
    assert traj["steps"] == 5
    assert any(r["quantity"] == "trace[w]" for r in traj["rows"]), "momentum's moment compared"


def test_a_spec_on_a_data_file_reads_the_file(capsys, data_file):
    out = _run_json(capsys, "--spec", "3-5:tanh-2", "--data", data_file, "--loss", "square", "--optimizer", "adam",
                    "--steps", "4")  # fmt: skip
    run = out["meta"]["problem"]
    assert run["data_file"] == data_file and run["samples"] == 6 and run["spec"] == "3-5:tanh-2:identity"


def test_spec_tolerances_reach_every_row(capsys):
    out = _run_json(capsys, "--spec", "3-4:bn-2", "--rtol", "1e-9", "--atol", "1e-10", "--steps", "3")
    assert {r["tol"] for r in out["gradients"][0]["rows"]} == {1e-9}
    assert out["meta"]["tolerances"]["trajectory_abs"] == 1e-10
    rows = out["trajectories"][0]["rows"]
    assert all(r["tol"] >= 1e-10 and r["tol"] < 1e-9 for r in rows if r["quantity"] != "loss")


def test_devices_splits_the_batch_over_that_many_shards(capsys):
    out = _run_json(capsys, "--devices", "2", "--sizes", "3,4,2", "--batch", "5", "--steps", "3")
    assert out["extras"]["shard_sizes"] == [3, 2] and out["meta"]["problem"]["devices"] == 2
    compared = out["gradients"] + out["trajectories"]
    assert {tuple(c["sides"]) for c in compared} >= {("manual-sharded", "manual"), ("manual", "jax")}
    assert all(len(c["rows"]) for c in compared) and out["ok"]


def test_seed_changes_what_is_drawn(capsys):
    a = _run_json(capsys, "--sizes", "3,4,2", "--steps", "2", "--seed", "1")
    b = _run_json(capsys, "--sizes", "3,4,2", "--steps", "2", "--seed", "2")
    assert abs(a["meta"]["final_loss"] - b["meta"]["final_loss"]) > 1e-6
