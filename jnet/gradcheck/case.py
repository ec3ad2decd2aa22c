"""A gradient-check case: a network factory, its loss, an input shape and how to draw
targets. Family modules (`conv_cases`, ...) build their cases from these; `registry`
gathers them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

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


def draw_input(
    net: Layer, key: jax.Array, shape: Shape, dtype: Any, id_range: tuple[int, int] | None = None
) -> jax.Array:
    """A random input for `net`: integer ids in `id_range` (default `[0, net.vocab_size)`)
    for a network that takes token ids (or whenever `id_range` is given), else normal
    in `dtype`. Repeated ids are likely in small vocabularies: the scatter-add's case."""
    if id_range is None and net.vocab_size is not None:
        id_range = (0, net.vocab_size)
    if id_range is not None:
        return jax.random.randint(key, tuple(shape), id_range[0], id_range[1], jnp.int32)
    return jax.random.normal(key, tuple(shape), dtype)


class Case(NamedTuple):
    """A network, its loss, an input shape and how to draw targets for its outputs.

    The input is drawn by `draw_input`: token ids for a network whose `vocab_size` is set
    (an embedding first), floats otherwise."""

    net: Callable[[], Layer]
    loss: Loss
    input_shape: Shape
    targets: Callable[[jax.Array, Shape, Any], jax.Array]
    uses_key: bool = False  # pass a dropout key to forward


def targets_for(loss: Loss) -> Callable[[jax.Array, Shape, Any], jax.Array]:
    """The target drawer that fits a loss, by the loss's name (regression targets otherwise)."""
    drawers = {"softmax_cross_entropy": labels, "sigmoid_binary_cross_entropy": binary}
    return drawers.get(loss.name, regression)
