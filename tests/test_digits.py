"""The digits example: real data through both sides, every step compared, the same held-out labels."""

import json
import sys

import numpy as np
import pytest

from fcgrad.engine import digits
from fcgrad.engine.digits import DIGITS_SPEC, load_digits_columns, load_digits_pixels, run_digits, text
from fcgrad.engine.report_forms import from_digits
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.spec import parse_spec

# The data set: 1,797 images of 8×8 pixels, each pixel an integer 0..16 (scikit-learn's description of it), and
# this many images of each digit 0..9 (counted in scikit-learn's own load_digits()).
IMAGES_PER_DIGIT = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_are_scikit_learns_images_and_labels():
    pixels, labels = load_digits_pixels()
    assert pixels.shape == (1797, 64) and labels.shape == (1797,) and labels.dtype.kind == "i"
    assert np.bincount(labels).tolist() == IMAGES_PER_DIGIT
    assert set(np.unique(pixels)) <= set(range(17))  # integers 0..16 (floats that hold integers exactly)


def test_the_file_read_directly_gives_what_scikit_learns_loader_gives(monkeypatch):
    # read from the file scikit-learn ships; without it, scikit-learn's own loader: the same arrays either way
    direct = load_digits_pixels()
    assert digits._bundled_csv() is not None, "the file was not found: every run would import scikit-learn"
    monkeypatch.setattr(digits, "_bundled_csv", lambda: None)
    loaded = load_digits_pixels()
    for mine, theirs in zip(direct, loaded):
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype
        assert np.array_equal(mine, theirs)  # integers (0..16 and labels), read from the same text: exact


def test_digits_load_as_columns_with_a_held_out_fifth():
    x, t, x_test, labels = load_digits_columns()
    assert x.shape == (64, 1438) and t.shape == (10, 1438) and x_test.shape == (64, 359) and labels.shape == (359,)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.all(t.sum(axis=0) == 1)  # one-hot columns: integer-valued sums, exact
    assert parse_spec(DIGITS_SPEC)[0].n_in == 64 and parse_spec(DIGITS_SPEC)[-1].n_out == 10


@pytest.mark.slow
def test_digits_both_sides_agree_at_every_step_and_on_every_held_out_image():
    report = run_digits(epochs=2)  # 46 steps; the CLI runs 5 epochs
    assert report.check.steps == 2 * 23  # 1438 images in batches of 64: 22 full and one of 30 per epoch
    assert report.check.ok, text(report)
    assert report.predictions_differ == 0
    assert report.accuracy_manual == report.accuracy_reference  # same labels, same count: exact
    assert report.accuracy_manual > 0.8  # measured 0.95 after 2 epochs (0.97 after 5); chance is 0.1
    assert "OK" in text(report)
    data = from_digits(None, report, report.seconds).as_json()  # the --json object less its meta (and description)
    json.dumps(data)  # plain JSON types only
    assert data["form"] == "digits" and data["ok"] is True and data["extras"]["predictions_differ"] == 0


def test_digits_without_scikit_learn_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # scikit-learn is now found nowhere, as if not installed
    with pytest.raises(FcgradError, match=r"pip install 'fcgrad\[data\]'"):
        load_digits_columns()
