"""jnet.data's text corpora: tiny Shakespeare on the real file, char_corpus on tmp files,
random and sequential windows of a token stream."""

import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet.data as data
from jnet.data import DataError

SHAKESPEARE_VOCAB = "\n !$&',-.3:;?" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def shakespeare_dir(data_dir) -> pathlib.Path:
    folder = data_dir / "tinyshakespeare"
    if not (folder / "input.txt").is_file():
        pytest.skip(f"tiny Shakespeare not found in {folder}")
    return folder


def test_tiny_shakespeare_nanogpt_split(shakespeare_dir):
    train, val, vocab = data.tiny_shakespeare(shakespeare_dir)
    assert (len(train), len(val), len(vocab)) == (1_003_854, 111_540, 65)
    assert "".join(vocab) == SHAKESPEARE_VOCAB
    assert train.dtype == val.dtype == np.int32
    text = (shakespeare_dir / "input.txt").read_text()
    assert data.decode(train[:13], vocab) == text[:13] == "First Citizen"
    assert data.decode(val, vocab) == text[1_003_854:]
    # The folder rule: a JNET_DATA_DIR-style root (with tinyshakespeare/) works too.
    assert np.array_equal(data.tiny_shakespeare(shakespeare_dir.parent)[1], val)


def test_tiny_shakespeare_found_through_env(shakespeare_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(shakespeare_dir.parent))
    assert len(data.tiny_shakespeare()[0]) == 1_003_854


def test_tiny_shakespeare_missing_file_says_where(tmp_path):
    with pytest.raises(DataError, match=r"missing input\.txt.*Put input\.txt in"):
        data.tiny_shakespeare(tmp_path)


def test_tiny_shakespeare_checks_the_sha256(shakespeare_dir, tmp_path):
    copy = tmp_path / "input.txt"
    shutil.copy(shakespeare_dir / "input.txt", copy)
    raw = bytearray(copy.read_bytes())
    raw[100] = ord("#")  # one changed character
    copy.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"input\.txt: SHA-256 mismatch"):
        data.tiny_shakespeare(tmp_path)


def test_char_corpus_splits_any_utf8_file(tmp_path):
    text = "héllo wörld, 日本語!\n" * 5  # 90 characters, multi-byte ones included
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    train, val, vocab = data.char_corpus(path)
    assert vocab == sorted(set(text)) and len(train) == 81 and len(val) == 9
    assert data.decode(np.concatenate([train, val]), vocab) == text
    assert np.array_equal(data.encode(text, vocab), np.concatenate([train, val]))


def test_char_corpus_bad_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xff\xfedef")
    with pytest.raises(DataError, match=r"bad\.txt: not valid UTF-8 text \(byte 3"):
        data.char_corpus(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.txt: empty; a corpus needs at least 2"):
        data.char_corpus(empty)
    one = tmp_path / "one.txt"
    one.write_text("a")
    with pytest.raises(DataError, match="only 1 character"):
        data.char_corpus(one)
    with pytest.raises(DataError, match=r"nope\.txt: file not found"):
        data.char_corpus(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="is a folder"):
        data.char_corpus(tmp_path)


def test_encode_names_unknown_characters():
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['z'\]"):
        data.encode("abz", ["a", "b"])


def test_random_windows_are_slices_of_the_stream():
    ids = jnp.arange(20, dtype=jnp.int32)
    draw = jax.jit(lambda key: data.random_windows(key, ids, 500, 6))
    x, y = draw(jax.random.key(0))
    assert x.shape == y.shape == (500, 6) and x.dtype == y.dtype == jnp.int32
    starts = np.asarray(x[:, 0])
    assert np.array_equal(np.asarray(x), starts[:, None] + np.arange(6))  # consecutive tokens
    assert np.array_equal(np.asarray(y), np.asarray(x) + 1)  # targets: the next token
    # Offsets cover [0, L - block_size) as nanoGPT's torch.randint(len(data) - block_size).
    assert starts.min() == 0 and starts.max() == 20 - 6 - 1
    # Pure: the same key gives the same windows, another key others.
    assert np.array_equal(np.asarray(draw(jax.random.key(0))[0]), np.asarray(x))
    assert not np.array_equal(np.asarray(draw(jax.random.key(1))[0]), np.asarray(x))


def test_random_windows_clear_errors():
    ids = jnp.arange(10)
    with pytest.raises(ValueError, match="no window of block_size \\+ 1 = 11 tokens"):
        data.random_windows(jax.random.key(0), ids, 2, 10)
    with pytest.raises(ValueError, match="1-D integer token stream"):
        data.random_windows(jax.random.key(0), ids.astype(jnp.float32), 2, 3)
    with pytest.raises(ValueError, match="1-D integer token stream"):
        data.random_windows(jax.random.key(0), ids.reshape(2, 5), 2, 3)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        data.random_windows(jax.random.key(0), ids, 0, 3)


def test_sequential_windows_cover_the_stream():
    x, y = data.sequential_windows(jnp.arange(23), 5)  # (23 - 1) // 5 = 4 windows
    assert x.shape == y.shape == (4, 5)
    assert np.array_equal(np.asarray(x).ravel(), np.arange(20))
    assert np.array_equal(np.asarray(y).ravel(), np.arange(1, 21))
    with pytest.raises(ValueError, match="no window"):
        data.sequential_windows(jnp.arange(5), 5)
