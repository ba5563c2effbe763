"""What only a real process shows: Ctrl-C and SIGTERM, a stdout that cannot encode the report, a closed pipe."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT

TIMEOUT_S = 120  # generous: the machine running the suite may be busy; a normal run takes a few seconds
# a test waits on its process at most twice (ready, then done): the suite's limit sits above both
pytestmark = [pytest.mark.timeout(3 * TIMEOUT_S), pytest.mark.slow]  # each starts Python and JAX: 3-5 s


def _start(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fcgrad", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stderr=subprocess.PIPE,
        **kwargs,
    )


# A signal from outside while the check runs (manual's training under way, JAX compiled and its threads alive)
# or while the --save archive is half written. The patched step announces itself by creating the file named in
# argv[2] and then waits; the test sends the signal once that file exists, so no timing is guessed.
SIGNAL_WHILE = """
import sys, time
import fcgrad.files.output
import fcgrad.manual
from fcgrad.cli.main import main

where, ready, target, wait_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

def announce_and_wait():
    open(ready, "w").close()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:  # the signal is handled here
        time.sleep(0.01)
    print("the program went on")

if where == "run":
    train = fcgrad.manual.train

    def train_then_wait(*args, **kwargs):
        run = train(*args, **kwargs)
        announce_and_wait()
        return run

    fcgrad.manual.train = train_then_wait
else:
    write_npz = fcgrad.files.output.write_npz

    def write_half_then_wait(f):
        f.write(b"PK half an archive")
        f.flush()
        announce_and_wait()

    fcgrad.files.output.write_npz = lambda path, write: write_npz(path, write_half_then_wait)
sys.argv = ["fcgrad", "check", "--steps", "100", "--save", target]
sys.exit(main())
"""

ENDINGS = [
    pytest.param(signal.SIGINT, "fcgrad check: interrupted\n", 130, id="ctrl-c"),
    pytest.param(signal.SIGTERM, "fcgrad check: terminated\n", 143, id="sigterm"),
]


def _wait_until_ready(proc: subprocess.Popen, ready) -> None:
    """Return as soon as the process has created ``ready``; fail if it ends or stalls first."""
    deadline = time.monotonic() + TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None:
            out, err = proc.communicate(timeout=TIMEOUT_S)
            raise AssertionError(f"ended (exit {proc.returncode}) before it could be signalled: {out}{err}")
        assert time.monotonic() < deadline, f"not ready after {TIMEOUT_S} s"
        time.sleep(0.01)  # polling for the file, not waiting for the run


@pytest.mark.parametrize("signum,line,code", ENDINGS)
@pytest.mark.parametrize("where", ["run", "save"])
def test_a_signal_during_the_run_or_the_save_prints_one_line_and_leaves_no_file(tmp_path, where, signum, line, code):
    out_dir, ready = tmp_path / "out", tmp_path / "ready"
    out_dir.mkdir()
    script = [sys.executable, "-c", SIGNAL_WHILE, where, str(ready), str(out_dir / "run.npz"), str(TIMEOUT_S / 2)]
    proc = subprocess.Popen(script, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_ready(proc, ready)
        being_written = [p.name for p in out_dir.iterdir()]
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
    if where == "save":  # the archive's hidden temporary file existed when the signal came
        assert len(being_written) == 1 and being_written[0].startswith(".run.npz."), being_written
    else:
        assert being_written == []
    assert proc.returncode == code, out + err
    assert err == line  # one line: no traceback, no "Exception ignored"
    assert out == ""  # the program did not go on
    assert list(out_dir.iterdir()) == []  # neither the archive nor its temporary file, hidden or not


def test_a_stdout_that_cannot_encode_the_report_gets_it_in_ascii():
    proc = _start("check", "--steps", "3", env={"PYTHONIOENCODING": "cp1252"}, stdout=subprocess.PIPE)
    out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err.decode(errors="replace")
    assert err == b""
    text = out.decode("ascii")  # every byte ASCII
    assert "OK" in text and "grad_w" in text and "max|" in text


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly():
    proc = _start("check", "--steps", "3", stdout=subprocess.PIPE)
    proc.stdout.close()  # as `fcgrad check | head -1` does, before the report is written
    _, err = proc.communicate(timeout=TIMEOUT_S)
    assert err == b""  # no traceback, no "Exception ignored" at exit
    assert proc.returncode == 0  # the verdict: the comparisons all ran and agree


# Ctrl-C landing inside a garbage-collection callback (JAX registers one): a KeyboardInterrupt raised there
# is printed as "Exception ignored" and the run goes on. The program must end anyway.
CTRL_C_IN_GC_CALLBACK = """
import gc, os, signal, sys
import fcgrad.engine.run
from fcgrad.cli.main import main

def check_interrupted_in_gc(*args, **kwargs):
    def callback(phase, info):
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # the interrupt is handled here, inside the callback
                pass
    gc.callbacks.append(callback)
    gc.collect()
    gc.callbacks.remove(callback)
    print("the run went on")
    sys.exit(0)

fcgrad.engine.run.check = check_interrupted_in_gc
sys.argv = ["fcgrad", "check", "--steps", "3"]
sys.exit(main())
"""


def test_ctrl_c_inside_a_garbage_collection_callback_still_ends_the_program():
    proc = subprocess.run(
        [sys.executable, "-c", CTRL_C_IN_GC_CALLBACK], cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr == "fcgrad check: interrupted\n" and proc.stdout == ""
