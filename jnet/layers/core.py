"""Core layers: dense, the activations (gelu among them), flatten and dropout, each with a
hand-written backward.

Every backward works over any leading axes, so the same code serves `(N, D)` batches
and the per-example `(D,)` shapes it sees under `jax.vmap`. Shapes and dtypes are
checked in Python while tracing, so a bad input raises a `ValueError` that names the
layer, never an XLA error.
"""

from __future__ import annotations

import math
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


def gelu(approximate: bool = False) -> Layer:
    """GELU, `x * Phi(x)`: the exact erf form by default (PyTorch's `nn.GELU()`, nanoGPT).

    `approximate=True` is the tanh form of GPT-2 and llm.c (`jax.nn.gelu`'s default):
    `0.5 x (1 + tanh(u))`, `u = sqrt(2/pi) (x + 0.044715 x^3)`. Backward by hand:
    exact `Phi(x) + x phi(x)`; tanh `0.5 (1 + t) + 0.5 x (1 - t^2) u'(x)`.
    """
    if not isinstance(approximate, bool):
        raise ValueError(f"gelu: approximate must be True or False; got {approximate!r}")
    if approximate:
        c = math.sqrt(2.0 / math.pi)

        def fn(x):
            return 0.5 * x * (1 + jnp.tanh(c * (x + 0.044715 * x**3)))

        def grad(x, y, dy):
            t = jnp.tanh(c * (x + 0.044715 * x**3))
            du = c * (1 + 3 * 0.044715 * x * x)
            return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)

        return _elementwise("gelu(approximate=True)", fn, grad)

    def exact(x):
        return 0.5 * x * (1 + jax.lax.erf(x / math.sqrt(2.0)))

    def exact_grad(x, y, dy):
        cdf = 0.5 * (1 + jax.lax.erf(x / math.sqrt(2.0)))
        return dy * (cdf + x * jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi))

    return _elementwise("gelu()", exact, exact_grad)


def dense(
    n: int,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    *,
    bias: bool = True,
    compute_dtype: Any = None,
) -> Layer:
    """Fully connected layer `y = x @ w + b` over any leading axes.

    Args:
      n: output features.
      w_init: weight initializer, `(fan_in, n)`; default Glorot normal.
      b_init: bias initializer, `(n,)`; default zeros.
      bias: False leaves out `b` (params `{"w"}` alone), as nanoGPT's `bias=False`.
      compute_dtype: e.g. `jnp.bfloat16` to run both matmuls in that dtype with
        float32 accumulation, keeping parameters and outputs in their own dtype.

    Shapes: x `(..., d)` -> y `(..., n)`; params `{"w": (d, n), "b": (n,)}`. A PyTorch
    `nn.Linear` loads as `w = weight.T`, `b = bias`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"dense: n is the number of output features, an int >= 1; got {n!r}")
    return width_dense(lambda d: n, f"dense({n})", w_init, b_init, bias=bias,
                       compute_dtype=compute_dtype)  # fmt: skip


def width_dense(
    width: Callable[[int], int],
    name: str,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    *,
    bias: bool = True,
    compute_dtype: Any = None,
) -> Layer:
    """`dense` whose output width is `width(d)` of its input width `d`: the transformer's
    `dense(4·D)` and `dense(D)`, built before D is known. Same params and backward."""
    if not isinstance(bias, bool):
        raise ValueError(f"{name}: bias must be True or False; got {bias!r}")
    if compute_dtype is not None and not jnp.issubdtype(compute_dtype, jnp.floating):
        raise ValueError(
            f"{name}: compute_dtype must be floating point; got {jnp.dtype(compute_dtype)}"
        )
    w_init = w_init or initializers.glorot_normal()
    b_init = b_init or initializers.zeros()
    keys = {"w", "b"} if bias else {"w"}

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input shape must be (..., features); got {input_shape}")
        n = width(input_shape[-1])
        wkey, bkey = jax.random.split(key)
        params = {"w": w_init(wkey, (input_shape[-1], n))}
        if bias:
            params["b"] = b_init(bkey, (n,))
        return tuple(input_shape[:-1]) + (n,), params

    def forward(params, x, *, key=None):
        check_float(name, x)
        w = param_dict(name, params, keys)["w"]
        d = w.shape[0]
        n = width(d)
        b_shape = params["b"].shape if bias else (n,)
        if w.shape[1:] != (n,) or b_shape != (n,):
            held = f"w {w.shape} and b {b_shape}" if bias else f"w {w.shape}"
            raise ValueError(
                f"{name}: params hold {held}, not (d, {n}) and ({n},): they are another layer's"
            )
        if x.ndim < 1 or x.shape[-1] != d:
            raise ValueError(
                f"{name}: input has shape {x.shape} but this layer was initialised for "
                f"{d} input features; expected (..., {d})"
            )
        if compute_dtype is None:
            y = x @ w
            return (y + params["b"] if bias else y), x  # cache = x
        xc = x.astype(compute_dtype)
        y = jnp.matmul(xc, w.astype(compute_dtype), preferred_element_type=x.dtype)
        return (y + params["b"] if bias else y), xc

    def backward(params, x, dy):
        # Fold all leading axes: one code path for batches and for vmap's per-example shapes.
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        w = params["w"]
        if compute_dtype is None:
            grads, dx = {"w": x2.T @ dy2}, dy @ w.T
        else:
            dyc = dy.astype(compute_dtype)
            dw = jnp.matmul(x2.T, dyc.reshape(dy2.shape), preferred_element_type=w.dtype)
            dx = jnp.matmul(dyc, w.T.astype(compute_dtype), preferred_element_type=dy.dtype)
            grads = {"w": dw}
        if bias:
            grads["b"] = dy2.sum(0)
        return grads, dx

    return Layer(init, forward, backward, name)


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
