"""docs/promises.md cannot rot: every test it names exists, and every section it names is a heading of its document.

Tests are found in their files' source with ``ast`` (nothing imported); a name with a parameter in brackets is
looked up once among the ids ``pytest --collect-only`` gives for its file.
"""

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "promises.md"
# the documents whose promises are listed: README.md and every page of docs/ but the table itself and the
# mutation tool's report
DOCUMENTS = {"README.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))} - {
    "docs/promises.md",
    "docs/mutation.md",
}
NODE = re.compile(r"`((?:tests|examples)/[\w/]+\.py)::([\w:]+)(\[[^\]`]*\])?`")
FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
COLLECT_TIMEOUT_S = 120  # collecting one test file, JAX's import included


def rows(text: str) -> list[tuple[str, str, str, list[tuple[str, str, str]]]]:
    """(document, section, promise, [(file, name, [param])]) for every row, the document from the ``##`` above."""
    found, document = [], None
    for line in text.splitlines():
        heading = re.match(r"^## (\S+\.md)\s*$", line)
        if heading:
            document = heading.group(1)
        elif line.startswith("| ") and document and not line.startswith("| section |"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            assert len(cells) == 3, f"a row of three cells expected: {line[:120]}"
            found.append((document, cells[0], cells[1], NODE.findall(cells[2])))
    return found


@functools.cache
def defined_tests(path: Path) -> set[str]:
    """``name`` of every module-level function or class, and ``Class::method`` of every method, in ``path``."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)}
    return names


def missing_tests(table_rows) -> list[str]:
    missing = []
    for _, _, _, nodes in table_rows:
        for file, name, _ in nodes:
            path = ROOT / file
            if not path.is_file() or name not in defined_tests(path):
                missing.append(f"{file}::{name}")
    return missing


@functools.cache
def headings(document: str) -> set[str]:
    text = FENCE.sub("", (ROOT / document).read_text(encoding="utf-8"))  # a # comment in a code block is no heading
    return set(re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.M))


def missing_sections(table_rows) -> list[str]:
    return [f"{doc}: {section}" for doc, section, _, _ in table_rows if section not in headings(doc)]


ROWS = rows(TABLE.read_text(encoding="utf-8"))


def test_the_table_lists_promises_of_every_document_and_each_is_pinned():
    assert {doc for doc, *_ in ROWS} == DOCUMENTS
    unpinned = [f"{doc}: {section}: {promise}" for doc, section, promise, nodes in ROWS if not nodes]
    assert not unpinned, "rows without a test: " + "; ".join(unpinned)


def test_every_test_the_table_names_exists():
    assert not missing_tests(ROWS), "named in docs/promises.md, not found: " + ", ".join(missing_tests(ROWS))


def test_every_parametrized_case_the_table_names_is_collected():
    cases = {f"{file}::{name}{param}" for _, _, _, nodes in ROWS for file, name, param in nodes if param}
    files = sorted({case.split("::")[0] for case in cases})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n0", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COLLECT_TIMEOUT_S,
    )
    collected = set(done.stdout.split())
    assert not cases - collected, f"not collected: {sorted(cases - collected)}\n{done.stdout[-2000:]}"


def test_every_section_the_table_names_is_a_heading_of_its_document():
    assert not missing_sections(ROWS), "not a heading any more: " + "; ".join(missing_sections(ROWS))


@pytest.mark.parametrize(
    "row,caught",
    [
        ("| fcgrad | a promise | `tests/test_docs.py::test_no_such_test` |", missing_tests),
        ("| fcgrad | a promise | `tests/no_such_file.py::test_x` |", missing_tests),
        ("| No such section | a promise | `tests/test_docs.py::test_prose_cites_links_and_paths` |", missing_sections),
    ],
    ids=["test", "file", "section"],
)
def test_a_stale_row_is_caught(row, caught):
    planted = rows(f"## README.md\n\n| section | promise | pinned by |\n|---|---|---|\n{row}\n")
    assert len(planted) == 1 and caught(planted)
    assert not caught(rows("## README.md\n\n| fcgrad | ok | `tests/test_docs.py::test_prose_cites_links_and_paths` |"))
