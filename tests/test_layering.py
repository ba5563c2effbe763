"""Who may import whom, read from the source with ``ast`` (nothing is imported).

One import name, fcgrad: the repository's top-level ``manual/``, ``reference/`` and ``benchmarks/``
install as ``fcgrad.manual``, ``fcgrad.reference`` and ``fcgrad.benchmarks``, so every file here is
named as it is installed. Every import counts: at module level, inside a function (a lazy import),
under an ``if`` or a ``try``; relative imports are resolved against the importing module's package.

The packages, lowest rank first (``RANKS``). A module imports its own package and packages of a
lower rank only, so two packages of one rank never import each other:

    0  manual, reference   the two sides; each knows only itself (and _version, the version string)
    1  diagnosis           names a mistake from the numbers of both sides: the catalogues
    2  engine              runs both sides on one problem and compares them, row by row
    3  derivation          a user's derivation checked term by term against JAX
       reports             text, JSON and plots of the engine's reports
       files               archives, data files, run metadata
    4  testing             the pytest helpers (they compose derivation's)
    5  audits              the blog's code and a user's network file against JAX
    6  cli                 the ``fcgrad`` command
    7  benchmarks          timings; they borrow the command line's argument parsing
    8  fcgrad              the package's own ``__init__`` and ``__main__``

Why diagnosis sits below the engine: the engine asks the diagnosis to name what failed (a failing
row of ``engine/run.py``, a failing step of ``engine/toolbox.py``), while the diagnosis needs
nothing of the engine: the two sides' numbers go in, names come out, judged by the catalogue's
own tolerances. Derivation, testing and audits sit above both, since each compares (the engine)
and then names (the diagnosis). The reports render the engine's results and sit above it; the
one table every report prints rows in lives beside ``Row`` in the engine, so that an engine
runner (the digits example) prints its rows without reaching up.
"""

import ast
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> the module name it installs as
FOLDERS = {
    "fcgrad": "fcgrad",
    "manual": "fcgrad.manual",
    "reference": "fcgrad.reference",
    "benchmarks": "fcgrad.benchmarks",
}
RANKS = {
    "fcgrad.manual": 0,
    "fcgrad.reference": 0,
    "fcgrad._version": 0,
    "fcgrad.diagnosis": 1,
    "fcgrad.engine": 2,
    "fcgrad.derivation": 3,
    "fcgrad.reports": 3,
    "fcgrad.files": 3,
    "fcgrad.testing": 4,
    "fcgrad.audits": 5,
    "fcgrad.cli": 6,
    "fcgrad.benchmarks": 7,
    "fcgrad": 8,
}
# Imports tolerated for now, as (importer, imported).
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


class Import(NamedTuple):
    importer: str
    imported: str
    where: str  # "manual/layer.py:12"

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.imported}"


def module_name(path: Path) -> tuple[str, bool]:
    """The installed name of a source file under ROOT, and whether it is a package's ``__init__``."""
    rel = path.relative_to(ROOT)
    parts = [FOLDERS[rel.parts[0]], *rel.with_suffix("").parts[1:]]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imports_in(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import anywhere in ``source``.

    ``from p import x`` names the module ``p.x`` when ``known`` holds it, else ``p``.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                found.append((f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base, node.lineno))
    return found


def _sources() -> dict[str, tuple[Path, bool]]:
    modules = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            name, is_package = module_name(path)
            modules[name] = (path, is_package)
    return modules


SOURCES = _sources()
MODULES = set(SOURCES)
IMPORTS = [
    Import(name, imported, f"{path.relative_to(ROOT).as_posix()}:{line}")
    for name, (path, is_package) in sorted(SOURCES.items())
    for imported, line in imports_in(path.read_text(encoding="utf-8"), name, is_package, MODULES)
]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _foreign_imports(package: str, third_party: set[str]) -> list[str]:
    """Imports of ``package``'s modules that are neither itself, the standard library nor ``third_party``."""
    bad = []
    for i in IMPORTS:
        top = i.imported.split(".")[0]
        if _within(i.importer, package) and not (
            _within(i.imported, package) or top in third_party or top in sys.stdlib_module_names
        ):
            bad.append(str(i))
    return bad


def _rank_key(module: str) -> str:
    """The entry of RANKS that ``module`` falls under: the longest one that is it or a package above it."""
    parts = module.split(".")
    return next(".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in RANKS)


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each import circle of ``graph`` as ``a -> b -> a``: one per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:  # v is the root of a component: everything above it on the stack
            component = set()
            while v not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for component in components:
        start = min(component)
        if len(component) == 1 and start not in graph.get(start, ()):
            continue
        # the shortest way from start back to itself inside the component
        paths = {w: [start, w] for w in sorted(graph[start]) if w in component}
        frontier = list(paths)
        while start not in paths:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w in component and w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
            frontier = nxt
        found.append(" -> ".join(paths[start]))
    return sorted(found)


# --- the reader itself ---------------------------------------------------------------------------------------------


def test_files_are_named_as_installed():
    assert module_name(ROOT / "manual" / "layer.py") == ("fcgrad.manual.layer", False)
    assert module_name(ROOT / "reference" / "__init__.py") == ("fcgrad.reference", True)
    assert module_name(ROOT / "benchmarks" / "suite.py") == ("fcgrad.benchmarks.suite", False)
    assert module_name(ROOT / "fcgrad" / "engine" / "run.py") == ("fcgrad.engine.run", False)


def test_the_reader_sees_lazy_guarded_and_relative_imports():
    source = (
        "import numpy as np\n"
        "from . import ascii\n"
        "from ..engine.compare import Row\n"
        "def text():\n"
        "    from fcgrad.cli import terminal\n"
        "try:\n"
        "    import jax.numpy\n"
        "except ImportError:\n"
        "    pass\n"
    )
    known = {"fcgrad.reports.ascii", "fcgrad.engine.compare", "fcgrad.cli.terminal"}
    assert sorted(imports_in(source, "fcgrad.reports.check", False, known)) == [
        ("fcgrad.cli.terminal", 5),
        ("fcgrad.engine.compare", 3),
        ("fcgrad.reports.ascii", 2),
        ("jax.numpy", 7),
        ("numpy", 1),
    ]


def test_cycles_are_found_and_spelled_as_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}, "f": set()}
    assert cycles(graph) == ["a -> b -> c -> a", "d -> d"]


# --- the rules -----------------------------------------------------------------------------------------------------


def test_manual_imports_only_numpy_the_standard_library_and_manual_itself():
    bad = _foreign_imports("fcgrad.manual", {"numpy"})
    assert not bad, "manual/ is NumPy only (never jax, reference or the rest of fcgrad):\n" + "\n".join(bad)


def test_reference_imports_only_jax_optax_numpy_the_standard_library_and_reference_itself():
    bad = _foreign_imports("fcgrad.reference", {"jax", "optax", "numpy"})
    assert not bad, "reference/ is JAX only (never manual or the rest of fcgrad):\n" + "\n".join(bad)


def test_every_import_of_fcgrad_names_a_module_that_exists():
    bad = [str(i) for i in IMPORTS if i.imported.split(".")[0] == "fcgrad" and i.imported not in MODULES]
    assert not bad, "no such module:\n" + "\n".join(bad)


def test_every_package_has_a_rank():
    packages = {name for name, (_, is_package) in SOURCES.items() if name.count(".") == 1 and is_package}
    assert packages - set(RANKS) == set(), "place each package in RANKS"


def test_there_is_no_import_cycle_among_fcgrads_modules():
    graph = {name: set() for name in MODULES}
    for i in IMPORTS:
        if i.imported in MODULES and (i.importer, i.imported) not in KNOWN_EXCEPTIONS:
            graph[i.importer].add(i.imported)
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(found)


def test_imports_go_downward_only():
    bad = []
    for i in IMPORTS:
        if i.imported.split(".")[0] != "fcgrad" or (i.importer, i.imported) in KNOWN_EXCEPTIONS:
            continue
        mine, theirs = _rank_key(i.importer), _rank_key(i.imported)
        if mine != theirs and RANKS[theirs] >= RANKS[mine]:
            bad.append(f"{i}  ({mine}, rank {RANKS[mine]}, may not import {theirs}, rank {RANKS[theirs]})")
    assert not bad, "imports that do not go down:\n" + "\n".join(bad)
