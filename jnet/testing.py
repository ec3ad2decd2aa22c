"""Gradient assertions for a test suite: `assert_gradients` raises an AssertionError whose
message is the full report (tables, tolerances, the failing layers).

    import jnet, jnet.testing

    def test_my_layer():
        jnet.testing.assert_gradients(my_layer(), (8, 16))     # a layer and an input shape
        jnet.testing.assert_gradients(my_fn, (x, w), reference=my_fn_plain)   # any function
        jnet.testing.assert_jvp(my_custom_jvp_fn, (x,), reference=plain, order=2)  # a JVP rule
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.gradcheck.jvp import check_jvp
from jnet.gradcheck.report import GradientReport, VJPReport
from jnet.gradcheck.user import check_layer
from jnet.gradcheck.vjp import check_vjp
from jnet.layers.base import Layer
from jnet.losses import Loss, mean_squared_error


def assert_gradients(
    layer_or_fn: Layer | Callable[..., Any],
    input_shape_or_args: Sequence[int] | tuple[Any, ...] | Any,
    *,
    loss: Loss | str = mean_squared_error,
    reference: Callable[..., Any] | None = None,
    dtype: Any = jnp.float64,
    training: bool = False,
    order: int = 1,
    probes: int | None = None,
    seed: int = 0,
    rtol: float | None = None,
    fd_tol: float | None = None,
    fd_eps: float | None = None,
) -> GradientReport | VJPReport:
    """Asserts that a layer's hand-written gradients, or a function's VJP, are right.

    Args:
      layer_or_fn: a `jnet.Layer` (checked with `check_gradients`, as a whole and layer by
        layer), or any function (checked with `check_vjp`).
      input_shape_or_args: for a layer, the input shape with its batch axis, e.g. `(8, 16)`
        (or an input array); for a function, the tuple of its arguments (a single array is
        taken as the only argument).
      loss: for a layer: a `jnet.Loss` or a built-in loss's name; targets are drawn to fit.
      reference: for a function: a plain-JAX forward to compare the VJP with (autodiff).
      dtype: for a layer: the parameters' and input's dtype (float64 is the strict mode).
      training: for a layer: check in training mode (a PRNG key: dropout, batch statistics).
      order: 2 also checks Hessian-vector products through the backward passes.
      probes: random projections per check (default: 2 per layer, 4 for a function).
      seed: seeds every random draw, so a failure reproduces.
      rtol, fd_tol, fd_eps: override the tolerances (see `jnet.gradcheck.tolerances`).

    Returns:
      The passing report.
    Raises:
      AssertionError: with the report as its message, if any check fails.
    """
    tolerances = dict(rtol=rtol, fd_tol=fd_tol, fd_eps=fd_eps)
    if isinstance(layer_or_fn, Layer):
        report = check_layer(
            layer_or_fn, input_shape_or_args, loss=loss, dtype=dtype, training=training,
            seed=seed, order=order, probes=probes or 2, **tolerances,
        )  # fmt: skip
    elif callable(layer_or_fn):
        args = input_shape_or_args
        if isinstance(args, jax.Array | np.ndarray) or not isinstance(args, tuple | list):
            args = (args,)
        report = check_vjp(
            layer_or_fn, *args, reference=reference, order=order, probes=probes or 4,
            seed=seed, **tolerances,
        )  # fmt: skip
    else:
        raise TypeError(
            f"assert_gradients: expected a jnet.Layer or a function; got {type(layer_or_fn)}"
        )
    if not report.ok:
        raise AssertionError(str(report))
    return report


def assert_jvp(
    fn: Callable[..., Any],
    args: tuple[Any, ...] | Any,
    *,
    reference: Callable[..., Any] | None = None,
    order: int = 1,
    probes: int = 4,
    seed: int = 0,
    rtol: float | None = None,
    fd_tol: float | None = None,
    fd_eps: float | None = None,
) -> VJPReport:
    """Asserts that a function's forward-mode derivative (its `jax.custom_jvp` rule), and the
    reverse mode JAX derives from it, are right: `jnet.check_jvp` as an assertion.

    Args:
      fn: the function; args: the tuple of its arguments (a single array is the only one).
      reference, order, probes, seed, rtol, fd_tol, fd_eps: as for `jnet.check_jvp`.

    Returns:
      The passing report.
    Raises:
      AssertionError: with the report as its message, if any check fails.
    """
    if isinstance(args, jax.Array | np.ndarray) or not isinstance(args, tuple | list):
        args = (args,)
    report = check_jvp(fn, *args, reference=reference, order=order, probes=probes, seed=seed,
                       rtol=rtol, fd_tol=fd_tol, fd_eps=fd_eps)  # fmt: skip
    if not report.ok:
        raise AssertionError(str(report))
    return report
