"""``fcgrad bench`` cut short, as benchmarks/README.md says: its ``--json`` is written once, when the run ends, so
Ctrl-C or SIGTERM leaves no file of its own and a file already at the path as it was; ``--checkpoint`` keeps
what was measured, marked partial. A real process each time: the signal handler is the program's own."""

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT

from fcgrad.cli.main import main

TIMEOUT_S = 120  # generous: the machine running the suite may be busy; each process starts in a few seconds
pytestmark = [pytest.mark.timeout(3 * TIMEOUT_S), pytest.mark.slow]

# The suite is replaced by one that measures a row, hands it to the checkpoint the command gave it (if any),
# announces itself by creating argv[1] and waits there for the signal: no timing is guessed.
BENCH_CUT_SHORT = """
import sys, time
import fcgrad.benchmarks.suite as suite
from fcgrad.cli.main import main

ready = sys.argv[1]

def one_row_then_wait(settings, progress, checkpoint=None):
    if checkpoint is not None:
        checkpoint([{"variant": "manual", "spec": "2-4-1"}])
    open(ready, "w").close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the signal is handled here
        time.sleep(0.01)
    print("the program went on")
    return []

suite.run = one_row_then_wait
sys.argv = ["fcgrad", "bench", "--quick", "--device", "cpu", *sys.argv[2:]]
sys.exit(main())
"""

ENDINGS = [
    pytest.param(signal.SIGINT, "fcgrad bench: interrupted", 130, id="ctrl-c"),
    pytest.param(signal.SIGTERM, "fcgrad bench: terminated", 143, id="sigterm"),
]


def _cut_short(tmp_path, signum, *options: str) -> tuple[int, str]:
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", BENCH_CUT_SHORT, str(ready), *options], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None:
                out, err = proc.communicate(timeout=TIMEOUT_S)
                raise AssertionError(f"ended (exit {proc.returncode}) before it could be signalled: {out}{err}")
            assert time.monotonic() < deadline, f"not ready after {TIMEOUT_S} s"
            time.sleep(0.01)  # polling for the file, not waiting for the run
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
    assert out == "", out  # the program did not go on, and printed no table
    return proc.returncode, err.splitlines()[-1]


@pytest.mark.parametrize("signum,line,code", ENDINGS)
def test_a_bench_cut_short_leaves_no_json_of_its_own(tmp_path, signum, line, code):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    returncode, last = _cut_short(tmp_path, signum, "--json", str(out_dir / "bench.json"))
    assert (returncode, last) == (code, line)
    assert list(out_dir.iterdir()) == []  # neither the file nor a temporary one


def test_a_bench_cut_short_leaves_an_earlier_file_as_it_was(tmp_path):
    earlier = tmp_path / "bench.json"
    earlier.write_text('{"rows": ["an earlier run"]}')
    returncode, _ = _cut_short(tmp_path, signal.SIGINT, "--json", str(earlier))
    assert returncode == 130
    assert earlier.read_text() == '{"rows": ["an earlier run"]}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "ready"]


def test_checkpoint_keeps_what_was_measured_marked_partial(tmp_path):
    path = tmp_path / "bench.json"
    returncode, last = _cut_short(tmp_path, signal.SIGTERM, "--checkpoint", "--json", str(path))
    assert (returncode, last) == (143, "fcgrad bench: terminated")
    kept = json.loads(path.read_text())
    assert kept["partial"] is True and kept["rows"] == [{"variant": "manual", "spec": "2-4-1"}]


def test_checkpoint_without_json_is_refused_in_one_line(capsys):
    assert main(["bench", "--quick", "--checkpoint"]) == 2
    err = capsys.readouterr().err
    expected = "--checkpoint: expected --json PATH to rewrite after every workload, got no --json"
    assert err == f"fcgrad bench: error: {expected}\n"
