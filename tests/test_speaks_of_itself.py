"""Code, output and docs speak of the project, not of how it was built; "seed" is only a random seed.

Every tracked text file is searched for a few precise phrases: a numbered work item, "the
issue's ...", a machine said to be lent or borrowed, and "seed" standing for the blog post or
its code (which the project calls "the blog" and "the blog's code").
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()
FORBIDDEN = {
    "a numbered work item": re.compile(r"\bissues? ?#?\d", re.I),
    "the issue's ...": re.compile(r"\bthe issue's\b", re.I),
    "a lent or borrowed machine": re.compile(r"\b(?:lent|borrowed) (?:machine|box|gpu|h100|h200|device)s?\b", re.I),
    "seed for the blog": re.compile(
        r"\bthe seed's\b|\bseed[ _-](?:blog|post|code)\b"  # in prose, and in names: test_seed_and_example_...
        r"|(?<![a-z])seeds?[ _-](?:(?:and|xor|mazur)[ _-])?(?:example|network)",
        re.I,
    ),
}
SKIPPED_FOLDERS = {".git", ".venv", "venv", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}


def _tracked_files() -> list[str]:
    """``git ls-files`` in a checkout; every file outside the local environments in an unpacked sdist."""
    try:
        done = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except OSError:
        done = None
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return sorted(done.stdout.splitlines())
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in ROOT.rglob("*")
        if p.is_file() and not SKIPPED_FOLDERS & set(p.relative_to(ROOT).parts)
    )


def _text(path: str) -> str | None:
    data = (ROOT / path).read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def hits(text: str) -> list[str]:
    """``line N: what it says (which phrase)`` for every forbidden phrase in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in FORBIDDEN.items():
            if pattern.search(line):
                found.append(f"line {number}: {line.strip()[:100]!r} ({what})")
    return found


TEXT_FILES = [p for p in _tracked_files() if p != THIS_FILE and (ROOT / p).is_file() and _text(p) is not None]


def test_the_search_covers_code_docs_tests_and_benchmarks():
    for expected in ("README.md", "docs/design.md", "manual/validate.py", "tests/conftest.py", "benchmarks/cli.py"):
        assert expected in TEXT_FILES


def test_no_file_says_anything_of_how_the_project_was_built():
    found = {path: hits(_text(path)) for path in TEXT_FILES}
    found = {path: lines for path, lines in found.items() if lines}
    assert not found, "\n".join(f"{path}:\n  " + "\n  ".join(lines) for path, lines in found.items())


CAUGHT = [
    "targets of issue 3:",
    "See Issue #12 for the plan.",
    "the issue's 0.9 target",
    "run once on a lent H100",
    "the borrowed machine's output folder",
    "at the seed's size",
    "the seed blog post",
    "def test_seed_and_example_learns_and():",
    "the seed example's network",
    "def test_every_departure_changes_a_number_on_the_seeds_and_example():",
]
NOT_CAUGHT = [
    "--seed S: the random seed",
    "random_problem(sizes, seed=3)",
    "def test_seed_on_mazur_is_refused():",
    "tissue 3",
    "the blog's code",
    "a silent failure",
    "an excellent fit",
    "equivalent machines",
    "issues of precision",
]


def test_each_forbidden_phrase_is_caught():
    assert [line for line in CAUGHT if not hits(line)] == []


def test_ordinary_prose_is_not_caught():
    assert [line for line in NOT_CAUGHT if hits(line)] == []
