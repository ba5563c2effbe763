"""A user's data as a ``Problem``: an ``.npz`` with ``X``, ``T`` and optional initial parameters, or a CSV.

- ``.npz``: ``X`` (in, N) and ``T`` (out, N), samples by column (the blog's layout); optional
  ``w0``, ``b0``, ``w1``, ``b1``, ... (``w{i}`` (in, out), ``b{i}`` (out, 1)) start the run from
  the given parameters; without them the widths come from ``sizes`` (default: one hidden layer
  of 4 units, the blog's) and the parameters from ``init_params`` with ``seed``. The file
  ``fcgrad check --save`` writes (``w{i}_init``, ``b{i}_init``) loads too.
- ``.csv``: a header row naming the columns, then one sample per row (as spreadsheets store
  them); ``targets`` names the target columns, the others are the inputs. Both are transposed
  into the by-column layout.

Every check runs before any work and fails with one line saying what was expected and what came:
the orientation (samples by row where by column was expected), each parameter's shape against the
data and the layer before (the wrong array named, and said to look transposed when it does),
NaN or Inf (with its index, or its CSV line and column), an empty batch.
"""

import csv
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fcgrad.engine.problems import Problem, default_activations
from fcgrad.manual import validate
from fcgrad.manual.errors import FcgradError
from fcgrad.manual.network import init_params

BLOG_HIDDEN = 4  # the blog's hidden width, used when neither the file nor sizes give the widths
DEFAULT_STEPS = 1_000  # as for a random problem
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # the first bytes of a zip archive, and of an empty one
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of a single .npy array


def _two_d(name: str, a: np.ndarray, file: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise FcgradError(f"{file}: {name}: expected real numbers, got dtype {a.dtype}")
    if a.ndim == 1:
        raise FcgradError(
            f"{file}: {name}: expected a 2-D array (rows, N) with one sample per column, got shape {a.shape}; "
            f"one row of N values is {name}[None, :]"
        )
    if a.ndim != 2 or a.size == 0:
        raise FcgradError(f"{file}: {name}: expected a non-empty 2-D array (rows, N), got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise FcgradError(f"{file}: {name}: expected finite values, got {a[bad]} at index {bad}")
    return a


def _orientation(x: np.ndarray, t: np.ndarray, file: str) -> None:
    if x.shape[1] == t.shape[1]:
        return
    if x.shape[0] == t.shape[0]:
        raise FcgradError(
            f"{file}: X {x.shape} and T {t.shape} share their first axis: samples look stored by row; "
            f"expected X (in, N) and T (out, N) with one sample per column (transpose both)"
        )
    raise FcgradError(f"{file}: X has {x.shape[1]} columns (samples), T has {t.shape[1]}; expected the same N")


def _params_from(arrays: dict, file: str) -> list[tuple[str, np.ndarray, str, np.ndarray]] | None:
    """``[(name, w, name, b), ...]``: ``w0``, ``b0``, ... (or ``w0_init``, ...) in order; None when the file has
    none. Only their presence is checked here; their shapes are judged against the data (``_check_params``)."""
    for suffix in ("", "_init"):
        if f"w0{suffix}" not in arrays:
            continue
        layers, i = [], 0
        while f"w{i}{suffix}" in arrays:
            if f"b{i}{suffix}" not in arrays:
                raise FcgradError(f"{file}: has w{i}{suffix} but no b{i}{suffix}; expected both for every layer")
            layers.append((f"w{i}{suffix}", arrays[f"w{i}{suffix}"], f"b{i}{suffix}", arrays[f"b{i}{suffix}"]))
            i += 1
        return layers
    return None


def _numbers(name: str, a: np.ndarray, file: str) -> np.ndarray:
    """A parameter array of real, finite numbers, as float64; refused naming the file's array."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise FcgradError(f"{file}: {name}: expected real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise FcgradError(f"{file}: {name}: expected finite values, got {a[bad]} at index {bad}")
    return a


def _check_params(layers: list, x: np.ndarray, t: np.ndarray, file: str) -> list[dict]:
    """The file's parameters against its data, layer by layer: ``w{i}`` (in, out) takes the rows of X (or the
    columns of ``w{i-1}``), ``b{i}`` is (out, 1), the last ``w`` gives the rows of T. The array that is wrong is the
    one named, and a ``w`` stored (out, in), or a ``b`` stored as a row, is said to look transposed."""
    params = []
    n_in, feeds = x.shape[0], f"X {x.shape} has {x.shape[0]} rows"
    for w_name, w, b_name, b in layers:
        w, b = _numbers(w_name, w, file), _numbers(b_name, b, file)
        if w.ndim != 2:
            raise FcgradError(f"{file}: {w_name}: expected a 2-D array (in, out), got shape {w.shape}")
        if w.shape[0] != n_in:
            if w.shape[1] == n_in:
                raise FcgradError(
                    f"{file}: {w_name}: expected ({n_in}, {w.shape[0]}) as (in, out), one row per input ({feeds}), "
                    f"got {w.shape}: it looks transposed, stored (out, in); transpose it"
                )
            raise FcgradError(
                f"{file}: {w_name}: expected {n_in} rows as (in, out), one per input ({feeds}), got shape {w.shape}"
            )
        n_out = w.shape[1]
        if b.shape != (n_out, 1):
            hint = "; it looks transposed: the blog's b is a column" if b.shape == (1, n_out) else ""
            raise FcgradError(
                f"{file}: {b_name}: expected shape ({n_out}, 1), one per output of {w_name} {w.shape}, "
                f"got {b.shape}{hint}"
            )
        params.append({"w": w, "b": b})
        n_in, feeds = n_out, f"{w_name} {w.shape} has {n_out} outputs"
    w_name = layers[-1][0]
    if n_in != t.shape[0]:
        raise FcgradError(
            f"{file}: {w_name}: expected {t.shape[0]} columns as (in, out), one per row of T {t.shape}, "
            f"got shape {params[-1]['w'].shape}"
        )
    return params


def read_npz(path: str) -> tuple[np.ndarray, np.ndarray, list | None]:
    file = Path(path).name
    arrays = _npz_arrays(path, file)
    missing = [k for k in ("X", "T") if k not in arrays]
    if missing:
        raise FcgradError(f"{file}: expected arrays X (in, N) and T (out, N), missing {missing}; has {sorted(arrays)}")
    return _two_d("X", arrays["X"], file), _two_d("T", arrays["T"], file), _params_from(arrays, file)


def _npz_arrays(path: str, file: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (a zip of ``.npy`` files, as ``np.savez`` writes it), read as numbers only.

    A pickle is never loaded: an array of Python objects is refused by its header before any of it is read, and
    no message passes on NumPy's own words, which suggest loading the file unsafely.
    """
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if not head.startswith(ZIP_MAGIC):
        got = (
            "an empty file" if not head
            else "a single .npy array (np.save); save X and T together with np.savez" if head == NPY_MAGIC
            else "a file that is not a zip archive"
        )  # fmt: skip
        raise FcgradError(f"{file}: expected an .npz archive of arrays (np.savez), got {got}")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                name = member.removesuffix(".npy")
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                        np.lib.format.read_array_header_2_0)  # fmt: skip
                    dtype = read_header(f)[2]
                if dtype.hasobject:
                    raise FcgradError(
                        f"{file}: {name}: expected an array of numbers, got dtype {dtype} (Python objects, stored as "
                        "a pickle, which fcgrad never loads)"
                    )
                with archive.open(member) as f:
                    arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
    except FcgradError:
        raise
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
        why = "its compressed data is corrupt" if isinstance(exc, zlib.error) else type(exc).__name__
        raise FcgradError(f"{file}: expected an .npz archive of arrays (np.savez), got a damaged one ({why})") from None
    return arrays


def read_csv(path: str, targets: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of a CSV with a header row, one sample per row, as (in, N) and (out, N)."""
    file = Path(path).name
    if not targets:
        raise FcgradError(f"{file}: expected the names of the target columns (e.g. --targets y), got none")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark is dropped
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise FcgradError(f"{file}: expected comma-separated text (UTF-8), got a byte that is not text at offset "
                          f"{exc.start}") from None  # fmt: skip
    except csv.Error as exc:
        raise FcgradError(f"{file}: expected comma-separated text, got {exc}") from None
    if len(rows) < 2:
        raise FcgradError(f"{file}: expected a header row and at least one sample row, got {len(rows)} row(s)")
    header = [h.strip() for h in rows[0]]
    unknown = [c for c in targets if c not in header]
    if unknown:
        raise FcgradError(f"{file}: target column(s) {unknown} not in the header; columns are {header}")
    values = np.empty((len(rows) - 1, len(header)))
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise FcgradError(f"{file}:{line}: expected {len(header)} values (one per column), got {len(row)}")
        for j, cell in enumerate(row):
            try:
                values[line - 2, j] = float(cell)
            except ValueError:
                raise FcgradError(f"{file}:{line}: column {header[j]!r}: expected a number, got {cell!r}") from None
    if not np.all(np.isfinite(values)):
        r, c = (int(i) for i in np.argwhere(~np.isfinite(values))[0])
        raise FcgradError(f"{file}:{r + 2}: column {header[c]!r}: expected a finite number, got {values[r, c]}")
    t_cols = [header.index(c) for c in targets]
    x_cols = [j for j in range(len(header)) if j not in t_cols]
    if not x_cols:
        raise FcgradError(f"{file}: every column is a target; expected at least one input column")
    return values[:, x_cols].T.copy(), values[:, t_cols].T.copy()  # (in, N), (out, N)


def read_file(path: str, targets: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list | None]:
    """``(X (in, N), T (out, N), the file's w0, b0, ... or None)`` of an ``.npz`` or ``.csv``, checked."""
    file = Path(path)
    if not file.is_file():
        raise FcgradError(f"--data: expected an existing .npz or .csv file, got {str(path)!r}")
    if file.suffix == ".npz":
        if targets:
            raise FcgradError(f"{file.name}: target columns are for CSV files; an .npz names its arrays X and T")
        x, t, params = read_npz(path)
    elif file.suffix == ".csv":
        (x, t), params = read_csv(path, targets or []), None
    else:
        raise FcgradError(f"--data: expected a .npz or .csv file, got {file.suffix or 'no suffix'} ({file.name})")
    _orientation(x, t, file.name)
    if params is not None:
        params = _check_params(params, x, t, file.name)
        try:  # what the checks above leave to the library's own (none, for a file that passed them)
            params = validate.check_params(params, np.float64)[0]
            validate.check_data(x, t, params, np.dtype(np.float64))
        except FcgradError as exc:
            raise FcgradError(f"{file.name}: {exc}") from None
    return x, t, params


def load_problem(
    path: str,
    *,
    targets: Sequence[str] | None = None,
    sizes: Sequence[int] | None = None,
    activations: str | Sequence[str] | None = None,
    loss: str = "square",
    seed: int = 0,
    lr: float = 0.1,
    steps: int = DEFAULT_STEPS,
) -> Problem:
    """The problem in ``path`` (``.npz`` or ``.csv``), checked, ready for ``check`` and ``audit``."""
    file = Path(path)
    loss = validate.check_loss(loss)
    x, t, params = read_file(path, targets)
    if params is None:
        sizes = validate.check_sizes(sizes if sizes is not None else (x.shape[0], BLOG_HIDDEN, t.shape[0]))
        params = init_params(sizes, seed=validate.check_seed(seed))
    elif sizes is not None and list(sizes) != [params[0]["w"].shape[0], *[p["w"].shape[1] for p in params]]:
        have = "-".join(str(s) for s in [params[0]["w"].shape[0], *[p["w"].shape[1] for p in params]])
        raise FcgradError(f"{file.name}: its parameters are {have}, sizes asks {'-'.join(map(str, sizes))}")
    try:
        x, t = validate.check_data(x, t, params, np.dtype(np.float64))
    except FcgradError as exc:
        raise FcgradError(f"{file.name}: {exc}") from None
    widths = (params[0]["w"].shape[0], *[p["w"].shape[1] for p in params])
    acts = default_activations(len(params), loss) if activations is None else activations
    acts = tuple(validate.check_activations(acts, len(params)))
    return Problem(file.stem, widths, acts, loss, x, t, params, validate.check_lr(lr), validate.check_steps(steps))


__all__ = ["load_problem", "read_csv", "read_file", "read_npz"]
