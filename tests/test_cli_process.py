"""What only a real process shows: Ctrl-C, a stdout that cannot encode the report, a reader that closed the pipe."""

import os
import signal
import subprocess
import sys
import time

from conftest import REPO_ROOT

TIMEOUT_S = 120  # generous: the machine running the suite may be busy; a normal run takes a few seconds


def _start(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fcgrad", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_ctrl_c_during_a_long_run_prints_one_line_exits_130_and_leaves_no_file(tmp_path):
    target = tmp_path / "run.npz"
    # 1,000,000 steps of the blog's network: a --save of about 272 MB, announced on stderr before the run starts
    proc = _start("check", "--steps", "1000000", "--save", str(target), stdout=subprocess.PIPE, text=True)
    try:
        note = proc.stderr.readline()
        assert "note: --save" in note, note
        time.sleep(1.0)  # into the run
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err == "fcgrad check: interrupted\n"
    assert out == ""
    assert list(tmp_path.iterdir()) == []  # neither the archive nor its temporary file


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
    with proc.stderr:
        err = proc.stderr.read()
    proc.wait(timeout=TIMEOUT_S)
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


# Ctrl-C while the --save archive is being written: the program ends, and the half-written file goes with it.
CTRL_C_WHILE_SAVING = """
import os, signal, sys
import fcgrad.engine.run
from fcgrad.cli.main import main

def save_interrupted(f, p, histories):
    f.write(b"PK half an archive")
    f.flush()
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(10_000_000):  # the interrupt is handled here, mid-write
        pass
    print("the write went on")

fcgrad.engine.run.save_npz = save_interrupted
sys.argv = ["fcgrad", "check", "--steps", "3", "--save", sys.argv[1]]
sys.exit(main())
"""


def test_ctrl_c_while_saving_leaves_no_file(tmp_path):
    target = tmp_path / "run.npz"
    proc = subprocess.run(
        [sys.executable, "-c", CTRL_C_WHILE_SAVING, str(target)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr == "fcgrad check: interrupted\n" and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []
