"""Output files of the commands: paths checked before any work, contents written atomically.

A path is used exactly as given, or refused with the reason. ``.npz`` files are written through a
file object, so NumPy never appends a suffix; the suffix is required anyway, so that ``--save`` never
overwrites a file of another kind. Every file is written to a temporary file in the same directory,
then renamed over the target (``os.replace``): an interrupted or failed write leaves the target as
it was and no temporary file behind. Ctrl-C and SIGTERM end the command through ``remove_partial``;
only a signal no program can catch (SIGKILL) leaves a hidden ``.NAME.*.tmp`` file.
"""

import contextlib
import json
import os
import secrets

from fcgrad.manual.errors import FcgradError

PARTIAL: set[str] = set()  # temporary files being written now: removed by ``remove_partial`` on Ctrl-C, SIGTERM


def remove_partial() -> None:
    """Remove every temporary file still being written (for an exit that skips the usual clean-up)."""
    for tmp in list(PARTIAL):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        PARTIAL.discard(tmp)


def check_output_path(path: str, option: str, suffix: str) -> str:
    """Refuse, before any work, a path that cannot receive the file; return it unchanged.

    Refused: an empty name, a directory (``/`` included) or a name ending in a separator, a name
    without ``suffix``, an existing target that is not a regular file, a missing parent directory,
    and a directory in which no file can be created (found by creating and removing one).
    """
    if not path:
        raise FcgradError(f"{option}: expected a file name ending in {suffix}, got an empty name")
    if path.endswith((os.sep, "/")) or os.path.isdir(path):
        raise FcgradError(f"{option}: expected a file name ending in {suffix}, got the directory {path!r}")
    if not os.path.basename(path).endswith(suffix) or os.path.basename(path) == suffix:
        raise FcgradError(
            f"{option}: expected a file name ending in {suffix} (the name is used exactly as given), got {path!r}"
        )
    if os.path.lexists(path) and not os.path.isfile(path):
        raise FcgradError(f"{option}: expected a regular file to write, got {path!r}, which exists and is not one")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise FcgradError(f"{option}: expected an existing directory to write {path!r} into, got none at {folder!r}")
    probe = _temporary_name(os.path.join(folder, "fcgrad-probe"))
    PARTIAL.add(probe)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise FcgradError(f"{option}: cannot create a file in {folder!r}: {exc.strerror or exc}") from None
    finally:
        PARTIAL.discard(probe)
    return path


def _temporary_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary name beside ``path``; on a normal exit it becomes ``path``, on any exception (Ctrl-C too)
    it is removed. The name keeps ``path``'s suffix, so a writer that picks its format from it (savefig) still can."""
    tmp = _temporary_name(path) + os.path.splitext(path)[1]
    PARTIAL.add(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        PARTIAL.discard(tmp)


@contextlib.contextmanager
def atomic_write(path: str):
    """Yield a binary file that becomes ``path`` only when the block ends normally (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask gives the usual permissions
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str, data: dict) -> None:
    with atomic_write(path) as f:
        f.write((json.dumps(data, indent=2) + "\n").encode("utf-8"))


def write_npz(path: str, write) -> None:
    """``write(file)`` fills the archive (``np.savez(file, ...)``) through a file object: the name stays exact."""
    with atomic_write(path) as f:
        write(f)
