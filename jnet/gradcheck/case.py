"""A gradient-check case: a network factory, its loss, an input shape and how to draw
targets. Family modules (`conv_cases`, ...) build their cases from these; `registry`
gathers them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from jnet.layers import Layer, Shape
from jnet.losses import Loss


def labels(key, out_shape, dtype):
    return jax.random.randint(key, out_shape[:-1], 0, out_shape[-1])


def onehot(key, out_shape, dtype):
    return jax.nn.one_hot(labels(key, out_shape, dtype), out_shape[-1], dtype=dtype)


def binary(key, out_shape, dtype):
    return jax.random.bernoulli(key, 0.5, out_shape[:1]).astype(dtype)  # (N,), outputs (N, 1)


def regression(key, out_shape, dtype):
    return jax.random.normal(key, out_shape, dtype)


class Case(NamedTuple):
    """A network, its loss, an input shape and how to draw targets for its outputs."""

    net: Callable[[], Layer]
    loss: Loss
    input_shape: Shape
    targets: Callable[[jax.Array, Shape, Any], jax.Array]
    uses_key: bool = False  # pass a dropout key to forward


def targets_for(loss: Loss) -> Callable[[jax.Array, Shape, Any], jax.Array]:
    """The target drawer that fits a loss, by the loss's name (regression targets otherwise)."""
    drawers = {"softmax_cross_entropy": labels, "sigmoid_binary_cross_entropy": binary}
    return drawers.get(loss.name, regression)
