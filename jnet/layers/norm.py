"""Batch normalisation: a stateful layer (its running statistics are state, not parameters).

Training (a forward with a key) normalises with the batch's statistics over every axis but
the last and returns updated running statistics; inference (`key=None`) normalises with the
running statistics and returns the state unchanged. The state flows as the contract in
`base` says: `init -> (shape, params, state)`, `forward(..., state) -> (y, cache, state)`;
`serial` threads it, optimizers and L2 never see it.

Under `jit` with the batch axis sharded over a device mesh, the batch mean and variance are
reductions over the global batch (GSPMD inserts the all-reduce), so 1 and 8 devices give the
same statistics.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer
from jnet.layers.checks import check_float, param_dict


class _Batch(NamedTuple):  # training: statistics of this batch (they depend on x)
    xhat: jax.Array
    inv_std: jax.Array


class _Running(NamedTuple):  # inference: running statistics (constants for the gradient)
    xhat: jax.Array
    inv_std: jax.Array


def batch_norm(*, momentum: float = 0.9, eps: float = 1e-5) -> Layer:
    """`y = scale * (x - mean) / sqrt(var + eps) + bias`, statistics per channel (last axis).

    Args:
      momentum: running statistics after a training step are
        `momentum * old + (1 - momentum) * batch` (the batch variance is the biased one,
        as flax's).
      eps: added to the variance.

    Shapes: x `(..., C)` with at least a batch axis -> y of the same shape;
    params `{"scale": (C,), "bias": (C,)}` (ones, zeros); state `{"mean": (C,), "var": (C,)}`
    (zeros, ones). Backward, with `x̂` the normalised input and N the count per channel:
    training `dx = scale * inv_std / N * (N * dy - Σdy - x̂ Σ(dy x̂))`; inference
    `dx = scale * inv_std * dy`; both `dscale = Σ(dy x̂)`, `dbias = Σdy`.
    """
    opts = [f"momentum={momentum!r}"] * (momentum != 0.9) + [f"eps={eps!r}"] * (eps != 1e-5)
    name = f"batch_norm({', '.join(opts)})"
    for what, value, ok in (
        ("momentum", momentum, lambda v: 0.0 <= v <= 1.0),
        ("eps", eps, lambda v: v > 0.0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
            rule = "in [0, 1]" if what == "momentum" else "> 0"
            raise ValueError(f"{name}: {what} must be a number {rule}; got {value!r}")

    def init(key, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                f"{name}: input has shape {tuple(input_shape)}; expected at least 2 axes "
                "(N, ..., C)"
            )
        c = input_shape[-1]
        params = {"scale": jnp.ones((c,), float), "bias": jnp.zeros((c,), float)}
        state = {"mean": jnp.zeros((c,), float), "var": jnp.ones((c,), float)}
        return tuple(input_shape), params, state

    def forward(params, x, *, key=None, state):
        check_float(name, x)
        params = param_dict(name, params, {"scale", "bias"})
        state = param_dict(name, state, {"mean", "var"})
        if x.ndim < 2:
            raise ValueError(f"{name}: input has shape {x.shape}; expected at least 2 axes")
        c = params["scale"].shape[-1]
        if x.shape[-1] != c or any(a.shape != (c,) for a in (*params.values(), *state.values())):
            raise ValueError(
                f"{name}: input has shape {x.shape} but this layer was initialised for "
                f"{c} channels (params and state of shape ({c},)); expected (..., {c})"
            )
        scale, bias = params["scale"], params["bias"]
        if key is None:  # inference: running statistics, state unchanged
            inv_std = jax.lax.rsqrt(state["var"] + eps).astype(x.dtype)
            xhat = (x - state["mean"].astype(x.dtype)) * inv_std
            return scale * xhat + bias, _Running(xhat, inv_std), state
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axes)
        centred = x - mean
        var = jnp.mean(centred * centred, axes)  # biased, as the normalisation uses
        inv_std = jax.lax.rsqrt(var + eps)
        xhat = centred * inv_std
        new_state = {
            k: (momentum * state[k] + (1 - momentum) * v).astype(state[k].dtype)
            for k, v in (("mean", mean), ("var", var))
        }
        return scale * xhat + bias, _Batch(xhat, inv_std), new_state

    def backward(params, cache, dy):
        xhat, inv_std = cache
        axes = tuple(range(dy.ndim - 1))
        dbias = dy.sum(axes)
        dscale = (dy * xhat).sum(axes)
        grads = {"scale": dscale, "bias": dbias}
        if isinstance(cache, _Running):
            return grads, dy * (params["scale"] * inv_std)
        n = math.prod(dy.shape[:-1])
        dx = (params["scale"] * inv_std / n) * (n * dy - dbias - xhat * dscale)
        return grads, dx

    return Layer(init, forward, backward, name, stateful=True)
