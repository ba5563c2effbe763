"""Argument parsing shared by every ``fcgrad`` command: one-line errors, one sizes syntax, checked numbers.

Imports nothing heavy (no NumPy, no JAX), so ``--help``, ``--version`` and a bad option answer at once.
"""

import argparse
import math
import re

OUTPUT_NOTES = """\
output:
  the report goes to stdout (in ASCII when stdout cannot encode it); errors and notes go to stderr,
  one line each. A run longer than a few seconds shows its progress on stderr when stderr is a
  terminal, not under -q. --save and --json PATH are checked before the run and written atomically."""

EXIT_CHECK = f"""{OUTPUT_NOTES}

exit codes:
  0    manual and JAX agree on every compared number
  1    a comparison failed (a MISMATCH row), or a training run diverged
  2    bad input, or a run that cannot be done here (one line on stderr)
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM)"""

EXIT_AUDIT = f"""{OUTPUT_NOTES}

exit codes:
  0    the audit ran (whatever it found, unless --strict)
  1    with --strict: the audit found a departure or an unexplained difference
  2    bad input, or a run that cannot be done here (one line on stderr)
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM)"""

EXIT_BENCH = """\
exit codes:
  0    the benchmark ran
  2    bad input, or a run that cannot be done here (one line on stderr)
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM)"""

EXIT_TOP = """\
exit codes (every command):
  0    success (check: manual and JAX agree)
  1    check: a comparison failed; audit --strict: a finding
  2    bad input, or a run that cannot be done here (one line on stderr)
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM)"""

SIZES_EXAMPLE = "2,4,1 or 2-4-1"


_GIVEN = "_options_given"  # the namespace's record of the options read so far, removed once parsing ends


def _shown(value) -> str:
    """A value as the user wrote it, near enough: widths as ``2-4-1``, a list space-separated."""
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "-".join(map(str, value))
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


class StoreOnce(argparse._StoreAction):
    """argparse's ``store``, except that an option given twice with different values is refused, naming it: the
    last one would otherwise win in silence (``--optimizer adam --optimizer sgd`` running SGD)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault(_GIVEN, {})
        said = option_string if self.nargs == "?" and values is self.const else f"{option_string} {_shown(values)}"
        if self.dest in given and given[self.dest][1] != values:
            raise argparse.ArgumentError(
                self, f"given twice with different values ({given[self.dest][0]}, then {said}); expected it once"
            )
        given[self.dest] = (said, values)
        super().__call__(parser, namespace, values, option_string)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, ``PROG: error: MESSAGE``, and exit 2; an option
    given twice with different values is one of them (the same value twice is taken).

    ``add_subparsers`` builds subcommands with ``type(self)``, so they inherit this behaviour.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", None, StoreOnce)
        self.register("action", "store", StoreOnce)

    def parse_known_args(self, args=None, namespace=None):
        parsed, extra = super().parse_known_args(args, namespace)
        parsed.__dict__.pop(_GIVEN, None)
        return parsed, extra

    def error(self, message: str):
        one_line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {one_line} (see {self.prog} --help)\n")


def parse_sizes(text: str) -> tuple[int, ...]:
    """Layer widths written ``2,4,1`` or ``2-4-1`` (one separator throughout) -> ``(2, 4, 1)``.

    Only the syntax is checked here: the widths' values are checked where the problem is built,
    with the same messages as the Python API.
    """
    text = text.strip()
    sep = "," if "," in text else "-"  # a comma form may hold a negative width, refused later with its value
    parts = text.split(sep)
    if not all(re.fullmatch(r"-?\d+" if sep == "," else r"\d+", p.strip()) for p in parts):
        raise ValueError(f"expected layer widths such as {SIZES_EXAMPLE}, got {text!r}")
    return tuple(int(p) for p in parts)


def sizes_arg(text: str) -> tuple[int, ...]:
    """``type=`` for ``--sizes``."""
    try:
        return parse_sizes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_float(text: str) -> float:
    """``type=`` for tolerances and the like: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def seed_arg(text: str) -> int:
    """``type=`` for ``--seed``: a non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value
