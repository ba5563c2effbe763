"""The prose cites only what exists: derivation.md's quoted lines, every relative link, path and document named."""

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
    now_at = [i for i, text in enumerate(lines, start=1) if fragment in text]
    assert fragment in lines[int(line) - 1], f"{path}:{line} no longer holds {fragment!r}; it stands at lines {now_at}"


def test_doc_links_only_to_existing_lines_and_quotes_most_of_them():
    links = ANY_LINK.findall(DOC.read_text(encoding="utf-8"))
    for path, line in links:
        assert int(line) <= len((ROOT / path).read_text(encoding="utf-8").splitlines()), f"{path}#L{line}"
    assert len(_quoted_links()) >= 12, "the derivation should tie each formula to its line of manual/"


# --- every relative link and every repository path cited in the prose exists ---------------------------------------

PROSE = [ROOT / "README.md", ROOT / "examples" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`([^`\s]+)`")
FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
# a path cited in inline code starts at the repository root with one of its top-level folders
TOP_LEVEL = ("fcgrad", "manual", "reference", "crosscheck", "benchmarks", "tests", "examples", "docs", ".ci")
CITED_PATH = re.compile(rf"^(?:{'|'.join(re.escape(t) for t in TOP_LEVEL)})/[\w./{{}},-]*$")


def _heading_anchors(markdown: str) -> set[str]:
    """The anchors a Markdown renderer gives the headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", FENCE.sub("", markdown), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def _expand_braces(path: str) -> list[str]:
    m = re.search(r"\{([^{}]+)\}", path)
    if not m:
        return [path]
    return [e for alt in m.group(1).split(",") for e in _expand_braces(path[: m.start()] + alt + path[m.end() :])]


def _links():
    for doc in PROSE:
        for target in LINK.findall(FENCE.sub("", doc.read_text(encoding="utf-8"))):
            if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto: are not the repository's
                yield pytest.param(doc, target, id=f"{doc.relative_to(ROOT)}->{target}"[:80])


def _cited_paths():
    for doc in PROSE:
        codes = INLINE_CODE.findall(FENCE.sub("", doc.read_text(encoding="utf-8")))
        for code in sorted({c for c in codes if CITED_PATH.match(c)}):
            yield pytest.param(code, id=f"{doc.relative_to(ROOT)}:{code}"[:80])


def _layout_files():
    """The files the layout tree (docs/design.md, "Layout", once README's) names under each top-level folder."""
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    tree = re.search(r"^## Layout\s+```\n(.*?)```", design, flags=re.S | re.M).group(1)
    folder = None
    for line in tree.splitlines():
        top = re.match(r"^([\w.]+/)", line)
        folder = top.group(1) if top else folder
        entry = re.match(r"^\s+([\w.]+\.\w+)\s", line)
        if entry and folder:
            yield folder + entry.group(1)


def test_prose_cites_links_and_paths():
    assert len(list(_links())) >= 10 and len(list(_cited_paths())) >= 10 and len(list(_layout_files())) >= 10


@pytest.mark.parametrize("path", list(_layout_files()))
def test_every_file_of_the_readme_layout_exists(path):
    assert (ROOT / path).is_file(), f"docs/design.md's layout names {path}, which is not in the repository"


@pytest.mark.parametrize("doc,target", list(_links()))
def test_every_relative_link_leads_somewhere_that_exists(doc, target):
    path, _, fragment = target.partition("#")
    dest = (doc.parent / path).resolve() if path else doc
    assert dest.is_relative_to(ROOT) and dest.exists(), f"{doc.name} links to {target}: no such file"
    if fragment and dest.suffix == ".md":
        assert fragment in _heading_anchors(dest.read_text(encoding="utf-8")), f"{dest.name} has no heading #{fragment}"
    elif fragment:
        line = re.fullmatch(r"L(\d+)", fragment)
        assert line and int(line.group(1)) <= len(dest.read_text(encoding="utf-8").splitlines()), target


@pytest.mark.parametrize("cited", list(_cited_paths()))
def test_every_repository_path_cited_in_the_prose_exists(cited):
    for path in _expand_braces(cited):
        assert (ROOT / path).exists(), f"{path} is cited but is not in the repository"


def test_heading_anchors_follow_the_renderers_rule():
    doc = "# `fcgrad check`\n## The blog's code, against its own math\n## Notes\n## Notes\n```\n# not a heading\n```"
    assert _heading_anchors(doc) == {"fcgrad-check", "the-blogs-code-against-its-own-math", "notes", "notes-1"}


def _documents_cited_by_code():
    for folder in ("fcgrad", "manual", "reference", "crosscheck", "benchmarks", "examples"):
        for source in sorted((ROOT / folder).rglob("*.py")):
            for cited in sorted(set(re.findall(r"[\w./-]+\.md\b", source.read_text(encoding="utf-8")))):
                yield pytest.param(source, cited, id=f"{source.relative_to(ROOT)}:{cited}")


@pytest.mark.parametrize("source,cited", list(_documents_cited_by_code()))
def test_every_document_a_docstring_or_comment_cites_exists(source, cited):
    assert (ROOT / cited).is_file() or (source.parent / cited).is_file(), f"{source.name} cites {cited}: not found"
