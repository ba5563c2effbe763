"""Loading a user's file with a time limit, and with NumPy's global state as it was before.

A file may run its training script at import (no ``if __name__ == "__main__":``): it is audited if it
finishes loading within ``IMPORT_LIMIT_S``, else refused in one line naming the line it was running.
The limit is a real-time timer (``SIGALRM``) whose handler raises a private exception into the user's
code; it is armed only in the main thread, a timer already running (a test runner's) keeps its time and its
handler, and the previous handler is put back afterwards.

Whatever the file changes of NumPy's global state while it loads (``np.seterr``, ``np.seterrcall``,
``np.set_printoptions``, the legacy random state) is put back as it was, so that the audit computes
as it would for any other file.
"""

import contextlib
import os
import signal
import threading
import time
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
# The least delay a timer already running is re-armed with (setitimer's 0 would disarm it): it fires at once.
REARM_S = 1e-3
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


def execute(run, path: Path, limit: float | None = None) -> None:
    """``run()`` (executing the file), refused in one line once it has run ``limit`` seconds (``IMPORT_LIMIT_S``).

    A real-time timer already running (a test runner's time limit) keeps its time: if it is due first, its own
    handler is called when it fires, and otherwise it is re-armed afterwards with what is left of it."""
    limit = IMPORT_LIMIT_S if limit is None else limit
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        run()  # signal handlers belong to the main thread: elsewhere the file loads without a limit
        return
    outer, outer_every = signal.getitimer(signal.ITIMER_REAL)
    ours_first = outer == 0.0 or limit < outer
    state = {"armed": True, "outer_fired": False}  # "armed" cleared before the timer stops: then nothing is raised
    start = time.monotonic()

    def on_alarm(signum, frame):
        if not state["armed"]:
            return
        if ours_first:
            raise _TooLong
        state["outer_fired"] = True  # the other timer's time: its handler, as if this one were not there
        signal.signal(signal.SIGALRM, previous)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGALRM)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, *((limit, REFIRE_S) if ours_first else (outer, 0.0)))
        try:
            run()
        finally:
            state["armed"] = False
            signal.setitimer(signal.ITIMER_REAL, 0.0)
    except _TooLong as exc:
        raise FcgradError(
            f"{_running_line(exc, path)}: loading {path.name} was still running after {limit:g} s, at this line: "
            f"the file trains at import; expected its script under {MAIN_GUARD}, so that importing it only "
            "defines the network"
        ) from None
    finally:
        state["armed"] = False
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0.0 and not state["outer_fired"]:  # the other timer, with what is left of its time
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), REARM_S), outer_every)
