"""Checking a user's own layer: draw parameters, inputs and targets for it, then check it.

Shared by `jnet.testing.assert_gradients` and `python -m jnet.gradcheck MODULE:FACTORY`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jnet import losses
from jnet.gradcheck.case import draw_input, targets_for
from jnet.gradcheck.gradients import check_gradients
from jnet.gradcheck.report import GradientReport
from jnet.layers.base import Layer, init_with_state

LOSSES = {
    "mean_squared_error": losses.mean_squared_error,
    "softmax_cross_entropy": losses.softmax_cross_entropy,
    "sigmoid_binary_cross_entropy": losses.sigmoid_binary_cross_entropy,
}


def load_factory(spec: str) -> Layer:
    """Imports `module.path:factory` (dots allowed after the colon) and calls it with no
    arguments; the result must be a `jnet.Layer`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected MODULE:FACTORY, e.g. mypkg.layers:my_layer; got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name!r} (is it on PYTHONPATH?): {e}") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    layer = obj() if callable(obj) and not isinstance(obj, Layer) else obj
    if not isinstance(layer, Layer):
        raise ValueError(f"{spec}() returned {type(layer).__name__}, not a jnet.Layer")
    return layer


def check_layer(
    layer: Layer,
    input_shape: Sequence[int] | jax.Array,
    *,
    loss: losses.Loss | str = losses.mean_squared_error,
    dtype: Any = jnp.float64,
    training: bool = False,
    seed: int = 0,
    input_dtype: Any = None,
    input_range: tuple[int, int] | None = None,
    **options: Any,
) -> GradientReport:
    """`check_gradients` on `layer` with random parameters, inputs and targets.

    Args:
      layer: any `jnet.Layer` (a network too).
      input_shape: the input's shape with its batch axis, e.g. `(8, 16)`; or an input array.
      loss: a `jnet.Loss` or the name of a built-in one; targets are drawn to fit it
        (labels for softmax cross entropy, 0/1 for binary cross entropy, normal otherwise).
      dtype: of the parameters and (a float) input.
      input_dtype: an integer dtype (e.g. `"int32"`) for a layer that takes integer input,
        such as token ids; default: integer ids in `[0, layer.vocab_size)` for a layer that
        says it takes them (an `embedding` first), else floats in `dtype`.
      input_range: `(low, high)`: integer inputs drawn from `[low, high)` (needed for an
        integer input_dtype unless the layer has a `vocab_size`).
      training: pass a PRNG key, so dropout draws masks and batch norm uses batch statistics.
      seed: seeds parameters, inputs, targets, key and probes.
      **options: passed to `check_gradients` (order, probes, rtol, fd_tol, fd_eps, ...).
    """
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        loss = LOSSES[loss]
    k_init, k_x, k_y, k_train = jax.random.split(jax.random.key(seed), 4)
    integer = input_dtype is not None and jnp.issubdtype(input_dtype, jnp.integer)
    if input_dtype is not None and not integer and input_range is not None:
        raise ValueError(f"input_range is for integer inputs; input_dtype is {input_dtype}")
    if integer and input_range is None and layer.vocab_size is None:
        raise ValueError(
            f"an integer input ({jnp.dtype(input_dtype)}) needs input_range=(low, high): "
            f"{layer.name} does not say which ids it takes"
        )
    if input_range is not None and not 0 <= input_range[0] < input_range[1]:
        raise ValueError(f"input_range must be (low, high) with 0 <= low < high; got "
                         f"{tuple(input_range)}")  # fmt: skip
    if isinstance(input_shape, jax.Array):
        x = input_shape
    else:
        shape = tuple(int(d) for d in input_shape)
        x = draw_input(layer, k_x, shape, dtype, None if input_range is None else
                       tuple(input_range))  # fmt: skip
        if integer:
            x = x.astype(input_dtype)
    out_shape, params, state = init_with_state(layer, k_init, x.shape)

    def cast(a):
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    params, state = jax.tree.map(cast, params), jax.tree.map(cast, state)
    y = targets_for(loss)(k_y, out_shape, dtype)
    options.setdefault("raise_on_failure", False)
    options.setdefault("name", layer.name)
    return check_gradients(
        layer, loss, params, x, y, key=k_train if training else None,
        state=state if layer.stateful else None, seed=seed, **options,
    )  # fmt: skip
