"""MNIST from its four IDX files: `mnist()` reads them, `mnist_flat()` readies them for an MLP.

`mnist_flat` is the one loading path of jnet's experiments, benchmarks and tests, with one
rule for where the files are: a folder you name (`data_dir`, else `$JNET_DATA_DIR`) must
exist and hold them; only the user cache (`~/.cache/jnet/mnist`) is downloaded into.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from jnet.data.download import MNIST_RAW_SHA256, MNIST_SHA256, download_mnist, verify_sha256
from jnet.data.errors import DataError
from jnet.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from jnet.data.paths import dataset_dir, named_folder, where_to_put
from jnet.data.preprocess import flatten, scale

Split = tuple[np.ndarray, np.ndarray]

# (images, labels) file stems of each split, without ".gz".
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ALL_NAMES = [*MNIST_SHA256, *MNIST_RAW_SHA256]


def find_file(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    """`folder/stem.gz` if present, else `folder/stem` (unpacked), else None."""
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_split(images_path: pathlib.Path, labels_path: pathlib.Path) -> Split:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels: they must agree"
        )
    return images, labels


def mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    source: str = "idx",
    download: bool = True,
    mirror: str | None = None,
    verify: bool = False,
    tfds_dir: str | os.PathLike | None = None,
) -> tuple[Split, Split]:
    """MNIST (or any data in the same IDX layout, e.g. Fashion-MNIST) as numpy arrays.

    Args:
      data_dir: the folder holding `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
        `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each gzipped (`.gz`, preferred
        when both exist) or not. Default: `$JNET_DATA_DIR/mnist`, else `~/.cache/jnet/mnist`
        (`$XDG_CACHE_HOME/jnet/mnist`). A folder with a `mnist/` sub-folder works too.
      source: `"idx"` reads the files directly (fast, original order); `"tfds"` loads them
        through tensorflow-datasets (needs `pip install -e .[tfds]`; the original `.gz`
        files; a fixed shuffle of the IDX order).
      download: fetch missing `.gz` files from `mirror`, checked against their known SHA-256.
      mirror: base URL of the files; default `$JNET_MNIST_MIRROR`, else
        `jnet.data.download.DEFAULT_MIRROR` (the one TFDS and the JAX examples use).
      verify: also check local files against the known SHA-256 sums of the original MNIST
        files. Off by default: local files are validated by structure, so other data in the
        same layout loads.
      tfds_dir: for `source="tfds"`, where tfds writes its prepared copy; default
        `~/.cache/jnet/tfds`.

    Returns:
      `(x_train, y_train), (x_test, y_test)`: images uint8 (N, 28, 28), 0 = background;
      labels int64 (N,). MNIST has N = 60000 and 10000.

    Raises:
      DataError: a file is missing (and cannot be downloaded), corrupt or has the wrong
        layout; the message names the file and the problem.
    """
    if data_dir is None:
        named_folder()  # a $JNET_DATA_DIR that does not exist is an error, never created
    folder = dataset_dir("mnist", data_dir, _ALL_NAMES)
    if source == "tfds":
        from jnet.data.tfds_source import tfds_mnist  # lazy: TensorFlow is slow to import

        return tfds_mnist(folder, tfds_dir=tfds_dir, download=download, mirror=mirror)
    if source != "idx":
        raise ValueError(f"source must be 'idx' or 'tfds', got {source!r}")

    stems = [stem for pair in SPLITS.values() for stem in pair]
    missing = [stem + ".gz" for stem in stems if find_file(folder, stem) is None]
    if missing:
        if not download:
            hint = where_to_put(folder, missing, "mnist")
            raise DataError(f"{folder}: missing {', '.join(missing)}. {hint}")
        download_mnist(folder, mirror=mirror, files=missing)
    paths = {stem: find_file(folder, stem) for stem in stems}
    if verify:
        for path in paths.values():
            verify_sha256(path, {**MNIST_SHA256, **MNIST_RAW_SHA256}[path.name])
    train, test = (_read_split(paths[im], paths[lb]) for im, lb in SPLITS.values())
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DataError(
            f"{folder}: train images are {train[0].shape[1:]} but test images are "
            f"{test[0].shape[1:]}: they must agree"
        )
    return train, test


def mnist_by_rule(data_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """`mnist()` by the one rule: a named folder must hold the files; the cache downloads.

    Raises:
      DataError: `data_dir` (or `$JNET_DATA_DIR`) does not exist, or lacks the files.
    """
    named = named_folder(data_dir)
    return mnist(named, download=named is None)


def mnist_flat(
    data_dir: str | os.PathLike | None = None,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    dtype: np.dtype | type = np.float32,
) -> tuple[Split, Split]:
    """MNIST ready for an MLP: flattened, scaled to [0, 1]; the first `train_size`/`test_size`.

    The one loading path of jnet's experiments, benchmarks and tests. Where the files are:
    `data_dir`, else `$JNET_DATA_DIR`: a folder you name must exist and hold the four files
    (or an `mnist/` sub-folder that does), and nothing is downloaded into it; else the user
    cache (`~/.cache/jnet/mnist`), where missing files are downloaded.

    Returns:
      `(x_train, y_train), (x_test, y_test)`: x `dtype` (N, 784) in [0, 1], y int64 (N,);
      `x.reshape(-1, 28, 28)` gives the images back for plotting.
    """
    (x, y), (xt, yt) = mnist_by_rule(data_dir)
    x, y, xt, yt = x[:train_size], y[:train_size], xt[:test_size], yt[:test_size]
    return (scale(flatten(x), dtype), y), (scale(flatten(xt), dtype), yt)
