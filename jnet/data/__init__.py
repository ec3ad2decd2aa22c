"""Datasets as numpy arrays: MNIST (IDX files, download, tfds), cat vs non-cat, CSV, XOR,
character-level text (tiny Shakespeare, any UTF-8 file) and random windows of a token stream.

Every loader validates what it reads and raises `DataError` (a `ValueError`) naming the file
and the problem. Data folders resolve as: explicit `data_dir` > `$JNET_DATA_DIR/<dataset>`
> `$XDG_CACHE_HOME/jnet/<dataset>` (default `~/.cache/jnet/<dataset>`). `mnist_flat` is the
one MNIST path of the experiments, benchmarks and tests: a folder you name must exist and
hold the files; only the cache is downloaded into.

Examples:
  >>> import jnet.data
  >>> (x_train, y_train), (x_test, y_test) = jnet.data.mnist()  # doctest: +SKIP
  >>> x_train = jnet.data.scale(jnet.data.flatten(x_train))  # (60000, 784) float32 in [0, 1]
  >>> (x_train, y_train), _ = jnet.data.mnist_flat(train_size=1000)  # doctest: +SKIP
  >>> train_ids, val_ids, vocab = jnet.data.tiny_shakespeare()  # doctest: +SKIP
"""

from jnet.data.cats import cat_vs_noncat as cat_vs_noncat
from jnet.data.download import DEFAULT_MIRROR as DEFAULT_MIRROR
from jnet.data.download import MNIST_SHA256 as MNIST_SHA256
from jnet.data.download import download_mnist as download_mnist
from jnet.data.download import sha256 as sha256
from jnet.data.errors import DataError as DataError
from jnet.data.idx import read_idx as read_idx
from jnet.data.idx import write_idx as write_idx
from jnet.data.kaggle_csv import load_csv as load_csv
from jnet.data.kaggle_csv import mnist_to_csv as mnist_to_csv
from jnet.data.kaggle_csv import save_csv as save_csv
from jnet.data.mnist_dataset import mnist as mnist
from jnet.data.mnist_dataset import mnist_flat as mnist_flat
from jnet.data.paths import DATA_DIR_ENV as DATA_DIR_ENV
from jnet.data.paths import cache_dir as cache_dir
from jnet.data.paths import data_root as data_root
from jnet.data.paths import dataset_dir as dataset_dir
from jnet.data.preprocess import flatten as flatten
from jnet.data.preprocess import one_hot as one_hot
from jnet.data.preprocess import scale as scale
from jnet.data.preprocess import standardize as standardize
from jnet.data.preprocess import train_val_split as train_val_split
from jnet.data.text import char_corpus as char_corpus
from jnet.data.text import decode as decode
from jnet.data.text import encode as encode
from jnet.data.text import random_windows as random_windows
from jnet.data.text import sequential_windows as sequential_windows
from jnet.data.text import tiny_shakespeare as tiny_shakespeare
from jnet.data.toy import xor as xor
