"""Weight and bias initializers: `init_fn(key, shape, dtype) -> array`.

Plain (untruncated) normals, as the tutorials draw them with `np.random.randn`;
`jax.nn.initializers` truncates its Glorot/He normals, which would not reproduce them.
A dense weight has shape `(fan_in, fan_out)`; a convolution kernel `(kh, kw, in, out)` (HWIO),
whose fans count the receptive field: fan_in = kh * kw * in, fan_out = kh * kw * out.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if any(isinstance(n, bool) or not isinstance(n, numbers.Integral) for n in shape):
        raise TypeError(
            f"fan-based initializers need a weight shape of ints (fan_in, fan_out); got {shape}"
        )
    if len(shape) < 2:
        raise ValueError(
            f"fan-based initializers need a weight shape (fan_in, fan_out); got {shape}"
        )
    receptive = math.prod(shape[:-2])  # 1 for a dense matrix
    return receptive * shape[-2], receptive * shape[-1]


def zeros() -> Initializer:
    """All zeros (the usual bias init)."""
    return lambda key, shape, dtype=float: jnp.zeros(shape, dtype)


def normal(stddev: float = 0.01) -> Initializer:
    """`stddev * randn`: the tutorials' `np.random.randn(...) * 0.01`."""
    return lambda key, shape, dtype=float: stddev * jax.random.normal(key, shape, dtype)


def uniform(low: float = -0.5, high: float = 0.5) -> Initializer:
    """U(low, high): tutorial 003's `np.random.rand(...) - 0.5`."""
    return lambda key, shape, dtype=float: jax.random.uniform(key, shape, dtype, low, high)


def _scaled_normal(scale: Callable[[int, int], float]) -> Initializer:
    def init(key, shape, dtype=float):
        fan_in, fan_out = _fans(shape)
        return scale(fan_in, fan_out) * jax.random.normal(key, shape, dtype)

    return init


def glorot_normal() -> Initializer:
    """randn * sqrt(2 / (fan_in + fan_out)) (tutorial 004's Glorot init)."""
    return _scaled_normal(lambda fan_in, fan_out: (2.0 / (fan_in + fan_out)) ** 0.5)


def he_normal() -> Initializer:
    """randn * sqrt(2 / fan_in), for ReLU networks."""
    return _scaled_normal(lambda fan_in, fan_out: (2.0 / fan_in) ** 0.5)


def lecun_normal() -> Initializer:
    """randn / sqrt(fan_in) (the deep-learning course's L-layer init)."""
    return _scaled_normal(lambda fan_in, fan_out: fan_in**-0.5)


def glorot_uniform() -> Initializer:
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio; Flax's and Keras's
    default for dense kernels)."""

    def init(key, shape, dtype=float):
        fan_in, fan_out = _fans(shape)
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    return init
