"""``fcgrad audit --code`` over several files or a folder: one line per file, a summary, an exit status for all.

Each file is audited by the one-file command (``fcgrad audit --code FILE --json``) in a process of its own,
``jobs`` at a time, so that one file's crash, hang or change of global state cannot reach the others: a
process still running after ``timeout`` seconds is killed and its file reported as timed out. A folder
stands for its ``*.py`` files. A file that fits no protocol and is imported by another file of the run
(a sibling module of layers, say) is reported as a module of that file, not as a refusal.

Imports nothing heavy (no NumPy, no JAX): the processes do the audits.
"""

import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fcgrad.manual.errors import FcgradError

POLL_S = 0.05  # how often the running processes are looked at: a small delay on a run of seconds per file
ERROR_PREFIX = "fcgrad audit: error: "  # how the one-file command says its refusal on stderr
# statuses, in the summary's order; the first two are clean or not judged a failure
CLEAN, MODULE, FINDINGS, UNDECIDED, REFUSED, TIMED_OUT, CRASHED = (
    "clean", "module", "findings", "cannot tell", "refused", "timed out", "crashed",
)  # fmt: skip
ORDER = (CLEAN, FINDINGS, UNDECIDED, REFUSED, TIMED_OUT, CRASHED, MODULE)
SAID = {CLEAN: "clean", FINDINGS: "with findings", UNDECIDED: "that the problem cannot judge", REFUSED: "refused",
        TIMED_OUT: "timed out", CRASHED: "crashed", MODULE: "module(s) of another file"}  # fmt: skip


@dataclass
class Outcome:
    """One file's audit: its status and the one-file JSON (``report``), or its one-line ``error``."""

    path: str
    status: str
    report: dict | None = None
    error: str | None = None
    imported_by: list[str] = field(default_factory=list)
    seconds: float = 0.0


def files_of(paths: list[str]) -> list[str]:
    """The files to audit, in the order given, each folder as its ``*.py`` files (sorted, ``__init__.py`` left
    out); the same file named twice is audited once. Anything else is refused in one line."""
    out: dict[Path, str] = {}
    for given in paths:
        p = Path(given)
        if p.is_dir():
            found = sorted(f for f in p.glob("*.py") if f.is_file() and f.name != "__init__.py")
            if not found:
                raise FcgradError(f"--code {given}: the folder has no .py file; expected network files in it")
            for f in found:
                out.setdefault(f.resolve(), str(f))
        elif p.suffix == ".py" and p.is_file():
            out.setdefault(p.resolve(), given)
        else:
            raise FcgradError(f"--code: expected existing .py files or folders of them, got {given!r}")
    return list(out.values())


def _imported_names(path: str) -> set[str]:
    """The top-level module names a file imports (``import a.b`` and ``from a.b import c``: ``a``), wherever in it."""
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def importers(files: list[str]) -> dict[str, list[str]]:
    """``{file: [the files of the run, in its folder, that import it]}``."""
    imports = {f: _imported_names(f) for f in files}
    out: dict[str, list[str]] = {}
    for f in files:
        folder, stem = Path(f).resolve().parent, Path(f).stem
        out[f] = [g for g in files if g != f and Path(g).resolve().parent == folder and stem in imports[g]]
    return out


def _package_root() -> str:
    """The folder that holds this ``fcgrad``: each process audits with the same code as the command that started it."""
    return str(Path(__file__).resolve().parent.parent.parent)


def _die_with_parent():
    """A function run in each process before it starts (Linux): killed when the command that started it ends, so
    that no audit is left running after a Ctrl-C or a kill; None where the system has no such request."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        return None
    parent = os.getpid()
    set_death_signal = 1  # PR_SET_PDEATHSIG, from <linux/prctl.h>

    def request():
        prctl(set_death_signal, signal.SIGKILL)
        if os.getppid() != parent:  # the command ended before the request was made
            os._exit(1)

    return request


def _outcome(path: str, code: int, out: str, err: str, seconds: float) -> Outcome:
    if code == 0:
        try:
            report = json.loads(out)
        except json.JSONDecodeError:
            return Outcome(path, CRASHED, error="its audit's output is not the report's JSON", seconds=seconds)
        if report.get("findings") or not report.get("ok", False):
            status = FINDINGS
        else:
            status = UNDECIDED if report.get("cannot_tell") else CLEAN
        return Outcome(path, status, report=report, seconds=seconds)
    lines = [s for s in err.splitlines() if s.strip()]
    said = [s[len(ERROR_PREFIX) :] for s in lines if s.startswith(ERROR_PREFIX)]
    if code == 2 and said:  # noqa: PLR2004  (the one-file command's exit status for a refusal)
        return Outcome(path, REFUSED, error=said[-1], seconds=seconds)
    why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    last = lines[-1] if lines else "nothing on stderr"
    return Outcome(path, CRASHED, error=f"{why}: {last}", seconds=seconds)


class _Running:
    """One file's process, its output going to temporary files (a pipe would fill and stall a long report)."""

    def __init__(self, path: str, command: list[str], env: dict, preexec) -> None:
        self.path = path
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.start = time.monotonic()
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err, env=env, preexec_fn=preexec
        )

    def read(self, stream) -> str:
        stream.seek(0)
        return stream.read().decode("utf-8", errors="replace")

    def finished(self, timeout: float) -> Outcome | None:
        code = self.process.poll()
        seconds = time.monotonic() - self.start
        if code is None and seconds < timeout:
            return None
        if code is None:
            self.process.kill()
            self.process.wait()
            outcome = Outcome(self.path, TIMED_OUT, error=f"still running after {timeout:g} s", seconds=seconds)
        else:
            outcome = _outcome(self.path, code, self.read(self.out), self.read(self.err), seconds)
        self.close()
        return outcome

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.out.close()
        self.err.close()


def audit_files(files: list[str], options: list[str], *, jobs: int, timeout: float, on_each=None) -> list[Outcome]:
    """Every file audited by ``fcgrad audit --code FILE --json *options``, ``jobs`` processes at a time.

    ``on_each(outcome)`` is called for each file in the order of ``files``, as soon as it and those before it
    are done (the lines are printed while the rest run)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
    preexec = _die_with_parent()
    by = importers(files)
    done: dict[int, Outcome] = {}
    running: dict[int, _Running] = {}
    waiting = list(range(len(files)))
    told = 0
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                k = waiting.pop(0)
                command = [sys.executable, "-m", "fcgrad", "audit", "--code", files[k], "--json", *options]
                running[k] = _Running(files[k], command, env, preexec)
            for k, r in list(running.items()):
                outcome = r.finished(timeout)
                if outcome is not None:
                    done[k] = _as_module(outcome, by[outcome.path])
                    del running[k]
            while told in done:
                if on_each is not None:
                    on_each(done[told])
                told += 1
            if running:
                time.sleep(POLL_S)
    finally:
        for r in running.values():
            r.close()
    return [done[k] for k in range(len(files))]


def _as_module(o: Outcome, imported_by: list[str]) -> Outcome:
    """A file refused for fitting no protocol, imported by another file of the run: a module of that file."""
    from fcgrad.audits.code.load import NO_PROTOCOL  # here: the command starting the processes loads no NumPy

    if o.status == REFUSED and NO_PROTOCOL in (o.error or "") and imported_by:
        o.status, o.imported_by = MODULE, list(imported_by)
    return o


def line(o: Outcome) -> str:
    """The file's one line: clean and its protocol, its origins at their lines with their names, or why not; the
    paths under the working directory written from it, as the files were given."""
    here = os.path.join(os.getcwd(), "")
    return _line(o).replace(here, "") if here != os.sep else _line(o)


def _line(o: Outcome) -> str:
    protocol = f"{(o.report or {}).get('protocol')} protocol"
    if o.status == CLEAN:
        return f"{o.path}: clean ({protocol})"
    if o.status == FINDINGS:
        found = o.report.get("findings") or []
        where = "; ".join(_finding(f) for f in found) or "differences from JAX with no origin located"
        return f"{o.path}: {len(found)} finding(s) ({protocol}): {where}"
    if o.status == UNDECIDED:
        return f"{o.path}: no findings, but this problem cannot tell right from wrong ({protocol}): " + str(
            o.report["cannot_tell"][0]
        )
    if o.status == MODULE:
        return f"{o.path}: a module of {', '.join(o.imported_by)}, not a network"
    return f"{o.path}: {o.status}: {o.error}"


def _finding(f: dict) -> str:
    at = f"{f['file']}:{f['line']} " if f.get("file") and f.get("line") is not None else ""
    names = [d["name"] for d in f.get("diagnoses") or []]
    return f"{at}layer {f['layer']} {f['quantity']} ({names[0] if names else 'no catalogue entry'})"


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    return {s: sum(o.status == s for o in outcomes) for s in ORDER}


def summary(outcomes: list[Outcome]) -> str:
    n = counts(outcomes)
    parts = [f"{n[s]} {SAID[s]}" for s in ORDER if n[s]]
    return f"{len(outcomes)} file{'' if len(outcomes) == 1 else 's'}: {', '.join(parts)}"


def exit_status(outcomes: list[Outcome]) -> int:
    """2 when a file was refused, timed out or crashed; else 1 when one has a finding or cannot be judged; else 0."""
    n = counts(outcomes)
    if n[REFUSED] or n[TIMED_OUT] or n[CRASHED]:
        return 2
    return 1 if n[FINDINGS] or n[UNDECIDED] else 0


def as_json(outcomes: list[Outcome]) -> dict:
    """``{"files": [one object per file], "summary": {status: count, "exit": status}}``: a file audited carries the
    one-file JSON (``meta``, ``ok``, ``findings``, ...), any other its ``error`` or the files importing it."""
    files = []
    for o in outcomes:
        entry = {"path": o.path, "status": o.status, "seconds": round(o.seconds, 3)}
        if o.report is not None:
            entry.update(o.report)
        if o.error is not None:
            entry["error"] = o.error
        if o.imported_by:
            entry["imported_by"] = list(o.imported_by)
        files.append(entry)
    return {"files": files, "summary": {"files": len(outcomes), **counts(outcomes), "exit": exit_status(outcomes)}}


__all__ = ["Outcome", "as_json", "audit_files", "exit_status", "files_of", "line", "summary"]
