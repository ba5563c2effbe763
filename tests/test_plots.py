"""``--plot``: figures of check and audit; matplotlib and the output path checked before any work; written
atomically. matplotlib is in the test extra: these tests run, never skip."""

import sys
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest

from fcgrad.audits.blog import audit
from fcgrad.audits.code import audit_code
from fcgrad.cli.main import main
from fcgrad.engine.compare import Row
from fcgrad.engine.problems import and_example
from fcgrad.engine.run import check
from fcgrad.manual.blog_code import BlogDepartures
from fcgrad.manual.errors import FcgradError
from fcgrad.reports.plots import check_plot_target, per_step_maxdiff, plot_audit, plot_check, plot_code_audit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STEPS = 20
BLOG = str(Path(__file__).resolve().parent / "fixtures" / "blog_net.py")


def _is_png(path) -> bool:
    return Path(path).read_bytes()[:8] == PNG_MAGIC


def test_plot_check_draws_both_losses_and_every_row(tmp_path):
    report = check(and_example().with_options(steps=STEPS), finite_differences=False, keep_history=True)
    out = plot_check(report, str(tmp_path / "check.png"))
    assert _is_png(out)


def test_plot_audit_draws_the_blog_codes_drift(tmp_path):
    report = audit(and_example().with_options(steps=STEPS), BlogDepartures(), keep_history=True)
    assert _is_png(plot_audit(report, str(tmp_path / "audit.png")))


def test_plot_code_audit_draws_the_files_drift(tmp_path):
    assert _is_png(plot_code_audit(audit_code(BLOG, steps=STEPS), str(tmp_path / "code.svg").replace(".svg", ".png")))


def test_per_step_maxdiff_is_the_largest_difference_of_each_step():
    w_manual = np.zeros((3, 2, 2))
    w_reference = np.zeros((3, 2, 2))
    w_reference[1, 0, 1] = 1e-9  # step 1: one entry differs
    w_reference[2] = -3e-7  # step 2: every entry differs
    rows = [Row(0, "w", 0.0, 0.0, 1e-12, True)]
    per, limit = per_step_maxdiff({"w0_manual": w_manual, "w0_reference": w_reference}, rows)["layer 0 w"]
    np.testing.assert_allclose(per, [0.0, 1e-9, 3e-7], rtol=1e-15)
    assert limit == 1e-12


def test_per_step_maxdiff_prefers_the_engines_arrays():
    rows = [Row(-1, "loss", 0.0, 0.0, 1e-12, True)]
    given = np.array([1e-16, 2e-16])
    per, _ = per_step_maxdiff({"maxdiff_loss": given}, rows)["loss"]
    np.testing.assert_array_equal(per, given)


def test_a_report_without_histories_is_refused(tmp_path):
    report = check(and_example().with_options(steps=2), finite_differences=False)
    with pytest.raises(FcgradError, match=r"keep_history=True"):
        plot_check(report, str(tmp_path / "x.png"))


@pytest.mark.parametrize(
    "name, expected",
    [("x.txt", "expected a file name ending in .png, .pdf, .svg"), ("no/such/folder/x.png", "does not exist")],
    ids=["suffix", "folder"],
)
def test_a_bad_output_path_is_refused_before_any_work(tmp_path, name, expected):
    with pytest.raises(FcgradError, match=expected):
        check_plot_target(str(tmp_path / name))


def test_missing_matplotlib_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails as if absent
    with pytest.raises(FcgradError, match=r"needs matplotlib, which is not installed; install it with pip install"):
        check_plot_target(str(tmp_path / "x.png"))


# A failure while the figure is being written: the half-written file must never take the target's name.
COMMANDS = {
    "check": ["check", "--steps", str(STEPS), "-q"],
    "audit": ["audit", "--steps", str(STEPS), "-q"],
    "audit --code": ["audit", "--code", BLOG, "--steps", str(STEPS)],
}


@pytest.mark.parametrize("failure, code", [(OSError(28, "No space left on device"), 2), (KeyboardInterrupt(), 130)],
                         ids=["disk-full", "ctrl-c"])  # fmt: skip
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("existing", [None, b"an earlier figure"], ids=["new", "over-an-old-one"])
def test_a_plot_that_fails_mid_draw_leaves_nothing_behind(command, failure, code, existing, tmp_path, monkeypatch,
                                                          capsys):  # fmt: skip
    def half_then_fail(self, fname, *args, **kwargs):
        Path(fname).write_bytes(PNG_MAGIC + b"half a figure")
        raise failure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_then_fail)
    target = tmp_path / "figure.png"
    if existing is not None:
        target.write_bytes(existing)
    assert main([*COMMANDS[command], "--plot", str(target)]) == code
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback
    assert [p.name for p in tmp_path.iterdir()] == ([] if existing is None else ["figure.png"])
    if existing is not None:
        assert target.read_bytes() == existing  # the old figure untouched
