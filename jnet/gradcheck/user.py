"""Checking a user's own layer: draw parameters, inputs and targets for it, then check it.

Shared by `jnet.testing.assert_gradients` and `python -m jnet.gradcheck MODULE:FACTORY`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet import losses
from jnet.gradcheck.compare import compiled, on_device
from jnet.gradcheck.gradients import check_gradients
from jnet.gradcheck.report import GradientReport
from jnet.layers.base import Layer, init_with_state

LOSSES = {
    "mean_squared_error": losses.mean_squared_error,
    "softmax_cross_entropy": losses.softmax_cross_entropy,
    "sigmoid_binary_cross_entropy": losses.sigmoid_binary_cross_entropy,
}


def _targets(loss_name: str, rng: np.random.Generator, out_shape: tuple, dtype: Any):
    """Targets that fit the loss, as `case.targets_for` draws them, with numpy."""
    if loss_name == "softmax_cross_entropy":
        return rng.integers(0, out_shape[-1], out_shape[:-1])  # labels
    if loss_name == "sigmoid_binary_cross_entropy":
        return rng.integers(0, 2, out_shape[:1]).astype(dtype)  # (N,), outputs (N, 1)
    return rng.standard_normal(out_shape).astype(dtype)


def _drawn(layer: Layer, seed: int, shape: tuple, dtype: Any, training: bool) -> tuple:
    """`(out_shape, params, state, training key)`: the layer's own init at `key(seed)`,
    floating leaves cast to `dtype`, and `key(seed + 1)` when training (else None).

    One compiled program: eager `jax.random` compiles a program per operation, which took
    longer than checking a small layer. An init that does not trace runs eagerly.
    """
    box = {}

    def draw(seed):
        box["out_shape"], params, state = init_with_state(layer, jax.random.key(seed), shape)

        def cast(a):
            floating = jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != dtype
            return a.astype(dtype) if floating else a

        k_train = jax.random.key(seed + 1) if training else None
        return jax.tree.map(cast, params), jax.tree.map(cast, state), k_train

    try:
        drawn = compiled(draw, jax.eval_shape(draw, seed))(seed)
    except jax.errors.JAXTypeError:  # e.g. a Python branch on a drawn value
        drawn = draw(seed)
    return box["out_shape"], *drawn


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
    # float64 without jax_enable_x64 is float32: say so with jnet's own warning (from
    # check_gradients), not JAX's truncation warning at every draw.
    dtype = jax.dtypes.canonicalize_dtype(dtype)
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
    # Inputs and targets are drawn with numpy: jax.random would compile a program per draw,
    # which cost more than the check of a small layer itself.
    rng = np.random.default_rng(seed)
    if isinstance(input_shape, jax.Array):
        x = input_shape
    else:
        shape = tuple(int(d) for d in input_shape)
        if input_range is None and layer.vocab_size is not None:
            input_range = (0, layer.vocab_size)
        if input_range is not None:  # token ids: repeats are likely, the scatter-add's case
            ids = rng.integers(input_range[0], input_range[1], shape)
            x = on_device(ids.astype(input_dtype if integer else np.int32))
        else:
            x = on_device(rng.standard_normal(shape).astype(dtype))
    out_shape, params, state, k_train = _drawn(layer, seed, x.shape, dtype, training)
    y = on_device(_targets(loss.name, rng, tuple(out_shape), dtype))
    options.setdefault("raise_on_failure", False)
    options.setdefault("name", layer.name)
    return check_gradients(
        layer, loss, params, x, y, key=k_train,
        state=state if layer.stateful else None, seed=seed, **options,
    )  # fmt: skip
