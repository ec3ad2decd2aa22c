"""jnet.data.mnist_flat: the one MNIST path of experiments, benchmarks and tests, and its rule."""

import numpy as np
import pytest

import jnet.data as data
from jnet.data import DataError


def write_tiny_mnist(folder, n_train=12, n_test=8):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        data.write_idx(folder / f"{stem}-images-idx3-ubyte.gz", images)
        data.write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, np.uint8))


def test_flat_scaled_and_cut(tmp_path):
    write_tiny_mnist(tmp_path / "mnist")
    (x, y), (xt, yt) = data.mnist_flat(tmp_path, train_size=5, test_size=3)  # a root works
    (rx, ry), _ = data.mnist(tmp_path / "mnist", download=False)
    assert x.shape == (5, 784) and x.dtype == np.float32 and xt.shape == (3, 784)
    assert y.dtype == np.int64 and len(yt) == 3
    np.testing.assert_array_equal(x, rx[:5].reshape(5, -1) / np.float32(255))
    np.testing.assert_array_equal(y, ry[:5])
    (x_all, _), (xt_all, _) = data.mnist_flat(tmp_path)
    assert len(x_all) == 12 and len(xt_all) == 8


def test_env_folder_is_used_and_never_downloaded_into(tmp_path, monkeypatch):
    monkeypatch.setenv("JNET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JNET_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing may be fetched
    with pytest.raises(DataError, match="missing"):  # named, exists, empty: no download
        data.mnist_flat()
    assert list(tmp_path.iterdir()) == []
    write_tiny_mnist(tmp_path / "mnist")
    (x, _), _ = data.mnist_flat(train_size=2)
    assert x.shape == (2, 784)


def test_a_named_folder_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"data_dir: .*nope does not exist.*never created"):
        data.mnist_flat(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
