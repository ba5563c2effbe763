"""One JSON schema and one archive pattern for every run of ``fcgrad check``, whatever form of the engine ran it.

A tiny run of each form (full-batch SGD on plain layers, the toolbox, the digits example, and over two
devices both free-running and step by step) goes through the command with ``--json PATH`` and ``--save
PATH``: every JSON object must be valid under ``docs/run.schema.json`` with exactly the same top-level keys,
and every archive's keys must follow ``docs/run.npz.json``, with the numbers of the JSON read back from it.
"""

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from fcgrad.cli.main import main
from fcgrad.engine.report import FORMS, JSON_KEYS

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCHEMA = json.loads((DOCS / "run.schema.json").read_text(encoding="utf-8"))
NPZ = json.loads((DOCS / "run.npz.json").read_text(encoding="utf-8"))
# the row's max|Δ| recomputed from the archive: the same float64 subtraction, so equal to the last digit or two
SAME_NUMBERS_REL_TOL = 1e-12
# one step of the blog's AND run at lr 0.1, three steps in, moves its loss by about 1e-4: far above 1e-9, and far
# above rounding (1e-16), so the loss before the last update and the loss after it cannot be taken for each other
ONE_STEP_LOSS_CHANGE = 1e-9

RUNS = {  # the smallest run of each form
    "network": ["--steps", "3"],
    "toolbox": ["--spec", "3-5:relu:bn:drop0.25-2", "--optimizer", "adam", "--batch-size", "24", "--steps", "4"],
    "digits": ["--example", "digits", "--steps", "2"],
    "sharded free": ["--devices", "2", "--sizes", "3,4,2", "--batch", "5", "--steps", "3"],
    "sharded local": ["--devices", "2", "--spec", "3-4:tanh:drop0.2-2", "--optimizer", "momentum", "--steps", "3"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """form -> (its JSON, its archive's arrays, its archive's meta), each run once through the command."""
    folder = tmp_path_factory.mktemp("runs")
    out = {}
    for form, argv in RUNS.items():
        name = form.replace(" ", "_")
        json_path, npz_path = folder / f"{name}.json", folder / f"{name}.npz"
        assert main(["check", *argv, "-q", "--json", str(json_path), "--save", str(npz_path)]) == 0, form
        with np.load(npz_path) as f:
            arrays = {k: f[k] for k in f.files}
        out[form] = (json.loads(json_path.read_text()), arrays, json.loads(str(arrays["meta"])))
    return out


def test_a_run_of_every_form_is_made():
    assert set(RUNS) == set(FORMS)


@pytest.mark.parametrize("form", list(RUNS))
def test_the_json_of_every_form_is_valid_under_the_schema(form, runs):
    data = runs[form][0]
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    assert data["form"] == form
    assert set(data["last_step_loss"]) == set(data["sides"])


def test_every_form_has_exactly_the_same_top_level_keys(runs):
    keys = {form: list(data) for form, (data, _, _) in runs.items()}
    assert all(k == list(JSON_KEYS) for k in keys.values()), keys
    assert set(JSON_KEYS) == set(SCHEMA["required"]) == set(SCHEMA["properties"])


def _patterns() -> list[tuple[str, re.Pattern]]:
    words = {name: f"(?:{alternatives})" for name, alternatives in NPZ["placeholders"].items()}
    out = []
    for entry in NPZ["keys"]:
        regex = re.escape(entry["pattern"])
        for name, alternatives in words.items():
            regex = regex.replace(re.escape("{" + name + "}"), alternatives)
        out.append((entry["pattern"], re.compile(regex)))
    return out


def _pattern_of(key: str) -> list[str]:
    return [name for name, regex in _patterns() if regex.fullmatch(key)]


@pytest.mark.parametrize("form", list(RUNS))
def test_every_key_of_every_forms_archive_follows_one_documented_pattern(form, runs):
    data, arrays, meta = runs[form]
    unmatched = {key: _pattern_of(key) for key in arrays if len(_pattern_of(key)) != 1}
    assert not unmatched, unmatched
    assert meta["problem"] == data["meta"]["problem"]
    saved_sides = {key.split("/")[0] for key in arrays if "/" in key}
    assert saved_sides == set(data["sides"])
    steps = meta["problem"]["steps"]
    initial = {key[: -len("_init")]: value for key, value in arrays.items() if key.endswith("_init")}
    for side in data["sides"]:
        assert arrays[f"{side}/loss"].shape == (steps,), side
        for key, value in initial.items():  # every side holds every parameter (and running average) of the start
            assert arrays[f"{side}/{key}"].shape == (steps + 1, *value.shape), (side, key)
            assert np.array_equal(arrays[f"{side}/{key}"][0], value), (side, key)  # entry 0: the initial value
    assert arrays["X"].shape[1] == arrays["T"].shape[1] == meta["problem"]["samples"]


def _saved_key(row: dict) -> str:
    """The archive's name for a trajectory row: w0, running_mean0, mu_w0 (the moment mu of w)."""
    quantity, layer = row["quantity"], row["layer"]
    if "[" in quantity:
        moment, key = quantity.rstrip("]").split("[")
        return f"{moment}_{key}{layer}"
    return f"{quantity}{layer}"


@pytest.mark.parametrize("form", list(RUNS))
def test_the_archive_holds_the_numbers_the_json_judged(form, runs):
    data, arrays, meta = runs[form]
    assert json.dumps(meta["final_loss"]) == json.dumps(data["meta"]["final_loss"])  # the same number, or both null
    for side in data["sides"]:
        assert data["last_step_loss"][side] == pytest.approx(arrays[f"{side}/loss"][-1], rel=0, abs=0)
    compared = 0
    for c in data["trajectories"]:
        side, base = c["sides"]
        if side not in data["sides"] or base not in data["sides"]:
            continue  # the replicas of one side, held against replica 0
        for row in c["rows"]:
            key = "loss" if row["layer"] < 0 else _saved_key(row)
            a, b = (np.asarray(arrays[f"{s}/{key}"], np.float64) for s in (side, base))
            assert np.max(np.abs(a - b)) == pytest.approx(row["max_abs_err"], rel=SAME_NUMBERS_REL_TOL, abs=0), (
                c["sides"], key)  # fmt: skip
            compared += 1
    assert compared >= 3


def test_the_sharded_archive_keeps_every_replica(runs):
    data, arrays, _ = runs["sharded free"]
    assert list(arrays["shard_sizes"]) == data["extras"]["shard_sizes"] == [3, 2]
    replicas = arrays["manual-sharded/replicas/w0"]
    assert replicas.shape == (2, *arrays["manual-sharded/w0"].shape)
    assert np.array_equal(replicas[0], arrays["manual-sharded/w0"])


def test_the_final_loss_is_one_number_and_the_last_steps_loss_another(runs):
    """"final loss" is the loss after the last step wherever a report says it: the text's line, ``meta.final_loss``
    of the JSON and of the archive, ``extras.output.loss``. The loss the last step computed, before its update,
    is ``last_step_loss``: a different number, under its own name."""
    data, arrays, meta = runs["network"]
    after = data["extras"]["output"]["loss"]
    assert meta["final_loss"] == pytest.approx(after, rel=0, abs=0)
    assert data["meta"]["final_loss"] == pytest.approx(after, rel=0, abs=0)
    assert data["last_step_loss"]["manual"] == pytest.approx(arrays["manual/loss"][-1], rel=0, abs=0)
    assert abs(after - data["last_step_loss"]["manual"]) > ONE_STEP_LOSS_CHANGE  # the run learns: the two differ
    for form in ("toolbox", "digits", "sharded free", "sharded local"):  # no loss computed after the last step
        assert runs[form][0]["meta"]["final_loss"] is None and runs[form][2]["final_loss"] is None, form


def test_the_text_prints_the_final_loss_the_json_holds(capsys):
    assert main(["check", "--steps", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert main(["check", "--steps", "3"]) == 0
    [line] = [s for s in capsys.readouterr().out.splitlines() if "final loss" in s]
    assert line == f"final loss {data['meta']['final_loss']:.10g}"
