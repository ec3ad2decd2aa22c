"""jnet.data: loaders on the real files and on small (often broken) files in tmp_path."""

import gzip
import pathlib
import shutil

import h5py
import numpy as np
import pytest

import jnet.data as data
from jnet.data import DataError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
STEMS = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def write_mnist_like(folder: pathlib.Path, n_train=6, n_test=4, suffix=".gz", seed=0):
    """Four small IDX files in the MNIST layout; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, arr in arrays.items():
        data.write_idx(folder / (STEMS[key] + suffix), arr)
    return arrays


# --- MNIST on the real files --------------------------------------------------------------


@pytest.fixture(scope="module")
def real_mnist(data_dir):
    return data.mnist(data_dir / "mnist", download=False)


def test_mnist_real_files(real_mnist):
    (x_train, y_train), (x_test, y_test) = real_mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_train.dtype == y_test.dtype == np.int64
    assert np.bincount(y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == TEST_COUNTS
    # Original IDX order: the well-known first labels.
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert x_train.max() == 255 and x_train[0, 0, 0] == 0  # 0 = background
    assert x_train.flags.writeable


@pytest.mark.slow  # reads all of MNIST twice
def test_mnist_root_folder_and_env_resolve_to_mnist_subfolder(data_dir, real_mnist, monkeypatch):
    (x_train, _), _ = data.mnist(data_dir, download=False)  # a root with mnist/ inside
    np.testing.assert_array_equal(x_train, real_mnist[0][0])
    monkeypatch.setenv("JNET_DATA_DIR", str(data_dir))
    (_, y_train), _ = data.mnist(download=False)
    np.testing.assert_array_equal(y_train, real_mnist[0][1])


def test_mnist_verify_accepts_real_files(data_dir):
    data.mnist(data_dir / "mnist", download=False, verify=True)
    sums = (data_dir / "mnist" / "SHA256SUMS").read_text().split()
    assert dict(zip(sums[1::2], sums[::2], strict=True)) == data.MNIST_SHA256


def test_gzipped_and_raw_idx_agree(data_dir, tmp_path):
    gz = data_dir / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = tmp_path / "t10k-images-idx3-ubyte"
    raw.write_bytes(gzip.decompress(gz.read_bytes()))
    np.testing.assert_array_equal(data.read_idx(gz), data.read_idx(raw))
    assert data.sha256(raw) == "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"


# --- MNIST layout on small files ----------------------------------------------------------


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_mnist_small_files_round_trip(tmp_path, suffix):
    arrays = write_mnist_like(tmp_path, suffix=suffix)
    (x_train, y_train), (x_test, y_test) = data.mnist(tmp_path, download=False)
    np.testing.assert_array_equal(x_train, arrays["train_x"])
    np.testing.assert_array_equal(y_train, arrays["train_y"])
    np.testing.assert_array_equal(x_test, arrays["test_x"])
    np.testing.assert_array_equal(y_test, arrays["test_y"])
    assert y_train.dtype == np.int64


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i4", "f4", "f8"])
def test_idx_round_trip_dtypes(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype if dtype != "u1" else "i4")
    arr = np.abs(arr).astype(dtype) if dtype == "u1" else arr
    data.write_idx(tmp_path / "a.idx", arr)
    got = data.read_idx(tmp_path / "a.idx")
    np.testing.assert_array_equal(got, arr)
    assert got.dtype == arr.dtype.newbyteorder("=")


def test_verify_rejects_data_in_the_same_layout(tmp_path):
    write_mnist_like(tmp_path)  # valid structure (a Fashion-MNIST stand-in), unknown sums
    data.mnist(tmp_path, download=False)  # loads by structure
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: SHA-256 mismatch: expected"):
        data.mnist(tmp_path, download=False, verify=True)


def test_missing_files_say_where_to_put_them(tmp_path):
    write_mnist_like(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as e:
        data.mnist(tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path) in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "JNET_DATA_DIR" in msg and "data_dir" in msg


def _break(folder, key, how):
    path = folder / (STEMS[key] + ".gz")
    raw = gzip.decompress(path.read_bytes())
    if how == "wrong magic":
        raw = b"\0\0\x08\x04" + raw[4:]  # 2052: uint8 with 4 dims
    elif how == "truncated payload":
        raw = raw[:-2]
    elif how == "trailing bytes":
        raw = raw + b"\0" * 3
    elif how == "truncated header":
        raw = raw[:9]
    elif how == "not idx":
        raw = b"<html>404 Not Found</html>"
    path.write_bytes(gzip.compress(raw))
    return path


@pytest.mark.parametrize(
    "how, key, message",
    [
        ("wrong magic", "train_x", r"wrong magic number 2052 \(0x00000804\), expected 2051"),
        ("wrong magic", "test_y", r"wrong magic number 2052 .*expected 2049"),
        ("truncated payload", "train_x", r"truncated data: header says shape \(6, 28, 28\)"),
        ("truncated payload", "test_y", r"truncated data: header says shape \(4,\)"),
        ("trailing bytes", "train_y", r"3 unexpected bytes after the data"),
        ("truncated header", "train_x", r"truncated header"),
        ("not idx", "test_x", r"not an IDX file: bad magic number"),
    ],
)
def test_bad_idx_files_name_file_and_problem(tmp_path, how, key, message):
    write_mnist_like(tmp_path)
    path = _break(tmp_path, key, how)
    with pytest.raises(DataError, match=message) as e:
        data.mnist(tmp_path, download=False)
    assert str(e.value).startswith(f"{path}: ")


def test_truncated_gzip(tmp_path, data_dir):
    src = (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    write_mnist_like(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(src[: len(src) // 2])
    with pytest.raises(DataError, match=f"^{path}: truncated gzip stream"):
        data.mnist(tmp_path, download=False)


def test_corrupt_gzip(tmp_path):
    write_mnist_like(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[-8] ^= 0xFF  # flips a bit of the CRC-32 in the gzip trailer
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=f"^{path}: corrupt gzip data"):
        data.mnist(tmp_path, download=False)


def test_images_labels_count_mismatch(tmp_path):
    write_mnist_like(tmp_path)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="holds 6 images but .* holds 5 labels") as e:
        data.mnist(tmp_path, download=False)
    assert "train-images-idx3-ubyte.gz" in str(e.value)
    assert "train-labels-idx1-ubyte.gz" in str(e.value)


def test_train_and_test_image_sizes_must_agree(tmp_path):
    write_mnist_like(tmp_path)
    data.write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"train images are \(28, 28\) but test images"):
        data.mnist(tmp_path, download=False)


def test_unknown_source(tmp_path):
    with pytest.raises(ValueError, match="source must be"):
        data.mnist(tmp_path, source="keras")


# --- data folder resolution ---------------------------------------------------------------


def test_dataset_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("JNET_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.dataset_dir("mnist", tmp_path / "explicit") == tmp_path / "explicit"
    assert data.dataset_dir("mnist") == tmp_path / "env" / "mnist"
    monkeypatch.delenv("JNET_DATA_DIR")
    assert data.dataset_dir("mnist") == tmp_path / "xdg" / "jnet" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_dir() == pathlib.Path.home() / ".cache" / "jnet"


# --- cat vs non-cat -----------------------------------------------------------------------


def test_cat_vs_noncat_real_files(data_dir):
    (x_train, y_train), (x_test, y_test), classes = data.cat_vs_noncat(data_dir, verify=True)
    assert x_train.shape == (209, 64, 64, 3) and x_train.dtype == np.uint8
    assert x_test.shape == (50, 64, 64, 3) and x_test.dtype == np.uint8
    assert y_train.dtype == np.int64 and y_train.sum() == 72 and y_test.sum() == 33
    assert set(np.unique(y_train)) == {0, 1}
    assert classes == ["non-cat", "cat"]


def write_cat_files(folder, drop=None, n_train=3):
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in [("train", n_train), ("test", 2)]:
        with h5py.File(folder / f"{split}_catvnoncat.h5", "w") as f:
            items = {
                f"{split}_set_x": np.zeros((n, 64, 64, 3), np.uint8),
                f"{split}_set_y": np.arange(n) % 2,
                "list_classes": np.array([b"non-cat", b"cat"]),
            }
            for key, value in items.items():
                if key != drop:
                    f[key] = value


def test_cat_small_files(tmp_path):
    write_cat_files(tmp_path)
    (x, y), (xt, yt), classes = data.cat_vs_noncat(tmp_path)
    assert x.shape == (3, 64, 64, 3) and y.tolist() == [0, 1, 0] and yt.tolist() == [0, 1]
    assert classes == ["non-cat", "cat"]


def test_cat_h5_without_train_set_x(tmp_path):
    write_cat_files(tmp_path, drop="train_set_x")
    path = tmp_path / "train_catvnoncat.h5"
    with pytest.raises(DataError, match=f"^{path}: no dataset 'train_set_x' \\(found: "):
        data.cat_vs_noncat(tmp_path)


def test_cat_not_hdf5_and_missing(tmp_path):
    write_cat_files(tmp_path)
    (tmp_path / "test_catvnoncat.h5").write_bytes(b"version https://git-lfs.github.com/spec/v1")
    with pytest.raises(DataError, match="test_catvnoncat.h5: cannot read as HDF5"):
        data.cat_vs_noncat(tmp_path)
    (tmp_path / "test_catvnoncat.h5").unlink()
    with pytest.raises(DataError, match="not on a public mirror") as e:
        data.cat_vs_noncat(tmp_path)
    assert "test_catvnoncat.h5" in str(e.value) and str(tmp_path) in str(e.value)
    assert "JNET_DATA_DIR" in str(e.value)


def test_cat_checksum(tmp_path):
    write_cat_files(tmp_path)
    with pytest.raises(DataError, match="train_catvnoncat.h5: SHA-256 mismatch"):
        data.cat_vs_noncat(tmp_path, verify=True)


# --- Kaggle CSV ---------------------------------------------------------------------------


def write_csv(path, rows, header=data.kaggle_csv.HEADER):
    path.write_text("".join(line + "\n" for line in [header, *rows]))
    return path


def row(label="3", pixels=None):
    pixels = pixels if pixels is not None else [str(i % 256) for i in range(784)]
    return ",".join([label, *pixels])


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 7)
    data.save_csv(tmp_path / "train.csv", x, y)
    x2, y2 = data.load_csv(tmp_path / "train.csv")
    assert x2.shape == (7, 784) and x2.dtype == np.uint8 and y2.dtype == np.int64
    np.testing.assert_array_equal(x2, x.reshape(7, -1))
    np.testing.assert_array_equal(y2, y)
    assert (tmp_path / "train.csv").read_text().startswith("label,pixel0,pixel1,")


def test_mnist_to_csv(data_dir, tmp_path, real_mnist):
    path = data.mnist_to_csv(tmp_path / "train.csv", data_dir, num_rows=500, seed=3)
    x, y = data.load_csv(path)
    (x_train, y_train), _ = real_mnist
    idx = np.random.default_rng(3).permutation(60000)[:500]
    np.testing.assert_array_equal(x, x_train[idx].reshape(500, 784))
    np.testing.assert_array_equal(y, y_train[idx])


@pytest.mark.parametrize(
    "rows, header, message",
    [
        ([row()], ",".join(data.kaggle_csv.HEADER.split(",")[:-1]), "line 1 \\(header\\): 784 "),
        ([row(), row(pixels=[str(i % 256) for i in range(783)])], None, "line 3: 784 columns"),
        ([row(), row(label="3.5")], None, "line 3: label '3.5' is not an integer in 0..9"),
        ([row(label="cat")], None, "line 2: label 'cat' is not an integer"),
        ([row(label="10")], None, "line 2: label '10' is not an integer in 0..9"),
        ([row(pixels=["300"] + ["0"] * 783)], None, "line 2, column 2 \\(pixel0\\): value '300'"),
        ([row(pixels=["0"] * 783 + ["-1"])], None, "line 2, column 785 \\(pixel783\\): value '-1'"),
        ([row(pixels=["0.5"] * 784)], None, "line 2, column 2 \\(pixel0\\): value '0.5'"),
        ([row(), row()], row(), "line 1 is data, not a header row"),
        ([], None, "no data rows after the header"),
    ],
)
def test_bad_csv(tmp_path, rows, header, message):
    path = write_csv(tmp_path / "bad.csv", rows, header or data.kaggle_csv.HEADER)
    with pytest.raises(DataError, match=f"^{path}: {message}"):
        data.load_csv(path)


def test_csv_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        data.load_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        data.load_csv(tmp_path / "empty.csv")


def test_csv_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=f"^{tmp_path}: is a folder; expected a CSV file"):
        data.load_csv(tmp_path)


def test_gzipped_csv_is_read_whatever_its_name(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (3, 784), dtype=np.uint8)
    text = data.save_csv(tmp_path / "train.csv", x, [1, 2, 3]).read_bytes()
    for name in ("train.csv.gz", "train_gz.csv"):  # told by the gzip magic bytes
        (tmp_path / name).write_bytes(gzip.compress(text))
        x2, y2 = data.load_csv(tmp_path / name)
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(y2, [1, 2, 3])
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(text)[:300])
    with pytest.raises(DataError, match="cut.csv.gz: cannot read: Compressed file ended"):
        data.load_csv(tmp_path / "cut.csv.gz")


def test_data_dir_must_be_a_path():
    with pytest.raises(TypeError, match="data_dir must be a folder path .* got 3"):
        data.mnist(3, download=False)


# --- XOR and preprocessing ----------------------------------------------------------------


def test_xor():
    x, y = data.xor()
    assert x.shape == (4, 2) and y.shape == (4, 1) and x.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(y[:, 0], np.logical_xor(x[:, 0], x[:, 1]))


def test_flatten_scale():
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    assert data.flatten(x).shape == (2, 12)
    assert data.flatten(x[:0]).shape == (0, 12)  # an empty batch keeps its feature size
    s = data.scale(np.array([0, 51, 255], np.uint8))
    assert s.dtype == np.float32
    np.testing.assert_allclose(s, [0.0, 0.2, 1.0])
    with pytest.raises(TypeError, match="uint8"):
        data.scale(np.ones(3))


def test_standardize_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, (500, 4)).astype(np.float32)
    train[:, 3] = 7.0  # constant feature: centred to 0, not divided by 0
    test = rng.normal(0.0, 1.0, (50, 4)).astype(np.float32)
    tr, te = data.standardize(train, test)
    assert tr.dtype == te.dtype == np.float32
    np.testing.assert_allclose(tr[:, :3].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(tr[:, :3].std(0), 1, atol=1e-5)
    np.testing.assert_array_equal(tr[:, 3], 0)
    mean, std = train.mean(0, dtype=np.float64), train.std(0, dtype=np.float64)
    np.testing.assert_allclose(te[:, :3], (test[:, :3] - mean[:3]) / std[:3], rtol=1e-5)
    assert np.isfinite(te).all()


def test_one_hot():
    np.testing.assert_array_equal(data.one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="0..2"):
        data.one_hot(np.array([3]), 3)


def test_train_val_split_is_seeded_and_disjoint():
    x, y = np.arange(100) * 10, np.arange(100)
    (xt, yt), (xv, yv) = data.train_val_split(x, y, val_fraction=0.2, seed=1)
    assert len(xv) == 20 and len(xt) == 80
    np.testing.assert_array_equal(xt, yt * 10)  # pairs stay together
    assert sorted([*yt, *yv]) == list(range(100))
    (_, yt2), (_, yv2) = data.train_val_split(x, y, val_fraction=0.2, seed=1)
    np.testing.assert_array_equal(yv, yv2)
    (_, _), (_, yv3) = data.train_val_split(x, y, val_size=20, seed=2)
    assert len(yv3) == 20 and not np.array_equal(yv, yv3)
    with pytest.raises(ValueError, match="not both"):
        data.train_val_split(x, y, val_fraction=0.1, val_size=3)


def test_copy_of_real_data_dir_layout(data_dir, tmp_path):
    # A copy of shared/data works as JNET_DATA_DIR-style root for both datasets.
    shutil.copytree(data_dir / "catvnoncat", tmp_path / "catvnoncat")
    (_, y), _, _ = data.cat_vs_noncat(tmp_path)
    assert len(y) == 209
