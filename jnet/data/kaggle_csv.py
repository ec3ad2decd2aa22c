"""CSV in the Kaggle digit-recognizer layout: a header row, then `label,pixel0,...,pixel783`.

Tutorial 003 reads this layout. `load_csv` parses with `np.loadtxt` (fast, ~1 s for 42,000
rows) and only on failure rescans the file line by line, to name the first bad line.
A gzip-compressed CSV (e.g. `train.csv.gz`) is read as it is, whatever its name.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import re
import warnings

import numpy as np

from jnet.data.errors import DataError, file_error

NUM_PIXELS = 784
NUM_CLASSES = 10
HEADER = ",".join(["label", *(f"pixel{i}" for i in range(NUM_PIXELS))])
_INT = re.compile(r"\s*[+-]?\d+\s*")
_GZIP_MAGIC = b"\x1f\x8b"


def _open_text(path: pathlib.Path):
    """The file as text, unpacked if gzip-compressed (told by its first bytes, not its name)."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == _GZIP_MAGIC
    opener = gzip.open if gzipped else open
    return opener(path, "rt", encoding="utf-8", errors="replace")


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _diagnose(path: pathlib.Path) -> DataError | None:
    """The first bad data line as a DataError (slow: used only after the fast path failed)."""
    with _open_text(path) as f:
        next(f)  # header, already checked
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue  # np.loadtxt skips blank lines too
            fields = line.rstrip("\r\n").split(",")
            where = f"line {lineno}"
            if len(fields) != 1 + NUM_PIXELS:
                return file_error(
                    path,
                    f"{where}: {len(fields)} columns, expected {1 + NUM_PIXELS} "
                    f"(label + {NUM_PIXELS} pixels), i.e. {len(fields) - 1} pixel columns",
                )
            if not _INT.fullmatch(fields[0]) or not 0 <= int(fields[0]) < NUM_CLASSES:
                return file_error(
                    path, f"{where}: label {fields[0].strip()!r} is not an integer in 0..9"
                )
            for col, field in enumerate(fields[1:]):
                if not _INT.fullmatch(field) or not 0 <= int(field) <= 255:
                    return file_error(
                        path,
                        f"{where}, column {col + 2} (pixel{col}): value {field.strip()!r} "
                        "is not an integer in 0..255",
                    )
    return None


def load_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads a Kaggle digit-recognizer training CSV (header; label, then 784 pixels a row).

    Args:
      path: the CSV file, e.g. Kaggle's `train.csv` or one written by `save_csv`.

    Returns:
      `(x, y)`: pixels uint8 (N, 784) in 0..255, labels int64 (N,) in 0..9.

    Raises:
      DataError: naming the file, the line and the problem: no header, wrong column count,
        non-integer label, label outside 0..9, pixel not an integer in 0..255.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise file_error(path, "is a folder; expected a CSV file (e.g. Kaggle's train.csv)")
    try:
        with _open_text(path) as f:
            header = f.readline().rstrip("\r\n").split(",")
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except (OSError, EOFError) as e:  # e.g. a gzip file cut short or corrupt
        raise file_error(path, f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    if header == [""]:
        raise file_error(path, "empty file (expected a header row, then data rows)")
    if all(_is_number(h) for h in header):
        raise file_error(path, "line 1 is data, not a header row (label,pixel0,...,pixel783)")
    if len(header) != 1 + NUM_PIXELS:
        raise file_error(
            path,
            f"line 1 (header): {len(header)} columns, expected {1 + NUM_PIXELS} "
            f"(label + {NUM_PIXELS} pixels)",
        )
    try:
        with warnings.catch_warnings():  # "no data" is reported below, as a DataError
            warnings.filterwarnings("ignore", "loadtxt: input contained no data")
            with _open_text(path) as f:
                data = np.loadtxt(
                    f, delimiter=",", skiprows=1, dtype=np.int32, comments=None, ndmin=2
                )
    except ValueError as e:
        raise (_diagnose(path) or file_error(path, str(e))) from None
    except (OSError, EOFError) as e:  # a gzip file cut short after its header
        raise file_error(path, f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    if data.shape[0] == 0:
        raise file_error(path, "no data rows after the header")
    labels, pixels = data[:, 0], data[:, 1:]
    bad_labels = (labels < 0) | (labels >= NUM_CLASSES)
    if (
        data.shape[1] != 1 + NUM_PIXELS
        or bad_labels.any()
        or (pixels < 0).any()
        or (pixels > 255).any()
    ):
        raise _diagnose(path) or file_error(path, "values out of range")
    return pixels.astype(np.uint8), labels.astype(np.int64)


def save_csv(path: str | os.PathLike, x: np.ndarray, y: np.ndarray) -> pathlib.Path:
    """Writes images and labels as a Kaggle digit-recognizer CSV (readable by `load_csv`).

    Args:
      path: the CSV file to write.
      x: images with 784 pixels each, (N, 784) or (N, 28, 28), integers in 0..255.
      y: labels (N,), integers in 0..9.

    Returns:
      `path` as a Path.
    """
    x = np.asarray(x).reshape(len(x), -1)
    y = np.asarray(y)
    if x.shape[1] != NUM_PIXELS or y.shape != (len(x),):
        raise ValueError(f"need x (N, {NUM_PIXELS}) and y (N,), got {x.shape} and {y.shape}")
    if x.min(initial=0) < 0 or x.max(initial=0) > 255 or not np.isin(y, range(10)).all():
        raise ValueError("pixels must be in 0..255 and labels in 0..9")
    rows = np.concatenate([y[:, None], x], axis=1).astype(np.int64).tolist()
    text = [str(i) for i in range(256)]  # a lookup per value: ~3x faster than np.savetxt
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(HEADER + "\n")
        f.writelines(",".join(map(text.__getitem__, row)) + "\n" for row in rows)
    return pathlib.Path(path)


def mnist_to_csv(
    path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    num_rows: int = 42_000,
    seed: int = 0,
) -> pathlib.Path:
    """A Kaggle-layout CSV made from MNIST train: `num_rows` rows in a seeded shuffle.

    Kaggle's digit-recognizer `train.csv` has 42,000 labelled rows; this makes a stand-in
    with the same layout and size from the MNIST training set, found by the rule of
    `jnet.data.mnist_flat` (a named `data_dir` must exist; only the cache downloads).

    Returns:
      `path` as a Path.
    """
    from jnet.data.mnist_dataset import mnist_by_rule  # here: reading a CSV needs no MNIST

    (x, y), _ = mnist_by_rule(data_dir)
    if not 0 < num_rows <= len(x):
        raise ValueError(f"num_rows must be in 1..{len(x)}, got {num_rows}")
    idx = np.random.default_rng(seed).permutation(len(x))[:num_rows]
    return save_csv(path, x[idx], y[idx])
