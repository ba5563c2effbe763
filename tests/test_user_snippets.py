"""examples/README.md's Python snippets run as written, from a scratch folder."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "examples" / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
RUNNABLE = [b for b in BLOCKS if not re.search(r"^\s*\.\.\.\s*$", b, flags=re.M)]  # not the contract's outline


def test_the_examples_readme_shows_the_three_entry_points():
    text = "\n".join(BLOCKS)
    for entry in ("assert_backward_matches", "assert_derivation_matches", "audit_code"):
        assert entry in text


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_examples_readme_snippet_runs(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    for name, fn in list(namespace.items()):
        if name.startswith("test_") and callable(fn):
            fn()
