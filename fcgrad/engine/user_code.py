"""Calling a user's code: an exception inside it becomes one line naming the user's file and line."""

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


def where(exc: BaseException, filename: str | None) -> str:
    """``path:line`` of the deepest frame of ``exc`` in ``filename`` (the deepest frame at all when None)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    if filename is not None:
        target = Path(filename).resolve()
        mine = [f for f in frames if Path(f.filename).resolve() == target]
        frames = mine or frames
    if not frames:
        return filename or "<unknown>"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def user_error(what: str, exc: BaseException, filename: str | None) -> FcgradError:
    """``FcgradError("FILE:LINE: <what> raised TypeError: ...")``: one line, the user's location first."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, SyntaxError):
        message = exc.msg
    return FcgradError(f"{where(exc, filename)}: {what} raised {type(exc).__name__}: {message}")


def call(what: str, fn, *args, filename: str | None = None, **kwargs):
    """``fn(*args, **kwargs)``; any exception but FcgradError comes back as ``user_error``."""
    try:
        return fn(*args, **kwargs)
    except FcgradError:
        raise
    except Exception as exc:  # the user's code may raise anything; it is reported, never a crash of fcgrad
        raise user_error(what, exc, filename or source_file(fn)) from exc
