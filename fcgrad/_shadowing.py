"""Is ``import manual`` (or ``reference``, ``crosscheck``) about to load fcgrad's own package?

fcgrad is installed as several top-level import names beside ``fcgrad`` itself. A module of
the same name earlier on ``sys.path`` (a ``reference.py`` in the working directory, say) would
be imported in its place and fail later with a puzzling error; this finds it first.
"""

import importlib.util
import sys
from pathlib import Path

INSTALLED_NAMES = ("fcgrad", "manual", "reference", "crosscheck", "benchmarks")
GUARDED = ("manual", "reference", "crosscheck")  # what ``import fcgrad`` and its public names rely on


def home() -> Path:
    """The folder holding ``fcgrad/`` and its sibling packages (site-packages, or the source tree)."""
    return Path(__file__).resolve().parent.parent


def _location(name: str) -> Path | None:
    """Where ``import name`` finds it now, without importing it; None when that cannot be told."""
    try:
        spec = importlib.util.find_spec(name)
    except ValueError:  # in sys.modules without a __spec__ (a stand-in put there by hand)
        found = getattr(sys.modules.get(name), "__file__", None)
        return Path(found).resolve() if found else None
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("built-in", "frozen"):
        return Path(spec.origin).resolve()
    locations = list(spec.submodule_search_locations or [])
    return Path(locations[0]).resolve() if locations else None


def shadowing(name: str, root: Path) -> Path | None:
    """The file or folder that ``import name`` loads instead of ``root/name``, or None when it is ours."""
    where = _location(name)
    if where is None:
        return None
    ours = (root / name).resolve()
    return None if ours in where.parents else where


def assert_not_shadowed(names=GUARDED, root: Path | None = None) -> None:
    """Raise one ImportError naming the first module that hides one of fcgrad's packages."""
    root = home() if root is None else root
    for name in names:
        where = shadowing(name, root)
        if where is not None:
            raise ImportError(
                f"fcgrad: 'import {name}' loads {where} instead of fcgrad's own {name} package in {root}; "
                f"rename or move {where}, or run from a directory without it "
                f"(fcgrad installs the import names {', '.join(INSTALLED_NAMES)})"
            )
