"""Checks of the plain Python arguments of `fit`, `evaluate` and `predict` (and of flags).

A wrong count, key or optimizer should fail at the call with its name and what was
expected, not as a ZeroDivisionError or an AttributeError from deep inside.
"""

from __future__ import annotations

import argparse
import numbers
from typing import Any

import jax
import numpy as np
import optax

from jnet.layers import Layer
from jnet.layers.checks import is_real_scalar as _is_real_scalar
from jnet.losses import Loss


def positive_int(where: str, name: str, value: Any, *, optional: bool = False) -> None:
    """Raises unless `value` is an int >= 1 (or None, when `optional`)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"{where}: {name} must be a positive integer"
            + (" or None" if optional else "")
            + f"; got {value!r}"
        )


def positive_int_flag(text: str) -> int:
    """argparse `type=` for a count flag (`python -m jnet.distributed --processes N`): int >= 1.

    `positive_int`'s rule, reported the argparse way (the flag's name, exit status 2).
    """
    try:
        value = int(text)
        positive_int("flag", "value", value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer (1 or more), got {text!r}"
        ) from None
    return value


def prng_key(where: str, key: Any) -> None:
    """Raises unless `key` is a JAX PRNG key: `jax.random.key(seed)` or `PRNGKey(seed)`."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        ok = np.shape(key) == ()
    else:
        ok = dtype == np.uint32 and np.shape(key) == (2,)  # a legacy raw key
    if not ok:
        raise TypeError(
            f"{where}: key must be one JAX PRNG key, e.g. jax.random.key(0); got {_describe(key)}"
        )


def optimizer(where: str, value: Any) -> tuple[optax.GradientTransformation, Any]:
    """`(transformation, label)`: an optax transformation as is, a number as plain SGD.

    `label` is the learning rate (a float) for a number, else the transformation.
    """
    if isinstance(value, optax.GradientTransformation):
        return value, value
    if _is_real_scalar(value):
        rate = float(value)
        return optax.sgd(rate), rate
    raise TypeError(
        f"{where}: optimizer must be an optax GradientTransformation (e.g. optax.adam(1e-3)) "
        f"or a learning rate for plain SGD; got {_describe(value)}"
    )


def network(where: str, net: Any) -> None:
    """Raises unless `net` is a `jnet.Layer`."""
    if not isinstance(net, Layer):
        raise TypeError(
            f"{where}: net must be a jnet.Layer (e.g. jnet.serial(...)); got {_describe(net)}"
        )


def network_and_loss(where: str, net: Any, loss: Any) -> None:
    """Raises unless `net` is a `jnet.Layer` and `loss` a `jnet.Loss` (in that order)."""
    network(where, net)
    if not isinstance(loss, Loss):
        raise TypeError(
            f"{where}: loss must be a jnet.Loss (e.g. jnet.softmax_cross_entropy); "
            f"got {_describe(loss)}"
        )


def pair(where: str, name: str, value: Any) -> None:
    """Raises unless `value` is an `(x, y)` pair."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"{where}: {name} must be a pair (x, y); got {_describe(value)}")


def float_params(where: str, params: Any) -> None:
    """Raises naming the first parameter leaf that is not floating point (it cannot train)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        dtype = jax.numpy.result_type(leaf)
        if not jax.numpy.issubdtype(dtype, jax.numpy.floating):
            raise ValueError(
                f"{where}: parameters must be floating point; params{jax.tree_util.keystr(path)} "
                f"has dtype {dtype}"
            )


def _describe(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {np.shape(value)} and dtype {value.dtype}"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def non_negative(where: str, name: str, value: Any) -> float:
    """`value` as a float if it is a finite real number >= 0; else a ValueError naming it."""
    if not _is_real_scalar(value) or not np.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{where}: {name} must be a finite number >= 0; got {_describe(value)}")
    return float(value)
