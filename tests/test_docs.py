"""docs/derivation.md quotes lines of manual/ and links to them: each quote must stand on its line."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "derivation.md"
# `code` — [label](../manual/file.py#L12): the fragment quoted right before a link to a line
QUOTED_LINK = re.compile(r"`([^`]+)`\s+—\s+\[[^\]]+\]\(\.\./(manual/[\w/]+\.py)#L(\d+)\)")
ANY_LINK = re.compile(r"\]\(\.\./(manual/[\w/]+\.py)#L(\d+)\)")


def _quoted_links():
    return QUOTED_LINK.findall(DOC.read_text(encoding="utf-8"))


@pytest.mark.parametrize("fragment,path,line", _quoted_links(), ids=lambda v: str(v)[:40])
def test_quoted_fragment_stands_on_linked_line(fragment, path, line):
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    assert int(line) <= len(lines), f"{path} has {len(lines)} lines, the doc links to line {line}"
    assert fragment in lines[int(line) - 1], f"{path}:{line} is now {lines[int(line) - 1].strip()!r}, not {fragment!r}"


def test_doc_links_only_to_existing_lines_and_quotes_most_of_them():
    links = ANY_LINK.findall(DOC.read_text(encoding="utf-8"))
    for path, line in links:
        assert int(line) <= len((ROOT / path).read_text(encoding="utf-8").splitlines()), f"{path}#L{line}"
    assert len(_quoted_links()) >= 12, "the derivation should tie each formula to its line of manual/"
