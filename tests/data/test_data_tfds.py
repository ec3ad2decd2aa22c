"""tensorflow-datasets as a second MNIST source: the same (image, label) pairs as IDX.

tfds prepares MNIST from the local .gz files (its manual_dir), offline, into tmp_path.
Preparing takes ~20 s and reading ~9 s (tfds decodes a PNG per image) on 2 cores.
CI installs the `tfds` extra, so this runs there.
"""

import socket
import sys

import numpy as np
import pytest

import jnet.data as data


def sorted_pairs(x, y):
    """Each (image, label) pair as one 785-byte record, sorted: a multiset to compare."""
    rows = np.concatenate([x.reshape(len(x), -1), y.astype(np.uint8)[:, None]], axis=1)
    return np.sort(np.ascontiguousarray(rows).view(f"V{rows.shape[1]}").ravel())


@pytest.fixture
def no_network(monkeypatch):
    """Records and refuses any Python-level connection to a non-loopback address."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"test forbids network access to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.mark.slow
def test_tfds_and_idx_give_the_same_pairs(data_dir, tmp_path, no_network):
    pytest.importorskip(
        "tensorflow_datasets", reason="needs the tfds extra: pip install -e .[tfds]"
    )
    idx = data.mnist(data_dir / "mnist", download=False)
    via_tfds = data.mnist(data_dir / "mnist", source="tfds", tfds_dir=tmp_path, download=False)
    for (xi, yi), (xt, yt) in zip(idx, via_tfds, strict=True):
        assert xt.shape == xi.shape and xt.dtype == np.uint8 and yt.dtype == np.int64
        assert not np.array_equal(yt, yi)  # tfds's order is a fixed shuffle of the IDX order
        np.testing.assert_array_equal(sorted_pairs(xt, yt), sorted_pairs(xi, yi))
    assert no_network == []
    assert (tmp_path / "mnist").is_dir()  # prepared where we asked; later calls reuse it


def test_tfds_missing_gives_install_hint(data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now fails
    with pytest.raises(ImportError, match=r"pip install -e '\.\[tfds\]'"):
        data.mnist(data_dir / "mnist", source="tfds", tfds_dir=tmp_path)


def test_tfds_needs_original_gz_files(tmp_path):
    with pytest.raises(data.DataError, match="tfds needs the original .gz files") as e:
        data.mnist(tmp_path, source="tfds", download=False)
    assert "JNET_DATA_DIR" in str(e.value)
