"""Calling a user's code: an exception inside it becomes one line naming the user's file and line, never fcgrad's."""

import ast
import functools
import inspect
import traceback
from pathlib import Path

from fcgrad.manual.errors import FcgradError


def source_file(fn) -> str | None:
    """The file a function was defined in, or None for builtins."""
    try:
        return inspect.getsourcefile(inspect.unwrap(fn))
    except TypeError:
        return None


def _code(obj):
    """The code object of a function, a bound method, a static or class method; None for anything else."""
    obj = getattr(obj, "__func__", obj)
    try:
        obj = inspect.unwrap(obj)
    except ValueError:
        return None
    return getattr(obj, "__code__", None)


@functools.lru_cache(maxsize=64)
def _class_lines(path: str, mtime: float) -> dict[str, int]:
    """``qualname -> line`` of every ``class`` statement of a file (``mtime``: a rewritten file is read again)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    lines: dict[str, int] = {}

    def visit(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}"
                lines.setdefault(name, child.lineno)
                visit(child, f"{name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{prefix}{child.name}.<locals>.")

    visit(tree, "")
    return lines


def definition(obj, file: str | None = None) -> str | None:
    """``path:line`` of the ``def`` or ``class`` statement of a user's function, method or class; None if unknown.

    Read from code objects, so it works for a module that was executed from a file but is not (or no
    longer) in ``sys.modules``, where ``inspect.getsourcelines`` of a class gives up; a class without a
    function of its own is looked up in ``file``.
    """
    if isinstance(obj, type):
        codes = [_code(v) for v in vars(obj).values()]
        codes = [c for c in codes if c is not None]
        if not codes and file is None:
            return None
        path = codes[0].co_filename if codes else file
        try:
            line = _class_lines(path, Path(path).stat().st_mtime).get(obj.__qualname__)
        except OSError:
            line = None
        if line is None and not codes:
            return None
        return f"{path}:{line or min(c.co_firstlineno for c in codes)}"
    code = _code(obj)
    return None if code is None else f"{code.co_filename}:{code.co_firstlineno}"


def in_folder(filename: str, folder: Path) -> bool:
    """Whether a frame's file lies directly in ``folder`` (never ``<frozen importlib._bootstrap>`` and the like)."""
    return not filename.startswith("<") and Path(filename).resolve().parent == folder


def where(exc: BaseException, filename: str | None, fallback: str | None = None) -> str:
    """``path:line`` of the deepest frame of ``exc`` in ``filename`` or in a module beside it (the user's own
    sibling module, which the file imports: the error is where that module raised it).

    With no frame there (a call that failed before entering the user's code: wrong arguments), ``fallback``
    (the definition of what was called) or else ``filename`` itself; the deepest frame at all when
    ``filename`` is None.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    if filename is not None:
        folder = Path(filename).resolve().parent
        mine = [f for f in frames if in_folder(f.filename, folder)]
        if not mine:
            return fallback or filename
        frames = mine
    if not frames:
        return fallback or filename or "<unknown>"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def user_error(what: str, exc: BaseException, filename: str | None, fallback: str | None = None) -> FcgradError:
    """``FcgradError("FILE:LINE: <what> raised TypeError: ...")``: one line, the user's location first."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, SyntaxError):
        message = exc.msg
    return FcgradError(f"{where(exc, filename, fallback)}: {what} raised {type(exc).__name__}: {message}")


def call(what: str, fn, *args, filename: str | None = None, **kwargs):
    """``fn(*args, **kwargs)``; any exception but FcgradError comes back as ``user_error``.

    The line named is the deepest one of ``filename`` (default: the file ``fn`` was defined in) that the
    exception passed through, or the definition of ``fn`` when it never entered that file.
    """
    try:
        return fn(*args, **kwargs)
    except FcgradError:
        raise
    except Exception as exc:  # the user's code may raise anything; it is reported, never a crash of fcgrad
        file = filename or source_file(fn)
        here = definition(fn)
        fallback = here if here is not None and file is not None and _same_file(here, file) else None
        raise user_error(what, exc, file, fallback) from exc


def _same_file(location: str, filename: str) -> bool:
    return Path(location.rsplit(":", 1)[0]).resolve() == Path(filename).resolve()
