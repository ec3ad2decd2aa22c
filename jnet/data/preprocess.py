"""Preprocessing in plain numpy: flatten, scale, standardize, one-hot, train/val split."""

from __future__ import annotations

import math

import numpy as np


def flatten(x: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, D), e.g. images (N, 28, 28) -> (N, 784). A view when possible."""
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("flatten expects (N, ...) arrays with a batch axis; got a 0-d array")
    return x.reshape(len(x), math.prod(x.shape[1:]))  # not -1: ambiguous when N = 0


def scale(x: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """uint8 pixels in 0..255 -> floats in [0, 1] (any shape)."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"scale expects uint8 pixels, got {x.dtype}")
    return np.divide(x, 255, dtype=dtype)


def standardize(
    train: np.ndarray, *others: np.ndarray, eps: float = 1e-8
) -> tuple[np.ndarray, ...]:
    """Standardizes each feature with the mean and std of the training split only.

    Using training statistics for every split keeps test data out of preprocessing.

    Args:
      train: (N, ...) training data; statistics are per feature, over axis 0.
      *others: more arrays (validation, test) with the same feature shape.
      eps: features with std below this (e.g. always-black MNIST corners) are only
        centred, not divided, so they become 0 rather than inf or nan.

    Returns:
      `(train_std, *others_std)`, float64 if `train` is float64, else float32.

    Examples:
      >>> x_train, x_test = standardize(x_train, x_test)  # doctest: +SKIP
    """
    train = np.asarray(train)
    dtype = np.float64 if train.dtype == np.float64 else np.float32
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std = np.where(std < eps, 1.0, std)
    return tuple(((np.asarray(a) - mean) / std).astype(dtype) for a in (train, *others))


def one_hot(y: np.ndarray, num_classes: int, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Integer labels (N,) in 0..num_classes-1 -> one-hot rows (N, num_classes)."""
    y = np.asarray(y)
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be integers in 0..{num_classes - 1}")
    return (y[..., None] == np.arange(num_classes)).astype(dtype)


def train_val_split(
    x: np.ndarray,
    y: np.ndarray,
    val_fraction: float | None = None,
    val_size: int | None = None,
    seed: int = 0,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A seeded random split of (x, y) into training and validation parts.

    Args:
      x: (N, ...) inputs.
      y: (N, ...) targets.
      val_fraction: share of examples for validation, in (0, 1); default 0.1 when
        `val_size` is not given either.
      val_size: number of validation examples (instead of `val_fraction`).
      seed: the same seed gives the same split.

    Returns:
      `(x_train, y_train), (x_val, y_val)`, each in a shuffled order.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if val_fraction is not None and val_size is not None:
        raise ValueError("give val_fraction or val_size, not both")
    if val_size is None:
        val_fraction = 0.1 if val_fraction is None else val_fraction
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        val_size = round(len(x) * val_fraction)
    if not 0 <= val_size <= len(x):
        raise ValueError(f"val_size must be in 0..{len(x)}, got {val_size}")
    perm = np.random.default_rng(seed).permutation(len(x))
    val, train = perm[:val_size], perm[val_size:]
    return (x[train], y[train]), (x[val], y[val])
