"""Writing to the terminal: text any stream can encode, a reader that closed the pipe, throttled progress.

Progress goes to stderr only when stderr is a terminal and ``-q`` is not given: logs and pipes get
the report alone. It starts after ``PROGRESS_DELAY_S`` (short runs print nothing) and is redrawn
in place at most every ``PROGRESS_EVERY_S``.
"""

import os
import sys
import time

from fcgrad.reports.ascii import transliterate

PROGRESS_DELAY_S = 2.0  # a run shorter than this shows no progress
PROGRESS_EVERY_S = 0.5  # the line is redrawn at most this often


def to_ascii(text: str) -> str:
    """The ASCII rendering of a report (``transliterate``)."""
    return transliterate(text)


def encodable(text: str, stream) -> str:
    """``text`` itself when ``stream``'s encoding can write it, else its ASCII rendering."""
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except UnicodeEncodeError:
        return to_ascii(text)
    except LookupError:  # an encoding Python does not know: play safe
        return to_ascii(text)
    return text


def silence_stdout() -> None:
    """Point stdout's descriptor at /dev/null, as Python's documentation on SIGPIPE advises after EPIPE,
    so the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def write_out(text: str) -> bool:
    """Print ``text`` on stdout; False, quietly, when the reader closed the pipe (``fcgrad check | head -1``)."""
    try:
        sys.stdout.write(encodable(text, sys.stdout) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return False
    return True


def say(text: str) -> None:
    """One line on stderr (errors, notes); never raises on encoding or a closed stderr."""
    try:
        sys.stderr.write(encodable(text, sys.stderr) + "\n")
        sys.stderr.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass


def progress_enabled(quiet: bool, stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not quiet and bool(isatty and isatty())


class Progress:
    """``progress(done, total)`` for the engine: ``LABEL: step done/total (p%), elapsed, left`` on one line."""

    def __init__(self, label: str, stream=None, *, clock=time.monotonic):
        self.label, self.stream, self.clock = label, sys.stderr if stream is None else stream, clock
        self.start = clock()
        self.last = None  # when the line was last drawn

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.start < PROGRESS_DELAY_S:
            return
        if self.last is not None and now - self.last < PROGRESS_EVERY_S and done < total:
            return
        self.last = now
        elapsed = now - self.start
        frac = done / total if total else 1.0
        left = f", about {elapsed * (1 - frac) / frac:.0f} s left" if 0 < frac < 1 else ""
        line = f"{self.label}: step {done}/{total} ({100 * frac:.0f}%), {elapsed:.0f} s{left}"
        try:
            self.stream.write("\r" + line.ljust(79))
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """End the progress line, if one was drawn, so what follows starts on a fresh line."""
        if self.last is not None:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
