"""A user's data: npz and CSV into a Problem, every bad file refused with one line before any work."""

import pickle
import zipfile

import numpy as np
import pytest

from fcgrad.cli.main import main
from fcgrad.engine.problems import and_example
from fcgrad.engine.run import check, save_npz
from fcgrad.files.data import load_problem
from fcgrad.manual.errors import FcgradError


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _csv(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


AND_CSV = "a,b,y\n0,0,0\n0,1,0\n1,0,0\n1,1,1\n"


def test_an_npz_with_x_and_t_gets_the_blogs_hidden_width_and_runs(tmp_path):
    p = and_example()
    path = _npz(tmp_path, X=p.x, T=p.t)
    q = load_problem(path, steps=20)
    assert q.sizes == (2, 4, 1) and q.name == "d" and q.activations == ("sigmoid", "sigmoid")
    assert check(q, finite_differences=False).ok


def test_initial_parameters_in_the_file_are_used_as_given(tmp_path):
    p = and_example(seed=3)
    path = _npz(tmp_path, X=p.x, T=p.t, w0=p.params[0]["w"], b0=p.params[0]["b"], w1=p.params[1]["w"],
                b1=p.params[1]["b"])  # fmt: skip
    q = load_problem(path)
    for mine, theirs in zip(q.params, p.params):
        np.testing.assert_array_equal(mine["w"], theirs["w"])
        np.testing.assert_array_equal(mine["b"], theirs["b"])


def test_the_file_check_save_writes_loads_back(tmp_path):
    p = and_example(seed=2)
    path = str(tmp_path / "saved.npz")
    save_npz(path, p, {})
    q = load_problem(path)
    np.testing.assert_array_equal(q.params[1]["w"], p.params[1]["w"])


def test_a_csv_with_named_targets_is_stored_by_column(tmp_path):
    q = load_problem(_csv(tmp_path, AND_CSV), targets=["y"], sizes=[2, 3, 1], steps=5)
    np.testing.assert_array_equal(q.x, and_example().x)
    np.testing.assert_array_equal(q.t, and_example().t)
    assert q.sizes == (2, 3, 1) and check(q, finite_differences=False).ok


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({"X": np.zeros((4, 2)), "T": np.zeros((4, 1))}, r"samples look stored by row; expected X \(in, N\)"),
        ({"X": np.zeros((2, 4)), "T": np.zeros(4)}, r"T: expected a 2-D array .* got shape \(4,\); one row of N"),
        ({"X": np.zeros((2, 4)), "T": np.zeros((1, 3))}, "X has 4 columns .*, T has 3; expected the same N"),
        ({"X": np.array([[0.0, np.nan], [1, 1]]), "T": np.zeros((1, 2))},
         r"X: expected finite values, got nan at index \(0, 1\)"),
        ({"X": np.zeros((2, 4))}, r"expected arrays X \(in, N\) and T \(out, N\), missing \['T'\]"),
        ({"X": np.zeros((2, 4)), "T": np.zeros((1, 4)), "w0": np.zeros((2, 3))}, "has w0 but no b0"),
        ({"X": np.zeros((2, 4)), "T": np.zeros((1, 4)), "w0": np.zeros((3, 1)), "b0": np.zeros((1, 1))},
         r"^d.npz: w0: expected 2 rows as \(in, out\), one per input \(X \(2, 4\) has 2 rows\), got shape \(3, 1\)$"),
    ],
    ids=["by-row", "1-d-target", "different-n", "nan", "no-t", "w-without-b", "params-vs-x"],
)  # fmt: skip
def test_a_bad_npz_is_refused_with_one_line(tmp_path, arrays, expected):
    with pytest.raises(FcgradError, match=expected) as e:
        load_problem(_npz(tmp_path, **arrays))
    assert "\n" not in str(e.value) and str(e.value).startswith("d.npz: ")


AND_X, AND_T = np.array([[0.0, 0, 1, 1], [0, 1, 0, 1]]), np.array([[0.0, 0, 0, 1]])  # X (2, 4), T (1, 4)


# a 2-4-1 network's parameters, each stored wrong in one way: (the file's parameters, what the one line must say)
WRONG_PARAMETERS = {
    "every-w-out-in": (
        {"w0": np.ones((4, 2)), "b0": np.ones((4, 1)), "w1": np.ones((1, 4)), "b1": np.ones((1, 1))},
        r"^d.npz: w0: expected \(2, 4\) as \(in, out\), one row per input \(X \(2, 4\) has 2 rows\), got \(4, 2\): "
        r"it looks transposed, stored \(out, in\)",
    ),
    "w1-out-in": (
        {"w0": np.ones((2, 4)), "b0": np.ones((4, 1)), "w1": np.ones((1, 4)), "b1": np.ones((1, 1))},
        r"^d.npz: w1: expected \(4, 1\) as \(in, out\), one row per input \(w0 \(2, 4\) has 4 outputs\), got \(1, 4\): "
        r"it looks transposed",
    ),
    "lone-w-out-in": (
        {"w0": np.ones((1, 2)), "b0": np.ones((1, 1))},
        r"^d.npz: w0: expected \(2, 1\) .* looks transposed",
    ),
    "b0-a-row": (
        {"w0": np.ones((2, 4)), "b0": np.ones((1, 4)), "w1": np.ones((4, 1)), "b1": np.ones((1, 1))},
        r"^d.npz: b0: expected shape \(4, 1\), one per output of w0 \(2, 4\), got \(1, 4\); it looks transposed",
    ),
    "w1-too-wide-for-t": (
        {"w0": np.ones((2, 4)), "b0": np.ones((4, 1)), "w1": np.ones((4, 3)), "b1": np.ones((3, 1))},
        r"^d.npz: w1: expected 1 columns as \(in, out\), one per row of T \(1, 4\), got shape \(4, 3\)$",
    ),
    "nan-in-w1": (
        {"w0": np.ones((2, 4)), "b0": np.ones((4, 1)), "w1": np.full((4, 1), np.nan), "b1": np.ones((1, 1))},
        r"^d.npz: w1: expected finite values, got nan at index \(0, 0\)$",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_PARAMETERS))
def test_a_wrong_parameter_in_the_file_is_named_as_the_file_names_it(tmp_path, case):
    params, expected = WRONG_PARAMETERS[case]
    with pytest.raises(FcgradError, match=expected):
        load_problem(_npz(tmp_path, X=AND_X, T=AND_T, **params))


def test_the_command_names_the_files_transposed_w_not_its_b(tmp_path, capsys):
    params, _ = WRONG_PARAMETERS["every-w-out-in"]
    assert main(["check", "--data", _npz(tmp_path, X=AND_X, T=AND_T, **params)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "d.npz: w0: " in err and "looks transposed" in err and "b0" not in err, err


@pytest.mark.parametrize(
    "text, targets, expected",
    [
        (AND_CSV, ["z"], r"target column\(s\) \['z'\] not in the header; columns are \['a', 'b', 'y'\]"),
        ("a,b,y\n0,0,0\n0,x,0\n", ["y"], r"d.csv:3: column 'b': expected a number, got 'x'"),
        ("a,b,y\n0,0,0\n0,nan,0\n", ["y"], r"d.csv:3: column 'b': expected a finite number, got nan"),
        ("a,b,y\n0,0\n", ["y"], r"d.csv:2: expected 3 values \(one per column\), got 2"),
        ("a,b,y\n", ["y"], "expected a header row and at least one sample row"),
        (AND_CSV, [], "expected the names of the target columns"),
        ("y\n1\n", ["y"], "every column is a target"),
    ],
    ids=["unknown-target", "not-a-number", "nan", "short-row", "no-samples", "no-targets", "no-inputs"],
)
def test_a_bad_csv_is_refused_with_one_line(tmp_path, text, targets, expected):
    with pytest.raises(FcgradError, match=expected):
        load_problem(_csv(tmp_path, text), targets=targets)


def test_sizes_that_disagree_with_the_files_parameters_are_refused(tmp_path):
    p = and_example()
    path = _npz(tmp_path, X=p.x, T=p.t, w0=p.params[0]["w"], b0=p.params[0]["b"], w1=p.params[1]["w"],
                b1=p.params[1]["b"])  # fmt: skip
    with pytest.raises(FcgradError, match="its parameters are 2-4-1, sizes asks 2-5-1"):
        load_problem(path, sizes=[2, 5, 1])


@pytest.mark.parametrize("name", ["d.txt", "missing.npz"])
def test_a_missing_or_unknown_file_is_refused(tmp_path, name):
    path = tmp_path / name
    if name == "d.txt":
        path.write_text("1")
    with pytest.raises(FcgradError, match="--data: expected"):
        load_problem(str(path))


def _not_an_archive(tmp_path, kind: str) -> str:
    """A file named .npz (or .csv) that is not what its name says, of one kind; returns its path."""
    path = tmp_path / ("d.csv" if kind == "binary-csv" else "d.npz")
    if kind == "text":
        path.write_text("X,T\n1,2\n")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"X": [[0.0]], "T": [[1.0]]}))
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros((2, 4)))
    elif kind == "object-array":
        np.savez(path, X=np.array([[1.0, "a"]], dtype=object), T=np.zeros((1, 2)))
    elif kind == "truncated":
        np.savez(path, X=np.zeros((2, 4)), T=np.zeros((1, 4)))
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "member-not-npy":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("X.npy", b"not an array")
            z.writestr("T.npy", b"nor this")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary-csv":
        path.write_bytes(b"\xff\xfe\x00\x01 binary")
    return str(path)


NOT_AN_ARCHIVE = ["text", "pickle", "npy", "object-array", "truncated", "member-not-npy", "empty", "binary-csv"]
# what numpy's own messages say of a file it would only read by unpickling it: never passed on
UNSAFE_ADVICE = ("allow_pickle", "pickle.load", "unsafe", "If you trust")


def _load_with(loader: str, path: str, capsys) -> str:
    """The one line each loading path gives for ``path``: the Python API, check --data and audit --data."""
    targets = ["y"] if path.endswith(".csv") else None
    if loader == "api":
        with pytest.raises(FcgradError) as info:
            load_problem(path, targets=targets)
        return str(info.value) + "\n"
    argv = [loader, "--data", path, *(["--targets", "y"] if targets else [])]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"fcgrad {loader}: error: "), err
    return err


@pytest.mark.parametrize("loader", ["api", "check", "audit"])
@pytest.mark.parametrize("kind", NOT_AN_ARCHIVE)
def test_a_file_that_is_not_what_its_name_says_is_refused_without_unsafe_advice(tmp_path, capsys, kind, loader):
    said = _load_with(loader, _not_an_archive(tmp_path, kind), capsys)
    assert said.count("\n") == 1 and "Traceback" not in said, said
    assert not [a for a in UNSAFE_ADVICE if a in said], said
    assert said.split(": error: ")[-1].startswith(("d.npz: ", "d.csv: ")), said  # names the file
    if kind == "object-array":
        assert "X: expected an array of numbers, got dtype object" in said and "never loads" in said
