"""Loading a user's file with a time limit, and with NumPy's global state as it was before.

A file may run its training script at import (no ``if __name__ == "__main__":``): it is audited if it
finishes loading within ``IMPORT_LIMIT_S``, else refused in one line naming the line it was running.
The limit is a real-time timer (``SIGALRM``) whose handler raises a private exception into the user's
code; it is armed only in the main thread and only when no other real-time timer is running (a test
runner's, say), and the previous handler is put back afterwards.

Whatever the file changes of NumPy's global state while it loads (``np.seterr``, ``np.seterrcall``,
``np.set_printoptions``, the legacy random state) is put back as it was, so that the audit computes
as it would for any other file.
"""

import contextlib
import signal
import threading
import traceback
from pathlib import Path

import numpy as np

from fcgrad.engine.user_code import in_folder
from fcgrad.manual.errors import FcgradError

# Ten seconds: a script meant to be imported defines its network in milliseconds, and a small demo run at
# import (a few hundred steps of a small net) still fits; a full training run does not, and the user learns
# it in seconds instead of waiting for it to end.
IMPORT_LIMIT_S = 10.0
# Once the limit is reached, the timer fires again at this interval: a file whose loop catches every
# exception (a bare ``except:``) still stops at the next firing it does not catch.
REFIRE_S = 0.5
MAIN_GUARD = 'if __name__ == "__main__":'


class _TooLong(BaseException):
    """Raised into the user's code by the timer: a BaseException, so that ``except Exception`` lets it through."""


@contextlib.contextmanager
def numpy_state_kept():
    """NumPy's error handling, error callback, print options and legacy random state, restored on the way out."""
    err, call, printing, rng = np.geterr(), np.geterrcall(), np.get_printoptions(), np.random.get_state()
    try:
        yield
    finally:
        np.seterr(**err)
        np.seterrcall(call)
        np.set_printoptions(**printing)
        np.random.set_state(rng)


def _running_line(exc: BaseException, path: Path) -> str:
    """``file:line`` of the deepest frame of ``exc`` in the user's folder (the file or a sibling it imports)."""
    folder = path.resolve().parent
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if in_folder(f.filename, folder)]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else str(path)


def _can_arm() -> bool:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return False
    return signal.getitimer(signal.ITIMER_REAL)[0] == 0.0  # another timer running: it is left alone


def execute(run, path: Path, limit: float = IMPORT_LIMIT_S) -> None:
    """``run()`` (executing the file), refused in one line once it has run ``limit`` seconds."""
    if not _can_arm():
        run()
        return
    armed = [True]  # cleared before the timer stops: a firing on the way out raises nothing

    def on_alarm(signum, frame):
        if armed[0]:
            raise _TooLong

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, limit, REFIRE_S)
        try:
            run()
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0.0)
    except _TooLong as exc:
        raise FcgradError(
            f"{_running_line(exc, path)}: loading {path.name} was still running after {limit:g} s, at this line: "
            f"the file trains at import; expected its script under {MAIN_GUARD}, so that importing it only "
            "defines the network"
        ) from None
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)
