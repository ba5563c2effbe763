"""The documents' fenced blocks: Python snippets run against an install, sample outputs compared with fresh runs.

A sample output is the first plain fenced block after a sentence of README.md, a page of docs/ or examples/README.md,
and a command or snippet that prints it now. It is compared line by line: exactly, except the numbers
that are rounding noise (an ok row's max|Δ| and rel, a catalogue match's residual "(to X)", the verdict's
worst rel). Those differ from machine to machine, so on each side they only have to be within their
tolerance. tests/test_readme.py runs the comparison; from the repository root,

    python -m tests.readme_samples                 lists the samples that differ from a fresh run, line by line
    python -m tests.readme_samples --write [NAME]  rewrites the blocks (all, or the named ones) from fresh runs
"""

import contextlib
import difflib
import functools
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLES_README = ROOT / "examples" / "README.md"
CHECK_DOC = ROOT / "docs" / "check.md"  # README's reference of `fcgrad check`, moved there
AUDIT_DOC = ROOT / "docs" / "audit.md"  # `fcgrad audit` on the blog's code
RUN_TIMEOUT_S = 600  # a fresh `fcgrad check` or `fcgrad audit` of 10,000 steps: about 10 s on a busy 2-core machine

# --- fenced blocks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    lang: str  # "python", or "" for a plain block (a sample output, a command)
    start: int  # offsets of the block's text (inside the fences) in the document
    end: int
    text: str


def fenced_blocks(markdown: str) -> list[Block]:
    """Every ``` block at the start of a line, in order."""
    blocks, opened = [], None
    for m in re.finditer(r"^```(\w*)[^\n]*\n", markdown, flags=re.M):
        if opened is None:
            opened = m
        else:
            blocks.append(Block(opened.group(1), opened.end(), m.start(), markdown[opened.end() : m.start()]))
            opened = None
    return blocks


def python_snippets(doc: Path) -> list[str]:
    """The document's Python blocks that run as written (not an outline with ``...`` lines)."""
    code = [b.text for b in fenced_blocks(doc.read_text(encoding="utf-8")) if b.lang == "python"]
    return [c for c in code if not re.search(r"^\s*\.\.\.\s*$", c, flags=re.M)]


# The snippets run as a user who cloned the repository and installed fcgrad runs them: from the repository root
# (a path such as examples/blog_shaped_net.py is relative to it); one that loads run.npz from the scratch folder
# where `fcgrad check --save run.npz` wrote it. The script lies outside the repository, so `import fcgrad` finds
# the installed package; it says so and stops if it finds the checkout instead.
SNIPPET_RUNNER = """
import json, os, sys
from pathlib import Path

import fcgrad

root, scratch, doc, snippets = sys.argv[1:5]
if Path(fcgrad.__file__).resolve().is_relative_to(Path(root).resolve()):
    sys.exit(f"fcgrad came from the checkout ({fcgrad.__file__}), not from the installed package")
for i, code in enumerate(json.loads(Path(snippets).read_text(encoding="utf-8"))):
    os.chdir(scratch if "run.npz" in code else root)
    namespace = {"__name__": f"snippet{i}"}
    exec(compile(code, f"{doc}, python block {i}", "exec"), namespace)
    for name, fn in list(namespace.items()):
        if name.startswith("test_") and callable(fn):
            fn()
    print(f"{doc}, python block {i}: ran")
"""


def run_snippets(python: Path, doc: Path, scratch: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Every runnable Python block of ``doc``, in one process of ``python`` (an environment with fcgrad installed);
    when a block reads run.npz, after ``fcgrad check --steps 3 --save run.npz`` in ``scratch`` with that
    environment's ``fcgrad`` command, as the document says to run it."""
    snippets = python_snippets(doc)
    if any("run.npz" in code for code in snippets):
        save = subprocess.run(
            [str(python.parent / "fcgrad"), "check", "--steps", "3", "--save", "run.npz"],
            cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if save.returncode != 0:
            return save
    (scratch / "snippets.json").write_text(json.dumps(snippets), encoding="utf-8")
    (scratch / "run_snippets.py").write_text(SNIPPET_RUNNER, encoding="utf-8")
    cmd = [str(python), str(scratch / "run_snippets.py"), str(ROOT), str(scratch), doc.relative_to(ROOT).as_posix()]
    return subprocess.run(
        [*cmd, str(scratch / "snippets.json")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


# --- rounding noise ---------------------------------------------------------------------------------------------

NUMBER = r"\d(?:\.\d+)?e[+-]\d+"


@dataclass(frozen=True)
class Noise:
    """Numbers that are rounding noise: the ``masked`` groups of ``pattern`` are not compared, but ``within``
    (given the match) must hold for them on each side."""

    pattern: re.Pattern
    masked: tuple[str, ...]
    within: Callable[[re.Match], bool]
    bound: str  # the rule, for messages


def _tolerances():
    from fcgrad.derivation.checker import DERIVATION_ABS_TOL, DERIVATION_REL_TOL
    from fcgrad.diagnosis.catalogue import SIGNATURE_REL_TOL
    from fcgrad.engine.tolerances import GRAD_REL_TOL_F64

    return DERIVATION_ABS_TOL, DERIVATION_REL_TOL, SIGNATURE_REL_TOL, GRAD_REL_TOL_F64


def _ok_term(m: re.Match) -> bool:
    abs_tol, rel_tol, _, _ = _tolerances()
    return float(m["rel"]) <= rel_tol or float(m["abs"]) <= abs_tol


# a row of fcgrad check's tables that passed: layer, quantity, max|Δ|, rel, tol, ok
OK_ROW = Noise(
    re.compile(rf"^  \S+\s+\S+\s+(?P<abs>{NUMBER})\s+(?P<rel>{NUMBER})\s+(?P<tol>{NUMBER})\s+ok$"),
    ("abs", "rel"),
    lambda m: float(m["abs"]) <= float(m["tol"]) and float(m["rel"]) <= float(m["tol"]),
    "an ok row's max|Δ| and rel at or below its tol",
)


def _ok_step_row(m: re.Match) -> bool:
    from fcgrad.engine.tolerances import TRAJ_ABS_TOL_F64

    return float(m["abs"]) <= float(m["tol"]) and float(m["tol"]) >= TRAJ_ABS_TOL_F64


# a trajectory row that passed: its tol is the bound at its worst step, max(1, max|param|) × the trajectory
# tolerance, and which step is the worst is rounding's choice: the tol is noise too, never below the tolerance
OK_STEP_ROW = Noise(
    re.compile(
        rf"^  \S+\s+\S+\s+(?P<abs>{NUMBER})\s+(?P<rel>{NUMBER})\s+(?P<tol>{NUMBER})\s+(?:global|local|shadow)\s+ok$"
    ),
    ("abs", "rel", "tol"),
    _ok_step_row,
    "an ok step row's max|Δ| at or below its tol, and its tol at or above the trajectory tolerance",
)
WORST_REL = Noise(
    re.compile(rf"worst gradient rel (?P<rel>{NUMBER})"),
    ("rel",),
    lambda m: float(m["rel"]) <= _tolerances()[3],
    "the worst gradient rel at or below the float64 gradient tolerance",
)
OK_TERM = Noise(
    re.compile(rf"(?P<abs>{NUMBER})\s+(?P<rel>{NUMBER}) ok\b"),
    ("abs", "rel"),
    _ok_term,
    "an ok term's rel or max|Δ| within the derivation checker's tolerances",
)
MATCH_RESIDUAL = Noise(
    re.compile(rf"\(to (?P<residual>{NUMBER})\)"),
    ("residual",),
    lambda m: float(m["residual"]) <= _tolerances()[2],
    "a catalogue match's residual at or below SIGNATURE_REL_TOL",
)


def masked(line: str, noise: tuple[Noise, ...]) -> tuple[str, list[str]]:
    """``line`` with its noise numbers replaced by ``~``, and the rules those numbers break."""
    spans, broken = [], []
    for n in noise:
        for m in n.pattern.finditer(line):
            spans += [m.span(g) for g in n.masked]
            if not n.within(m):
                broken.append(n.bound)
    for start, end in sorted(spans, reverse=True):
        line = line[:start] + "~" + line[end:]
    return line, broken


# --- the samples ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    doc: Path
    after: str  # the block is the first plain fenced block that starts after this text of the document
    produce: Callable[[], str]  # the fresh output
    noise: tuple[Noise, ...] = ()
    excerpt: bool = False  # the block shows some of the output's lines, in order; else all of them
    shared: str | None = None  # in the suite, the fixture that holds the fresh output, made once for every test

    def block(self, markdown: str | None = None) -> Block:
        markdown = self.doc.read_text(encoding="utf-8") if markdown is None else markdown
        at = markdown.find(self.after)
        if at < 0:
            raise LookupError(f"{self.doc.name}: the sample {self.name!r} follows {self.after!r}, which is gone")
        return next(b for b in fenced_blocks(markdown) if b.lang == "" and b.start > at)


def command_output(*args: str) -> str:
    """What ``fcgrad ARGS`` prints, run as a command from the repository root; an exit other than 0 raises."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "fcgrad", *args], cwd=ROOT, env=env, capture_output=True, timeout=RUN_TIMEOUT_S
    )
    out = done.stdout.decode("utf-8")
    if done.returncode != 0:
        raise RuntimeError(f"fcgrad {' '.join(args)}: exit {done.returncode}\n{out}{done.stderr.decode('utf-8')}")
    return out


@functools.cache
def check_output() -> str:
    return command_output("check")


@functools.cache
def audit_output() -> str:
    return command_output("audit")


def _snippet(doc: Path, containing: str) -> str:
    return next(code for code in python_snippets(doc) if containing in code)


CORRECT_TERM = 'g["y"] = (v.y - v.t) / v.x.shape[1]'
WRONG_TERM = 'g["y"] = v.y - v.t'  # the 1/N forgotten, as the README's sentence before the sample says


@functools.cache
def derivation_failure() -> str:
    """README's derivation snippet with WRONG_TERM for CORRECT_TERM: the failure its test raises."""
    code = _snippet(README, "assert_derivation_matches")
    if CORRECT_TERM not in code:
        raise LookupError(f"README's derivation snippet no longer holds {CORRECT_TERM!r} to plant the mistake in")
    namespace: dict = {}
    exec(compile(code.replace(CORRECT_TERM, WRONG_TERM), "README.md (mistake planted)", "exec"), namespace)
    try:
        namespace["test_my_derivation"]()
    except AssertionError as failure:
        return f"AssertionError: {failure}\n"
    raise AssertionError(f"with {WRONG_TERM!r}, the derivation check passed")


@functools.cache
def audit_code_lines(containing: str = "audit_code") -> str:
    """What README's first audit_code snippet (or the first holding ``containing``) prints, run from the root."""
    printed = io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(printed):
        exec(compile(_snippet(README, containing), "README.md", "exec"), {})
    return printed.getvalue()


def audit_code_section_lines() -> str:
    """What the snippet of README's section on ``audit --code`` prints (the one that asserts the names)."""
    return audit_code_lines("assert [f.diagnoses[0].name for f in report.findings]")


@functools.cache
def one_method_output() -> str:
    return command_output("audit", "--code", "examples/one_method_net.py")


@functools.cache
def helper_failure() -> str:
    """examples/test_layernorm.py's planted mistake, as assert_backward_matches reports it."""
    from fcgrad.testing import assert_backward_matches

    spec = importlib.util.spec_from_file_location("layernorm_example", ROOT / "examples" / "test_layernorm.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        assert_backward_matches(example.forward, example.backward_without_mean_term, example.layer_shapes(5, 8), seed=0)
    except AssertionError as failure:
        return f"AssertionError: {failure}\n"
    raise AssertionError("the planted layer-normalisation mistake passed")


def snippet_shapes(doc: Path = README) -> dict:
    """The shapes README's softplus snippet hands ``assert_backward_matches``."""
    import ast

    code = _snippet(doc, "def test_softplus_layer")
    call = re.search(r"assert_backward_matches\(forward, backward, (\{[^}]*\})\)", code)
    if call is None:
        raise LookupError("README's softplus snippet no longer calls assert_backward_matches(forward, backward, {...})")
    return ast.literal_eval(call[1])


@functools.cache
def softplus_failure() -> str:
    """examples/test_softplus_layer.py's planted mistake on README's softplus snippet's shapes, as the helper
    reports it: the sample after that snippet."""
    from fcgrad.testing import assert_backward_matches

    spec = importlib.util.spec_from_file_location("softplus_example", ROOT / "examples" / "test_softplus_layer.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        assert_backward_matches(example.forward, example.backward_with_exp_derivative, snippet_shapes(), seed=0)
    except AssertionError as failure:
        return f"AssertionError: {failure}\n"
    raise AssertionError("the planted softplus mistake passed")


SAMPLES = [
    Sample("check", CHECK_DOC, "Sample output (`fcgrad check`", check_output, (OK_ROW, OK_STEP_ROW, WORST_REL)),
    Sample("audit", AUDIT_DOC, "On the blog's AND example:", audit_output, excerpt=True, shared="blog_audit"),
    Sample("derivation-failure", README, "the failure reads:", derivation_failure, (OK_TERM, MATCH_RESIDUAL)),
    Sample("audit-code", README, "report = audit_code(", audit_code_lines, (MATCH_RESIDUAL,)),
    Sample("audit-code-section", README, "and the catalogue names it:", audit_code_section_lines, (MATCH_RESIDUAL,)),
    Sample(
        "audit-code-one-method", README, "reads its backward in", one_method_output, (MATCH_RESIDUAL,), excerpt=True
    ),
    Sample("helper-failure", README, "fails with a message that names the gradient", softplus_failure),
    Sample("examples-helper-failure", EXAMPLES_README, "A failure names every wrong gradient", helper_failure),
    Sample("examples-derivation-failure", EXAMPLES_README, "the failure reads:", derivation_failure,
           (OK_TERM, MATCH_RESIDUAL)),
    Sample("examples-audit-code", EXAMPLES_README, "report = audit_code(", audit_code_lines, (MATCH_RESIDUAL,)),
]  # fmt: skip


# --- comparing and rewriting ------------------------------------------------------------------------------------


def _pairs(sample: Sample, shown: list[str], fresh: list[str]) -> tuple[list[tuple[int, int]], list[str]]:
    """(README line, fresh line) index pairs, and the README lines that have no counterpart."""
    if not sample.excerpt:
        if len(shown) != len(fresh):
            return [], [f"{len(shown)} lines shown, {len(fresh)} printed"]
        return list(zip(range(len(shown)), range(len(fresh)))), []
    pairs, j = [], 0
    for i, line in enumerate(shown):
        key = masked(line, sample.noise)[0]
        while j < len(fresh) and masked(fresh[j], sample.noise)[0] != key:
            j += 1
        if j == len(fresh):
            return pairs, [f"shown line {i + 1} is not printed (in this order): {line!r}"]
        pairs.append((i, j))
        j += 1
    return pairs, []


def differences(sample: Sample, shown: str, fresh: str) -> list[str]:
    """What keeps ``shown`` (the block) from being ``fresh`` (the output), one message per line; [] when none."""
    shown_lines, fresh_lines = shown.splitlines(), fresh.splitlines()
    pairs, problems = _pairs(sample, shown_lines, fresh_lines)
    if problems and not sample.excerpt:
        diff = difflib.unified_diff(shown_lines, fresh_lines, "shown", "printed", n=1, lineterm="")
        return [*problems, "\n".join(diff)]
    for i, j in pairs:
        (key_shown, broken_shown), (key_fresh, broken_fresh) = (
            masked(shown_lines[i], sample.noise),
            masked(fresh_lines[j], sample.noise),
        )
        if key_shown != key_fresh:
            problems.append(f"line {i + 1}:\n  shown   {shown_lines[i]}\n  printed {fresh_lines[j]}")
        problems += [f"line {i + 1}, shown: expected {rule}: {shown_lines[i]}" for rule in broken_shown]
        problems += [f"line {i + 1}, printed: expected {rule}: {fresh_lines[j]}" for rule in broken_fresh]
    return problems


def compare(sample: Sample, fresh: str | None = None) -> list[str]:
    """The sample's differences from ``fresh``, or from a run made now."""
    return differences(sample, sample.block().text, sample.produce() if fresh is None else fresh)


def rewritten(sample: Sample, shown: str, fresh: str) -> str:
    """The block's new text: the fresh output, or for an excerpt the fresh lines the shown ones stand for."""
    if not sample.excerpt:
        return fresh if fresh.endswith("\n") else fresh + "\n"
    shown_lines, fresh_lines = shown.splitlines(), fresh.splitlines()
    pairs, problems = _pairs(sample, shown_lines, fresh_lines)
    if problems:
        raise LookupError(f"{sample.name}: {problems[0]}; edit the excerpt by hand")
    return "".join(fresh_lines[j] + "\n" for _, j in pairs)


def write(sample: Sample) -> bool:
    """Rewrite the sample's block from a fresh run; True when it changed."""
    markdown = sample.doc.read_text(encoding="utf-8")
    block = sample.block(markdown)
    new = rewritten(sample, block.text, sample.produce())
    if new == block.text:
        return False
    sample.doc.write_text(markdown[: block.start] + new + markdown[block.end :], encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    writing = argv[:1] == ["--write"]
    names = argv[1:] if writing else argv
    unknown = set(names) - {s.name for s in SAMPLES}
    if unknown:
        print(f"expected sample names among {[s.name for s in SAMPLES]}, got {sorted(unknown)}", file=sys.stderr)
        return 2
    chosen = [s for s in SAMPLES if not names or s.name in names]
    differing = 0
    for sample in chosen:
        where = f"{sample.doc.relative_to(ROOT)}: {sample.name}"
        if writing:
            print(f"{where}: {'rewritten' if write(sample) else 'unchanged'}")
            continue
        problems = compare(sample)
        differing += bool(problems)
        print(f"{where}: {'differs' if problems else 'ok'}", *problems, sep="\n  ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
