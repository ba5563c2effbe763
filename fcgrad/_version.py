"""fcgrad's version: from the installed distribution's metadata, or from pyproject.toml in the source tree."""

import importlib.metadata
import tomllib
from pathlib import Path

UNKNOWN = "0+unknown"


def _installed(package_dir: Path) -> str | None:
    """The installed distribution's version, only when that distribution holds this very copy of fcgrad."""
    try:
        dist = importlib.metadata.distribution("fcgrad")
    except importlib.metadata.PackageNotFoundError:
        return None
    installed_init = Path(str(dist.locate_file("fcgrad/__init__.py"))).resolve()
    return dist.version if installed_init == package_dir / "__init__.py" else None


def _from_pyproject(path: Path) -> str | None:
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return project.get("version") if project.get("name") == "fcgrad" else None


def version() -> str:
    package_dir = Path(__file__).resolve().parent
    return _installed(package_dir) or _from_pyproject(package_dir.parent / "pyproject.toml") or UNKNOWN
