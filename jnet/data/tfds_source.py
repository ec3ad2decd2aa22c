"""MNIST through tensorflow-datasets, prepared offline from the local .gz files.

tfds's MNIST builder downloads four URLs whose file names are the original `.gz` names.
Given `DownloadConfig(manual_dir=<the MNIST folder>)`, its download manager takes a file
of that name from `manual_dir` instead of fetching it (and still checks its registered
SHA-256), and `try_gcs=False` keeps it from asking Google Cloud Storage for a prepared
copy, so preparing works on a machine with no network. The prepared TFRecords go to
`tfds_dir/mnist/<version>/`; later calls reuse them.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np

from jnet.data.download import MNIST_SHA256, download_mnist, verify_sha256
from jnet.data.errors import DataError
from jnet.data.paths import cache_dir, where_to_put

Split = tuple[np.ndarray, np.ndarray]


def _import_tfds():
    # TensorFlow logs INFO lines to stderr on import; keep the user's setting if any.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "jnet.data.mnist(source='tfds') needs tensorflow-datasets and TensorFlow: "
            "pip install -e '.[tfds]'"
        ) from e
    return tfds


def tfds_mnist(
    folder: str | os.PathLike,
    tfds_dir: str | os.PathLike | None = None,
    download: bool = True,
    mirror: str | None = None,
) -> tuple[Split, Split]:
    """MNIST loaded through `tfds`, using the `.gz` files in `folder` as its manual_dir.

    Args:
      folder: the folder holding the four original MNIST `.gz` files.
      tfds_dir: where tfds writes its prepared dataset; default `~/.cache/jnet/tfds`.
      download: fetch missing `.gz` files into `folder` first (see `download_mnist`).
      mirror: base URL for that download.

    Returns:
      `(x_train, y_train), (x_test, y_test)`: images uint8 (N, 28, 28), labels int64 (N,), in
      tfds's order (a fixed shuffle of the IDX order).
    """
    folder = pathlib.Path(folder)
    missing = [n for n in MNIST_SHA256 if not (folder / n).is_file()]
    if missing and download:
        download_mnist(folder, mirror=mirror, files=missing)
    elif missing:
        raise DataError(
            f"{folder}: missing {', '.join(missing)} (tfds needs the original .gz files). "
            + where_to_put(folder, missing, "mnist")
        )
    for name, digest in MNIST_SHA256.items():
        verify_sha256(folder / name, digest)  # tfds checks too, with a vaguer message

    tfds = _import_tfds()
    tfds_dir = pathlib.Path(tfds_dir) if tfds_dir is not None else cache_dir() / "tfds"
    builder = tfds.builder("mnist", data_dir=os.fspath(tfds_dir), try_gcs=False)
    # tfds unpacks the .gz files under download_dir; a temporary one leaves no 55 MB copy.
    with tempfile.TemporaryDirectory(prefix="jnet-tfds-") as scratch:
        builder.download_and_prepare(
            download_dir=scratch,
            download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(folder)),
        )
    splits = []
    for split in ("train", "test"):
        ds = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
        x, y = tfds.as_numpy(ds)
        splits.append((np.ascontiguousarray(x[..., 0]), y.astype(np.int64)))
    return splits[0], splits[1]
