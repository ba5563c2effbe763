"""examples/README.md's Python snippets run against fcgrad installed from its wheel, from the repository's root.

Its sample outputs are compared with fresh runs in tests/test_readme.py (with README.md's).
"""

import pytest
import readme_samples
from conftest import user_env
from readme_samples import EXAMPLES_README, fenced_blocks, python_snippets

TIMEOUT_S = 600  # a derivation checked and a network audited: under 15 s here; generous for a busy machine


def test_the_examples_readme_shows_the_three_entry_points():
    text = "\n".join(b.text for b in fenced_blocks(EXAMPLES_README.read_text(encoding="utf-8")) if b.lang == "python")
    for entry in ("assert_backward_matches", "assert_derivation_matches", "audit_code"):
        assert entry in text


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 60)  # the snippets' own limit first, then the suite's
def test_the_examples_readmes_snippets_run_against_the_installed_wheel(fresh_python, tmp_path):
    env = user_env(tmp_path)
    done = readme_samples.run_snippets(fresh_python, EXAMPLES_README, tmp_path, env, TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count(": ran\n") == len(python_snippets(EXAMPLES_README)) >= 2
