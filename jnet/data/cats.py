"""`cat_vs_noncat()`: the deeplearning.ai "cat vs non-cat" HDF5 files as numpy arrays."""

from __future__ import annotations

import os
import pathlib

import h5py
import numpy as np

from jnet.data.download import verify_sha256
from jnet.data.errors import DataError, file_error
from jnet.data.paths import dataset_dir, where_to_put

Split = tuple[np.ndarray, np.ndarray]

CAT_FILES = {"train": "train_catvnoncat.h5", "test": "test_catvnoncat.h5"}
CAT_SHA256 = {
    "train_catvnoncat.h5": "fbe56ab67c3ae28d564e3a644189117976d6b31af0a3ce9bb17dbf22908af242",
    "test_catvnoncat.h5": "6a9d39ce52fa85953c5834695b8534a30ed8cfd54971fb2f080b5a24d002b951",
}


def _dataset(f: h5py.File, path: pathlib.Path, key: str) -> np.ndarray:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        keys = ", ".join(sorted(f.keys())) or "none"
        raise file_error(path, f"no dataset {key!r} (found: {keys})")
    return f[key][()]


def read_cat_split(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads and checks one file: `<split>_set_x`, `<split>_set_y` and `list_classes`.

    Returns:
      x uint8 (N, H, W, 3), y int64 (N,) in {0, 1}, class names (index = label).
    """
    path = pathlib.Path(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except OSError as e:  # h5py raises OSError for "not an HDF5 file" and truncation
        raise file_error(path, f"cannot read as HDF5 ({e})") from None
    with f:
        x = _dataset(f, path, f"{split}_set_x")
        y = _dataset(f, path, f"{split}_set_y")
        classes = [
            c.decode() if isinstance(c, bytes) else str(c)
            for c in _dataset(f, path, "list_classes")
        ]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise file_error(path, f"{split}_set_x is {x.dtype} {x.shape}, expected uint8 (N, H, W, 3)")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise file_error(path, f"{split}_set_y is {y.dtype} {y.shape}, expected integers (N,)")
    if len(x) != len(y):
        raise file_error(path, f"{len(x)} images but {len(y)} labels in {split}_set_x/_y")
    if len(classes) != 2:
        raise file_error(path, f"expected 2 classes in list_classes, got {classes}")
    if not np.isin(y, (0, 1)).all():
        bad = sorted(set(np.unique(y).tolist()) - {0, 1})
        raise file_error(path, f"{split}_set_y holds labels {bad[:5]}; expected only 0 and 1")
    return x, y.astype(np.int64), classes


def cat_vs_noncat(
    data_dir: str | os.PathLike | None = None, verify: bool = False
) -> tuple[Split, Split, list[str]]:
    """The "cat vs non-cat" images of the deeplearning.ai course, from two HDF5 files.

    The files are not on a public mirror, so nothing is downloaded: put them in place.

    Args:
      data_dir: the folder holding `train_catvnoncat.h5` and `test_catvnoncat.h5`. Default:
        `$JNET_DATA_DIR/catvnoncat`, else `~/.cache/jnet/catvnoncat`
        (`$XDG_CACHE_HOME/jnet/catvnoncat`). A folder with a `catvnoncat/` sub-folder works too.
      verify: also check the files against their known SHA-256 sums.

    Returns:
      `(x_train, y_train), (x_test, y_test), classes`: x uint8 (N, 64, 64, 3) RGB, y int64
      (N,) with 1 = cat, `classes == ["non-cat", "cat"]`. N = 209 train and 50 test.

    Raises:
      DataError: a file is missing, not HDF5, lacks a dataset, or has the wrong shapes.
    """
    folder = dataset_dir("catvnoncat", data_dir, CAT_FILES.values())
    missing = [n for n in CAT_FILES.values() if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"{folder}: missing {', '.join(missing)}. These files are not on a public mirror "
            f"(they come with the deeplearning.ai course). "
            + where_to_put(folder, missing, "catvnoncat")
        )
    out = {}
    for split, name in CAT_FILES.items():
        if verify:
            verify_sha256(folder / name, CAT_SHA256[name])
        out[split] = read_cat_split(folder / name, split)
    (x_tr, y_tr, classes), (x_te, y_te, _) = out["train"], out["test"]
    return (x_tr, y_tr), (x_te, y_te), classes
