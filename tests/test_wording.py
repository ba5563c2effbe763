"""The words a newcomer reads first, held to what they mean: a refusal that names the example it means, a sample
that shows the snippet it follows, a count that matches its table, a benchmark verdict that says what the
machine was doing, and no number printed as a negative zero."""

import json
import re
from pathlib import Path

import pytest
from readme_samples import README, SAMPLES, snippet_shapes

from fcgrad.benchmarks import report as bench_report
from fcgrad.cli.main import main
from fcgrad.engine.compare import Row
from fcgrad.reports.numbers import without_negative_zero

ROOT = Path(__file__).resolve().parents[1]
# −0.0 as json.dumps and the tables write it: "-0.0" or "-0.0e+00", never followed by another digit (-0.01)
NEGATIVE_ZERO = re.compile(r"-0\.0(?:e[+-]00)?(?![\d])")


@pytest.mark.parametrize("option", ["--loss", "--batch"])
def test_an_option_that_needs_a_network_names_the_default_example_as_an_example(option, capsys):
    value = {"--loss": "cross-entropy", "--batch": "5"}[option]
    assert main(["check", option, value]) == 2
    assert capsys.readouterr().err == (
        f"fcgrad check: error: {option} needs --sizes, --spec or --data: the default run (--example and, the "
        f"blog's) fixes its network; got {option} without them\n"
    )


def _doc_text(name: str) -> str:
    """README.md and every page of docs/: a passage moved from one to another is still found."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(p.read_text(encoding="utf-8") for p in pages if name in p.read_text(encoding="utf-8"))


def test_the_defaults_name_the_example_and_as_a_name():
    text = " ".join(_doc_text("Defaults, as `fcgrad check --help` gives them").split())
    assert "Defaults, as `fcgrad check --help` gives them: the example `and` (the blog's);" in text
    assert "the example and (" not in text


def test_the_helper_failure_after_the_softplus_snippet_shows_that_snippets_inputs():
    [sample] = [s for s in SAMPLES if s.name == "helper-failure"]
    shown = sample.block().text
    inputs = re.search(r"inputs (\{[^}]*\})\)", shown)
    assert inputs is not None, shown
    assert eval(inputs[1]) == snippet_shapes()  # the softplus snippet's shapes, not another example's  # noqa: S307
    assert "examples/test_softplus_layer.py" in shown and "test_layernorm" not in shown


WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _examples_table() -> tuple[str, list[str]]:
    text = (ROOT / "examples" / "README.md").read_text(encoding="utf-8")
    return text, re.findall(r"^\| `([^`]+)` \|", text, flags=re.M)


def test_the_examples_readme_counts_the_files_its_table_lists():
    text, table = _examples_table()
    after = text[text.index(table[-1]) :]
    count = re.search(r"^(All \w+|Both|Each) ", after.split("\n\n")[1])
    assert count is not None and count[1] == f"All {WORDS[len(table)]}", after.split("\n\n")[1][:80]


def test_every_example_file_has_a_row_in_the_examples_table():
    _, table = _examples_table()
    assert sorted(table) == sorted(p.name for p in (ROOT / "examples").glob("*.py"))


QUIET = {"loadavg_at_start": [0.2, 0.1, 0.1], "loadavg_at_end": [1.1, 0.4, 0.2], "cpu_count": 4}
BUSY = {"loadavg_at_start": [3.4, 3.0, 2.5], "loadavg_at_end": [4.25, 3.5, 2.9], "cpu_count": 2}
MISSED_ROW = {"variant": "manual", "sizes": "2-4-1", "dtype": "float64", "device": "cpu", "vs_minimal": 2.0}


def test_the_benchmarks_goals_close_with_the_machines_load():
    quiet = bench_report.goals_text([MISSED_ROW], QUIET)
    assert "MISSED" in quiet
    last = "the machine's 1-minute load average: 0.20 at the start, 1.10 at the end, on 4 cores"
    assert quiet.splitlines()[-1] == last


def test_on_a_busy_machine_a_missed_goal_is_said_to_be_perhaps_the_loads():
    busy = bench_report.goals_text([MISSED_ROW], BUSY).splitlines()[-1]
    assert busy.startswith("the machine's 1-minute load average: 3.40 at the start, 4.25 at the end, on 2 cores: ")
    assert "the machine was busy" in busy and "MISSED here may be the load's" in busy
    # the threshold: half a process per core, already running when the run began
    at = {**BUSY, "loadavg_at_start": [bench_report.BUSY_LOAD_PER_CORE * 2, 0, 0]}
    below = {**BUSY, "loadavg_at_start": [bench_report.BUSY_LOAD_PER_CORE * 2 - 0.01, 0, 0]}
    assert "busy" in bench_report.load_text(at) and "busy" not in bench_report.load_text(below)
    assert bench_report.load_text({}) == "" and bench_report.load_text(None) == ""


def test_a_row_never_holds_a_negative_zero():
    row = Row(0, "w", -0.0, -0.0, 1e-12, True, "global", None, -0.0)
    for value in (row.max_abs_err, row.rel_err, row.ratio):
        assert str(value) == "0.0"
    assert str(Row(0, "w", -2.5, 0.0, 1.0, False).max_abs_err) == "-2.5"  # a real sign is kept


def test_the_json_of_a_report_holds_no_negative_zero():
    data = without_negative_zero({"a": -0.0, "b": [1.0, -0.0, {"c": -0.0}], "d": "-0.0", "e": -1e-300, "f": None})
    assert json.dumps(data) == '{"a": 0.0, "b": [1.0, 0.0, {"c": 0.0}], "d": "-0.0", "e": -1e-300, "f": null}'


@pytest.mark.parametrize("argv", [["--steps", "3"], ["--example", "mazur", "--steps", "2"]], ids=["and", "mazur"])
def test_a_checks_text_and_json_print_no_negative_zero(argv, capsys):
    # an exactly zero difference at every step: max(max d, −min d) is −0.0 before the rows normalise it
    assert main(["check", *argv]) == 0
    text = capsys.readouterr().out
    assert main(["check", *argv, "--json"]) == 0
    data = capsys.readouterr().out
    assert not NEGATIVE_ZERO.findall(text) and not NEGATIVE_ZERO.findall(data)
    assert " 0.0e+00 " in text  # the zero is there, printed unsigned
