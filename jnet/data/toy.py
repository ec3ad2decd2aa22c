"""Tiny built-in datasets."""

from __future__ import annotations

import numpy as np


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The four XOR points: not linearly separable, so a network needs a hidden layer.

    Returns:
      `(x, y)`: x float32 (4, 2) with rows 00, 01, 10, 11; y float32 (4, 1) = x0 XOR x1.
    """
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    return x, y
