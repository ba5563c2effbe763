"""A run that cannot fit is refused from its description, before any array of it exists."""

import pytest

from fcgrad.cli.main import main
from fcgrad.engine import check_run


@pytest.mark.parametrize("sizes", ["30000,30000,1", "100000,100000,1"])
def test_a_run_too_large_for_memory_is_refused_with_its_figures_before_anything_is_built(sizes, monkeypatch, capsys):
    def never(d):
        raise AssertionError("the arrays were built before the memory estimate refused the run")

    monkeypatch.setattr(check_run, "build", never)
    assert main(["check", "--sizes", sizes]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "memory: this run needs about" in err and "GB is available" in err


def test_a_toolbox_save_too_large_is_refused_with_its_figures(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(check_run, "build", lambda d: pytest.fail("built before the estimate"))
    save = str(tmp_path / "a.npz")
    assert main(["check", "--spec", "4000-4000-1", "--optimizer", "adam", "--steps", "100000", "--save", save]) == 2
    assert "--save histories" in capsys.readouterr().err and not list(tmp_path.iterdir())
