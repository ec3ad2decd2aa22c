"""Character-level text corpora as token ids, and random training windows drawn on the device.

- `char_corpus(path)`: any UTF-8 text file as `(train_ids, val_ids, vocab)`, nanoGPT's
  character split (the sorted set of characters is the vocabulary, the first 90% of the
  text is training data, the last 10% validation data).
- `tiny_shakespeare(data_dir=None)`: the same for char-rnn's "tiny Shakespeare", found by
  `jnet.data`'s folder rule and checked against its SHA-256.
- `random_windows(key, ids, batch, block_size)`: nanoGPT's `get_batch` as a pure, jittable
  function: `batch` windows of `block_size + 1` tokens at random offsets of a token stream
  held on the device, as inputs and next-token targets.
"""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jnet import arguments
from jnet.data.download import verify_sha256
from jnet.data.errors import DataError, file_error
from jnet.data.paths import dataset_dir, where_to_put

SHAKESPEARE_FILE = "input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TRAIN_FRACTION = 0.9  # nanoGPT's data/shakespeare_char/prepare.py: the first 90% is training data

Corpus = tuple[np.ndarray, np.ndarray, list[str]]


def encode(text: str, vocab: list[str]) -> np.ndarray:
    """Token ids `(len(text),)` int32 of `text`'s characters in `vocab` (a list of characters).

    Raises:
      ValueError: a character of `text` is not in `vocab` (the message names it).
    """
    index = {c: i for i, c in enumerate(vocab)}
    missing = sorted(set(text) - index.keys())
    if missing:
        raise ValueError(f"encode: characters not in the vocabulary: {missing[:10]!r}")
    return np.fromiter((index[c] for c in text), np.int32, count=len(text))


def decode(ids: np.ndarray | jax.Array, vocab: list[str]) -> str:
    """The text of token ids `(T,)` (any integer dtype) under `vocab`."""
    return "".join(vocab[int(i)] for i in np.asarray(ids).reshape(-1))


def char_corpus(path: str | os.PathLike) -> Corpus:
    """Any UTF-8 text file as a character-level corpus, split as nanoGPT splits tiny Shakespeare.

    Args:
      path: a UTF-8 text file (at least 2 characters, so both splits have one).

    Returns:
      `(train_ids, val_ids, vocab)`: int32 token ids `(n_train,)` and `(n_val,)` with
      `n_train = int(0.9 * n)` of the file's `n` characters, and `vocab` the sorted list of
      its distinct characters (token id = index in `vocab`).

    Raises:
      DataError: the file is missing, not valid UTF-8 (the message gives the byte offset),
        or too short to split.
    """
    path = pathlib.Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except IsADirectoryError:
        raise file_error(path, "is a folder, expected a UTF-8 text file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise file_error(path, f"not valid UTF-8 text (byte {e.start}: {e.reason})") from None
    if len(text) < 2:
        what = "empty" if not text else f"only {len(text)} character"
        raise file_error(path, f"{what}; a corpus needs at least 2 characters (train and val)")
    vocab = sorted(set(text))
    ids = encode(text, vocab)
    n_train = int(TRAIN_FRACTION * len(ids))
    return ids[:n_train], ids[n_train:], vocab


def tiny_shakespeare(data_dir: str | os.PathLike | None = None) -> Corpus:
    """char-rnn's tiny Shakespeare (1,115,394 characters) with nanoGPT's character split.

    Nothing is downloaded (the machines reach no network): put `input.txt` in place.

    Args:
      data_dir: the folder holding `input.txt`. Default: `$JNET_DATA_DIR/tinyshakespeare`,
        else `~/.cache/jnet/tinyshakespeare` (`$XDG_CACHE_HOME/jnet/tinyshakespeare`).
        A folder with a `tinyshakespeare/` sub-folder works too.

    Returns:
      `(train_ids, val_ids, vocab)`: 1,003,854 and 111,540 int32 token ids and the 65
      sorted characters (`\\n`, space, `!$&',-.3:;?`, A-Z, a-z).

    Raises:
      DataError: the file is missing (the message says where to put it) or its SHA-256 is
        not the known one (a corrupt or different file).
    """
    folder = dataset_dir("tinyshakespeare", data_dir, [SHAKESPEARE_FILE])
    path = folder / SHAKESPEARE_FILE
    if not path.is_file():
        raise DataError(
            f"{folder}: missing {SHAKESPEARE_FILE} (tiny Shakespeare, from karpathy/char-rnn's "
            "data/tinyshakespeare/). " + where_to_put(folder, [SHAKESPEARE_FILE], "tinyshakespeare")
        )
    verify_sha256(path, SHAKESPEARE_SHA256)
    return char_corpus(path)


def random_windows(
    key: jax.Array, ids: jax.Array, batch: int, block_size: int
) -> tuple[jax.Array, jax.Array]:
    """`batch` random windows of `block_size + 1` consecutive tokens (nanoGPT's get_batch).

    Pure and jittable: each window is one `dynamic_slice` of `ids` (vmapped over the
    offsets), so the corpus stays whole on the device and no array of all windows is built.
    Offsets are uniform in `[0, len(ids) - block_size)`, as `torch.randint` draws them.

    Args:
      key: a PRNG key.
      ids: the token stream `(L,)`, any integer dtype, with `L > block_size`.
      batch, block_size: positive ints (static).

    Returns:
      `(x, y)`, both int32 `(batch, block_size)`: `y[:, t]` is the token after `x[:, t]`.
    """
    arguments.positive_int("random_windows", "batch", batch)
    arguments.positive_int("random_windows", "block_size", block_size)
    if jnp.ndim(ids) != 1 or not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
        raise ValueError(
            f"random_windows: ids must be a 1-D integer token stream; got shape "
            f"{jnp.shape(ids)} and dtype {jnp.result_type(ids)}"
        )
    length = jnp.shape(ids)[0]
    if length <= block_size:
        raise ValueError(
            f"random_windows: a stream of {length} tokens has no window of block_size + 1 = "
            f"{block_size + 1} tokens"
        )
    starts = jax.random.randint(key, (batch,), 0, length - block_size)
    take = lambda s: jax.lax.dynamic_slice_in_dim(ids, s, block_size + 1)
    windows = jax.vmap(take)(starts).astype(jnp.int32)
    return windows[:, :-1], windows[:, 1:]


def sequential_windows(ids: jax.Array, block_size: int) -> tuple[jax.Array, jax.Array]:
    """All non-overlapping windows of a stream: the deterministic cover that evaluation uses.

    Window `i` is `ids[i*T : i*T + T]` with targets `ids[i*T + 1 : i*T + T + 1]`
    (`T = block_size`), for `i < (L - 1) // T`: every token but the first is a target
    exactly once, except the last `(L - 1) % T` ones. A reshape of the stream, not a copy
    per window.

    Returns:
      `(x, y)`, both int32 `(n_windows, block_size)`.
    """
    arguments.positive_int("sequential_windows", "block_size", block_size)
    length = jnp.shape(ids)[0]
    n = (length - 1) // block_size
    if n < 1:
        raise ValueError(
            f"sequential_windows: a stream of {length} tokens has no window of block_size + 1 "
            f"= {block_size + 1} tokens"
        )
    ids = jnp.asarray(ids, jnp.int32)
    x = ids[: n * block_size].reshape(n, block_size)
    y = ids[1 : n * block_size + 1].reshape(n, block_size)
    return x, y
