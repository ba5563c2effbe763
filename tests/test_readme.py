"""README's Python snippets (and docs/check.md's) run against fcgrad installed from its wheel; the sample outputs
of README.md, docs/ and examples/README.md are the code's own.

The snippets run in a fresh virtual environment holding only the built wheel (and this environment's NumPy,
JAX and pytest), from the repository's root as a user who cloned it runs them; the one that loads run.npz,
from the folder where ``fcgrad check --save run.npz`` wrote it. tests/readme_samples.py says how the sample
outputs are compared, and ``python -m tests.readme_samples --write`` rewrites them from fresh runs.
"""

import pytest
import readme_samples
from conftest import user_env
from readme_samples import CHECK_DOC, OK_ROW, OK_STEP_ROW, README, SAMPLES, Sample, differences, python_snippets

TIMEOUT_S = 600  # the snippets audit a network and check two: about 15 s here; generous for a busy machine


def test_readme_has_python_snippets():
    assert len(python_snippets(README)) >= 3 and len(python_snippets(CHECK_DOC)) >= 1


@pytest.mark.parametrize("doc", [README, CHECK_DOC], ids=["README.md", "docs/check.md"])
def test_the_readmes_snippets_run_against_the_installed_wheel(doc, fresh_python, tmp_path):
    """README's snippets, and those of the page its reference of ``fcgrad check`` moved to (the --save archive's)."""
    env = user_env(tmp_path)
    done = readme_samples.run_snippets(fresh_python, doc, tmp_path, env, TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count(": ran\n") == len(python_snippets(doc))


@pytest.mark.parametrize(
    "sample",
    [pytest.param(s, marks=[pytest.mark.slow] if s.name in ("check", "audit") else []) for s in SAMPLES],
    ids=[s.name for s in SAMPLES],
)
def test_a_sample_output_in_the_docs_is_what_the_code_prints_now(sample, request):
    fresh = request.getfixturevalue(sample.shared)["text"] if sample.shared else None
    problems = readme_samples.compare(sample, fresh)
    hint = f"\n(after a change the output is meant to have: python -m tests.readme_samples --write {sample.name})"
    assert not problems, f"{sample.doc.name}, sample {sample.name}:\n" + "\n".join(problems) + hint


# --- how a sample is compared ------------------------------------------------------------------------------------

TABLE = Sample("table", README, after="", produce=str, noise=(OK_ROW,))
SHOWN = """\
tolerances: gradients rel ≤ 1.0e-12
  layer quantity        max|Δ|       rel       tol  result
  0     grad_w         5.2e-18   5.9e-16   1.0e-12  ok
"""


def test_rounding_noise_may_differ_within_its_tolerance():
    assert differences(TABLE, SHOWN, SHOWN.replace("5.2e-18   5.9e-16", "9.1e-17   3.0e-13")) == []


def test_noise_beyond_its_tolerance_on_either_side_is_a_difference():
    beyond = SHOWN.replace("5.9e-16", "2.0e-12")
    assert differences(TABLE, SHOWN, beyond) and differences(TABLE, beyond, SHOWN)


STEPS = Sample("steps", README, after="", produce=str, noise=(OK_ROW, OK_STEP_ROW))
SHOWN_STEPS = "  0     w              1.1e-15   2.4e-16   2.2e-12  global  ok\n"


def test_a_step_rows_bound_is_noise_but_never_below_the_trajectory_tolerance():
    # which step is the worst, and so the bound printed beside it, is rounding's choice
    other_step = SHOWN_STEPS.replace("1.1e-15   2.4e-16   2.2e-12", "8.9e-16   2.1e-16   1.5e-12")
    assert differences(STEPS, SHOWN_STEPS, other_step) == []
    assert differences(STEPS, SHOWN_STEPS, SHOWN_STEPS.replace("2.2e-12", "1.0e-13"))
    assert differences(STEPS, SHOWN_STEPS, SHOWN_STEPS.replace("global", "local"))


EDITS = {
    "a tolerance": ("1.0e-12  ok", "1.0e-10  ok"),
    "a row's name": ("grad_w ", "grad_b "),
    "the header": ("rel ≤ 1.0e-12", "rel ≤ 1.0e-10"),
    "a line more": ("  ok\n", "  ok\n\n"),
}


@pytest.mark.parametrize("old,new", list(EDITS.values()), ids=list(EDITS))
def test_every_other_difference_is_one(old, new):
    assert differences(TABLE, SHOWN, SHOWN.replace(old, new))


def test_an_excerpt_is_the_output_s_lines_in_order():
    excerpt = Sample("excerpt", README, after="", produce=str, excerpt=True)
    printed = "a\nb\nc\n"
    assert differences(excerpt, "a\nc\n", printed) == []
    assert differences(excerpt, "c\na\n", printed) and differences(excerpt, "a\nd\n", printed)
