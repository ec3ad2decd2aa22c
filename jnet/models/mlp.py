"""`mlp`: the multilayer perceptron, dense and activation layers in a `serial`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jnet.layers.base import Layer
from jnet.layers.combinators import serial
from jnet.layers.core import dense, dropout, relu


def mlp(
    sizes: Sequence[int],
    activation: Callable[[], Layer] = relu,
    *,
    dropout_rate: float = 0.0,
    **dense_kwargs: Any,
) -> Layer:
    """`dense, activation, [dropout], ..., dense`: a multilayer perceptron.

    Args:
      sizes: the widths of the dense layers; the last is the output (logits).
      activation: factory of the hidden activation, e.g. `jnet.tanh`.
      dropout_rate: if > 0, a `dropout` after every hidden activation.
      **dense_kwargs: passed to every `dense` (`w_init`, `b_init`, `compute_dtype`).

    Example: `mlp([512, 10], w_init=jnet.initializers.normal(0.01),
    b_init=jnet.initializers.normal(0.01))` is tutorial 000's 784-512-10.
    """
    if isinstance(sizes, int) or not len(sizes):
        raise ValueError(f"mlp: sizes is a list of layer widths, e.g. [512, 10]; got {sizes!r}")
    layers = []
    for n in sizes[:-1]:
        layers += [dense(n, **dense_kwargs), activation()]
        if dropout_rate:
            layers.append(dropout(dropout_rate))
    return serial(*layers, dense(sizes[-1], **dense_kwargs))
