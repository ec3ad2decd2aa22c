"""Accuracy, batched jit-compiled evaluation and prediction, and input validation."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet import arguments
from jnet.layers import Layer, Params
from jnet.losses import (
    Loss,
    mean_squared_error,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)


def _same(loss: Loss, builtin: Loss) -> bool:
    """Whether `loss` is `builtin` or a copy of it (`Loss(*builtin)`): the same forward."""
    return loss.forward is builtin.forward


def accuracy(loss: Loss, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Fraction of correct predictions.

    Several outputs `(N, C)`: argmax against integer labels or one-hot targets.
    One output `(N, 1)` or `(N,)`: threshold 0 for logits (sigmoid binary cross
    entropy, i.e. probability 0.5), else 0.5 (e.g. a sigmoid layer trained with MSE).
    """
    if outputs.ndim >= 1 and outputs.shape[-1] > 1:
        predicted = jnp.argmax(outputs, axis=-1)
        true = targets if jnp.issubdtype(targets.dtype, jnp.integer) else jnp.argmax(targets, -1)
    else:
        threshold = 0.0 if _same(loss, sigmoid_binary_cross_entropy) else 0.5
        predicted = outputs.reshape(-1) > threshold
        true = targets.reshape(-1) > 0.5
    return jnp.mean(predicted == true)


def _batch_sums(net, loss, params, x, y):
    outputs, _ = net.forward(params, x)
    n = x.shape[0]
    return loss.forward(outputs, y)[0] * n, accuracy(loss, outputs, y) * n


def evaluate_arrays(
    net: Layer, loss: Loss, params: Params, x: jax.Array, y: jax.Array, batch_size: int
) -> dict[str, jax.Array]:
    """Traceable evaluation: full batches in a `lax.scan`, then the remainder as one batch.

    x `(N, ...)`, y its `(N, ...)` targets. Returns `{"loss", "accuracy"}`, scalars:
    the mean loss and the fraction right over all N. Shapes are static, so inside a jit
    this compiles once; it is what `evaluate` and `fit`'s validation run.
    """
    n = x.shape[0]
    full = (n // batch_size) * batch_size
    # Accumulate in the dtype the sums come in (float64 for float64 params): a fixed
    # float32 carry would not match the scan body's output type.
    sums = jax.eval_shape(lambda p, xb, yb: _batch_sums(net, loss, p, xb, yb), params, x[:1], y[:1])
    loss_sum, correct = (jnp.zeros((), s.dtype) for s in sums)
    if full:
        xb = x[:full].reshape((-1, batch_size) + x.shape[1:])
        yb = y[:full].reshape((-1, batch_size) + y.shape[1:])

        def body(carry, batch):
            s = _batch_sums(net, loss, params, *batch)
            return (carry[0] + s[0], carry[1] + s[1]), None

        (loss_sum, correct), _ = jax.lax.scan(body, (loss_sum, correct), (xb, yb))
    if full < n:
        s = _batch_sums(net, loss, params, x[full:], y[full:])
        loss_sum, correct = loss_sum + s[0], correct + s[1]
    return {"loss": loss_sum / n, "accuracy": correct / n}


@functools.lru_cache(maxsize=64)
def _evaluator(net: Layer, loss: Loss, batch_size: int):
    return jax.jit(functools.partial(evaluate_arrays, net, loss, batch_size=batch_size))


def evaluate(
    net: Layer, loss: Loss, params: Params, x: Any, y: Any, *, batch_size: int = 10_000
) -> dict[str, float]:
    """Mean loss and accuracy over `(x, y)`, jit-compiled and batched.

    Args:
      x: inputs `(N, ...)`, floating point. y: targets `(N, ...)`.
      batch_size: examples per compiled batch (the last partial batch runs on its own).
    Returns:
      `{"loss": float, "accuracy": float}`.
    """
    arguments.network_and_loss("evaluate", net, loss)
    arguments.positive_int("evaluate", "batch_size", batch_size)
    x, y = validate_data(net, loss, params, x, y, "evaluate")
    metrics = _evaluator(net, loss, min(batch_size, x.shape[0]))(params, x, y)
    return {k: float(v) for k, v in metrics.items()}


@functools.lru_cache(maxsize=64)
def _predictor(net: Layer):
    return jax.jit(lambda params, x: net.forward(params, x)[0])


def predict(net: Layer, params: Params, x: Any, *, batch_size: int = 10_000) -> np.ndarray:
    """Network outputs (inference mode, no dropout) for `x (N, ...)`, as numpy, in batches."""
    arguments.network("predict", net)
    arguments.positive_int("predict", "batch_size", batch_size)
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"predict: x must have a batch axis, (N, ...); got shape {x.shape}")
    f = _predictor(net)
    starts = range(0, max(x.shape[0], 1), batch_size)  # N = 0: one empty batch, right shape
    return np.concatenate([np.asarray(f(params, x[i : i + batch_size])) for i in starts])


def validate_data(
    net: Layer, loss: Loss, params: Params, x: Any, y: Any, where: str
) -> tuple[jax.Array, jax.Array]:
    """Checks concrete data at the boundary of `fit`/`evaluate`; returns `(x, y)` as arrays.

    Raises ValueError for: length mismatch, non-float or non-finite x, inputs the
    network cannot take, targets the loss cannot take, labels outside [0, classes),
    integer one-hot targets, one-hot / probability targets outside [0, 1] or not
    summing to 1, targets outside [0, 1] for binary cross entropy.
    """
    x_np, y_np = np.asarray(x), np.asarray(y)
    if x_np.ndim < 1 or y_np.ndim < 1 or x_np.shape[0] != y_np.shape[0]:
        raise ValueError(
            f"{where}: x and y must have the same length; got x {x_np.shape}, y {y_np.shape}"
        )
    if x_np.shape[0] == 0:
        raise ValueError(f"{where}: got an empty dataset (x {x_np.shape})")
    if not np.issubdtype(x_np.dtype, np.floating):
        raise ValueError(
            f"{where}: x must be floating point; got {x_np.dtype}. Scale it first, e.g. "
            "jnet.data.scale(x) for uint8 images"
        )
    if not np.all(np.isfinite(x_np)):
        bad = int(np.sum(~np.isfinite(x_np)))
        raise ValueError(f"{where}: x contains {bad} NaN or inf values")
    # Shapes only (no compute), at the data's full size, so messages show its real shapes.
    x_abstract = jax.ShapeDtypeStruct(x_np.shape, x_np.dtype)
    try:
        out = jax.eval_shape(lambda p, x: net.forward(p, x)[0], params, x_abstract)
    except ValueError as e:
        raise ValueError(
            f"{where}: x of shape {x_np.shape} does not fit the network: {e}"
        ) from None
    if _same(loss, softmax_cross_entropy) and np.issubdtype(y_np.dtype, np.integer):
        classes = out.shape[-1]
        if y_np.shape == out.shape:
            raise ValueError(
                f"{where}: y of shape {y_np.shape} looks one-hot but is {y_np.dtype}; pass "
                f"integer labels of shape {out.shape[:-1]}, or one-hot as floats "
                "(y.astype('float32'))"
            )
        lo, hi = int(y_np.min()), int(y_np.max())
        if lo < 0 or hi >= classes:
            raise ValueError(
                f"{where}: labels must lie in [0, {classes}) for a network with {classes} "
                f"outputs; got labels in [{lo}, {hi}]"
            )
    elif _same(loss, softmax_cross_entropy) and y_np.shape == out.shape:
        sums = y_np.sum(axis=-1)
        if not np.all(np.isfinite(y_np)) or np.any((y_np < 0) | (y_np > 1)):
            raise ValueError(f"{where}: one-hot / probability targets must lie in [0, 1]")
        if np.any(np.abs(sums - 1) > 1e-3):
            raise ValueError(
                f"{where}: one-hot / probability targets must sum to 1 over the last axis; "
                f"got sums in [{sums.min():g}, {sums.max():g}]"
            )
    elif _same(loss, sigmoid_binary_cross_entropy):
        if np.any((y_np < 0) | (y_np > 1)) or not np.all(np.isfinite(y_np)):
            raise ValueError(
                f"{where}: binary targets must lie in [0, 1]; got {np.unique(y_np)[:10]}"
            )
    elif np.issubdtype(y_np.dtype, np.floating) and not np.all(np.isfinite(y_np)):
        raise ValueError(f"{where}: y contains NaN or inf values")
    try:  # target shapes
        jax.eval_shape(lambda o, t: loss.forward(o, t)[0], out, y_np)
    except ValueError as e:
        raise ValueError(
            f"{where}: y of shape {y_np.shape} does not fit the network's outputs {out.shape}: {e}"
        ) from None
    if (
        _same(loss, mean_squared_error)
        and out.shape[-1] > 1
        and np.issubdtype(y_np.dtype, np.integer)
    ):
        raise ValueError(
            f"{where}: mean_squared_error needs float targets of the outputs' shape "
            f"{out.shape}; got {y_np.dtype} (one-hot targets: y.astype('float32'))"
        )
    return jnp.asarray(x_np), jnp.asarray(y_np)
