"""Checks shared by the layer families: run in Python while tracing, so a bad input raises
a ValueError that names the layer instead of reaching XLA."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def check_float(name: str, x: jax.Array, what: str = "input") -> None:
    """Raises a ValueError naming `name` unless `x` is a floating-point array."""
    if not hasattr(x, "dtype"):  # a list would reach XLA as a wall of numbers
        raise ValueError(
            f"{name}: {what} must be an array; got {type(x).__name__} (jnp.asarray it first)"
        )
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise ValueError(
            f"{name}: {what} must be a floating-point array; got dtype {jnp.result_type(x)} "
            f"with shape {jnp.shape(x)} (convert it, e.g. x.astype('float32') / 255)"
        )


def check_ndim(name: str, x: jax.Array, ndim: int, layout: str) -> None:
    """Raises unless `x` has exactly `ndim` axes; `layout` names them, e.g. "(N, H, W, C)"."""
    if x.ndim != ndim:
        raise ValueError(f"{name}: input has shape {x.shape}; expected {ndim} axes {layout}")


def check_features(name: str, x: jax.Array, expected: int, what: str = "features") -> None:
    """Raises unless the last axis of `x` has the size the layer was initialised for."""
    if x.shape[-1] != expected:
        raise ValueError(
            f"{name}: input has shape {x.shape} but this layer was initialised for "
            f"{expected} input {what}; expected (..., {expected})"
        )


def positive_int(name: str, what: str, value: Any) -> int:
    """`value` if it is an int >= 1 (not a bool); else a ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: {what} must be an int >= 1; got {value!r}")
    return value


def int_pair(name: str, what: str, value: Any) -> tuple[int, int]:
    """An int or a pair of ints >= 1 as a pair, e.g. a kernel size or stride."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)
    ):
        raise ValueError(f"{name}: {what} must be an int >= 1 or a pair of them; got {value!r}")
    return tuple(pair)


def param_dict(name: str, params: Any, keys: set[str]) -> dict:
    """`params` if it is a dict with exactly `keys`; else a ValueError naming the layer."""
    if not isinstance(params, dict) or set(params) != keys:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}: params must be a dict with {sorted(keys)}; got {got}")
    return params
