"""Core layers: dense, the activations, flatten and dropout, each with a hand-written backward.

Every backward works over any leading axes, so the same code serves `(N, D)` batches
and the per-example `(D,)` shapes it sees under `jax.vmap`. Shapes and dtypes are
checked in Python while tracing, so a bad input raises a `ValueError` that names the
layer, never an XLA error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jnet import initializers
from jnet.layers.base import Layer
from jnet.layers.checks import check_float, param_dict


def _elementwise(name: str, fn: Callable, grad: Callable) -> Layer:
    """A parameter-free layer `y = fn(x)`; `grad(x, y, dy) -> dx`."""

    def init(key, input_shape):
        return tuple(input_shape), ()

    def forward(params, x, *, key=None):
        check_float(name, x)
        y = fn(x)
        return y, (x, y)

    def backward(params, cache, dy):
        x, y = cache
        return (), grad(x, y, dy)

    return Layer(init, forward, backward, name)


def relu() -> Layer:
    """max(x, 0); its gradient at exactly 0 is taken as 0 (as `jax.nn.relu`)."""
    return _elementwise("relu()", jax.nn.relu, lambda x, y, dy: jnp.where(x > 0, dy, 0))


def leaky_relu(alpha: float = 0.01) -> Layer:
    """x for x > 0, alpha * x otherwise."""
    return _elementwise(
        f"leaky_relu({alpha})",
        lambda x: jnp.where(x > 0, x, alpha * x),
        lambda x, y, dy: jnp.where(x > 0, dy, alpha * dy),
    )


def sigmoid() -> Layer:
    """1 / (1 + exp(-x)); backward uses the output: dy * y * (1 - y)."""
    return _elementwise("sigmoid()", jax.nn.sigmoid, lambda x, y, dy: dy * y * (1 - y))


def tanh() -> Layer:
    """tanh(x); backward uses the output: dy * (1 - y**2)."""
    return _elementwise("tanh()", jnp.tanh, lambda x, y, dy: dy * (1 - y * y))


def softmax() -> Layer:
    """Softmax over the last axis. For training, prefer logits + softmax_cross_entropy."""

    def grad(x, y, dy):
        return y * (dy - jnp.sum(dy * y, axis=-1, keepdims=True))

    return _elementwise("softmax()", lambda x: jax.nn.softmax(x, axis=-1), grad)


def dense(
    n: int,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    *,
    compute_dtype: Any = None,
) -> Layer:
    """Fully connected layer `y = x @ w + b` over any leading axes.

    Args:
      n: output features.
      w_init: weight initializer, `(fan_in, n)`; default Glorot normal.
      b_init: bias initializer, `(n,)`; default zeros.
      compute_dtype: e.g. `jnp.bfloat16` to run both matmuls in that dtype with
        float32 accumulation, keeping parameters and outputs in their own dtype.

    Shapes: x `(..., d)` -> y `(..., n)`; params `{"w": (d, n), "b": (n,)}`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"dense: n is the number of output features, an int >= 1; got {n!r}")
    if compute_dtype is not None and not jnp.issubdtype(compute_dtype, jnp.floating):
        raise ValueError(
            f"dense({n}): compute_dtype must be floating point; got {jnp.dtype(compute_dtype)}"
        )
    name = f"dense({n})"
    w_init = w_init or initializers.glorot_normal()
    b_init = b_init or initializers.zeros()

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input shape must be (..., features); got {input_shape}")
        wkey, bkey = jax.random.split(key)
        params = {"w": w_init(wkey, (input_shape[-1], n)), "b": b_init(bkey, (n,))}
        return tuple(input_shape[:-1]) + (n,), params

    def forward(params, x, *, key=None):
        check_float(name, x)
        w, b = _weights(name, params)
        d = w.shape[0]
        if w.shape[1:] != (n,) or b.shape != (n,):
            raise ValueError(
                f"{name}: params hold w {w.shape} and b {b.shape}, not (d, {n}) and ({n},): "
                "they are another layer's"
            )
        if x.ndim < 1 or x.shape[-1] != d:
            raise ValueError(
                f"{name}: input has shape {x.shape} but this layer was initialised for "
                f"{d} input features; expected (..., {d})"
            )
        if compute_dtype is None:
            return x @ params["w"] + params["b"], x  # cache = x
        xc = x.astype(compute_dtype)
        y = jnp.matmul(xc, params["w"].astype(compute_dtype), preferred_element_type=x.dtype)
        return y + params["b"], xc

    def backward(params, x, dy):
        # Fold all leading axes: one code path for batches and for vmap's per-example shapes.
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        w = params["w"]
        if compute_dtype is None:
            return {"w": x2.T @ dy2, "b": dy2.sum(0)}, dy @ w.T
        dyc = dy.astype(compute_dtype)
        dw = jnp.matmul(x2.T, dyc.reshape(dy2.shape), preferred_element_type=w.dtype)
        dx = jnp.matmul(dyc, w.T.astype(compute_dtype), preferred_element_type=dy.dtype)
        return {"w": dw, "b": dy2.sum(0)}, dx

    return Layer(init, forward, backward, name)


def _weights(name: str, params: Any) -> tuple[jax.Array, jax.Array]:
    params = param_dict(name, params, {"w", "b"})
    return params["w"], params["b"]


def flatten(ndim: int | None = None) -> Layer:
    """Merges the trailing feature axes: `(N, d1, d2, ...) -> (N, d1 * d2 * ...)`.

    Args:
      ndim: how many trailing axes to merge; default all but the leading batch
        axis. Pass it (e.g. `flatten(2)` for 28x28 images) to run under `jax.vmap`,
        where the batch axis is hidden.
    """
    if ndim is not None and (isinstance(ndim, bool) or not isinstance(ndim, int) or ndim < 1):
        raise ValueError(f"flatten: ndim is how many trailing axes to merge, >= 1; got {ndim}")
    name = "flatten()" if ndim is None else f"flatten({ndim})"
    need = 2 if ndim is None else ndim  # default: a batch axis plus at least one to merge

    def merged(shape):
        if len(shape) < need:
            raise ValueError(
                f"{name}: input has shape {tuple(shape)}; expected at least {need} axes"
                + (" (batch, features...)" if ndim is None else "")
            )
        k = len(shape) - 1 if ndim is None else ndim
        size = 1
        for d in shape[len(shape) - k :]:
            size *= d
        return tuple(shape[: len(shape) - k]) + (size,)

    def init(key, input_shape):
        return merged(tuple(input_shape)), ()

    def forward(params, x, *, key=None):
        return x.reshape(merged(x.shape)), x  # cache = x, for its shape (residuals must be arrays)

    def backward(params, x, dy):
        return (), dy.reshape(x.shape)

    return Layer(init, forward, backward, name)


def dropout(rate: float) -> Layer:
    """Inverted dropout: zeroes each unit with probability `rate`, scales the rest by 1/(1-rate).

    With `key=None` (inference) it is the identity. The mask is part of the cache,
    so backward reuses the forward's mask and never redraws it.
    """
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
        raise ValueError(
            f"dropout: rate is the drop probability and must be in [0, 1); got {rate!r}"
        )
    name = f"dropout({rate})"

    def init(key, input_shape):
        return tuple(input_shape), ()

    def forward(params, x, *, key=None):
        check_float(name, x)
        if key is None or rate == 0.0:
            return x, None
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        scale = jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(x.dtype)
        return x * scale, scale

    def backward(params, scale, dy):
        return (), dy if scale is None else dy * scale

    return Layer(init, forward, backward, name)
