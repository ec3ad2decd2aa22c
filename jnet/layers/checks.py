"""Checks shared by the layer families: run in Python while tracing, so a bad input raises
a ValueError that names the layer instead of reaching XLA."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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


def split_pair(name: str, x: Any) -> tuple[Any, Any, bool]:
    """`(x, mask, pair)` of a sequence layer's input: `x (N, T, D)` alone (mask None) or the
    pair `(x, mask)` that `masking` and the sequence layers pass on."""
    pair = isinstance(x, tuple | list)
    if pair and len(x) != 2:
        raise ValueError(
            f"{name}: input must be x (N, T, D) or a pair (x, mask); got a "
            f"{type(x).__name__} of {len(x)}"
        )
    x, mask = x if pair else (x, None)
    return x, mask, pair


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


def is_real_scalar(value: Any) -> bool:
    """Whether `value` is one real number: a Python or numpy scalar, or a 0-d array (no bool)."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, numbers.Real):  # int, float and numpy's scalars (np.float32(0.9))
        return True
    dtype = getattr(value, "dtype", None)  # a 0-d numpy or JAX array
    return dtype is not None and np.shape(value) == () and np.issubdtype(dtype, np.number)


def real_number(
    name: str, what: str, value: Any, ok: Callable[[float], bool], rule: str
) -> float:
    """`value` as a float if it is a real number (numpy scalars too) for which `ok` holds;
    else a ValueError naming the layer, the argument and `rule` (e.g. "finite and > 0")."""
    if not is_real_scalar(value) or not ok(float(value)):
        rule = f" {rule}" if rule else ""
        raise ValueError(f"{name}: {what} must be a number{rule}; got {value!r}")
    return float(value)


def finite_positive(v: float) -> bool:
    """`real_number`'s test for "finite and > 0" (an eps, a scale)."""
    return math.isfinite(v) and v > 0.0


def param_dict(name: str, params: Any, keys: set[str]) -> dict:
    """`params` if it is a dict with exactly `keys`; else a ValueError naming the layer."""
    if not isinstance(params, dict) or set(params) != keys:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}: params must be a dict with {sorted(keys)}; got {got}")
    return params


class BackwardError(ValueError):
    """A layer's backward returned something of the wrong structure, shape or dtype."""


def check_backward(name: str, backward: Any, params: Any, x: Any, cache: Any, y: Any) -> None:
    """Traces `backward(params, cache, dy)` abstractly (no compute, nothing added to the
    program) and checks what it returns: `dparams` with the structure, shapes and dtypes
    of `params`, `dx` with those of `x` (leaves of `x` that are not floating point, such
    as an integer mask, may get anything; None stands for a zero gradient anywhere).
    Mixed precision is allowed:
    a gradient may come in its leaf's dtype promoted with dy's. Raises a ValueError naming the
    layer, what was expected and what came back."""
    out = jax.eval_shape(backward, params, cache, y)
    if not isinstance(out, tuple | list) or len(out) != 2:
        got = f"a {type(out).__name__} of {len(out)}" if isinstance(out, tuple | list) else (
            type(out).__name__
        )
        raise BackwardError(f"{name}: backward must return a pair (dparams, dx); got {got}")
    dy_dtype = jnp.result_type(*jax.tree.leaves(y)) if jax.tree.leaves(y) else None
    _same_layout(name, "dparams", out[0], params, "params", dy_dtype)
    _same_layout(name, "dx", out[1], x, "the input x", dy_dtype)


def _same_layout(name: str, what: str, got: Any, want: Any, of: str, dy_dtype: Any) -> None:
    """Same structure and shapes; each dtype that of `want`'s leaf or, as with mixed
    precision, its promotion with the output gradient's dtype (float32 x, float64 w)."""
    treedef = jax.tree.structure(want)
    try:
        got_leaves = treedef.flatten_up_to(got)
    except (ValueError, TypeError):
        raise BackwardError(
            f"{name}: backward returned {what} of structure {jax.tree.structure(got)}; "
            f"expected the structure of {of}, {treedef}"
        ) from None
    for (path, w), g in zip(jax.tree_util.tree_leaves_with_path(want), got_leaves, strict=True):
        if g is None or not jnp.issubdtype(jnp.result_type(w), jnp.inexact):
            continue  # None is JAX's zero gradient (e.g. for a float mask); ints get none
        where = what + jax.tree_util.keystr(path)
        dtypes = {jnp.result_type(w)}
        if dy_dtype is not None:
            dtypes.add(jnp.promote_types(jnp.result_type(w), dy_dtype))
        if jnp.shape(g) != jnp.shape(w) or jnp.result_type(g) not in dtypes:
            shown = f"shape {jnp.shape(g)} and dtype {jnp.result_type(g)}"
            raise BackwardError(
                f"{name}: backward returned {where} of {shown}; expected shape "
                f"{jnp.shape(w)} and dtype {jnp.result_type(w)}, those of {of}"
            )
