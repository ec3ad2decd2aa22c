"""Layer normalisation over the last axis, with the hand-written backward of llm.c's
`layernorm_backward` (docs/attention_backward.md derives it)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer
from jnet.layers.checks import check_float, param_dict


def layer_norm(*, eps: float = 1e-5, bias: bool = True) -> Layer:
    """`y = scale * (x - mean) * rstd + bias`, per row over the last axis.

    Args:
      eps: added to the (biased) variance: `rstd = 1 / sqrt(var + eps)`.
      bias: False leaves out `bias` (params `{"scale"}` alone; nanoGPT's `bias=False`).

    Shapes: x `(..., D)` -> y `(..., D)`; params `{"scale": (D,), "bias": (D,)}` (ones,
    zeros; batch_norm's names; PyTorch's `nn.LayerNorm` `weight`, `bias`). The cache holds
    `x` and each row's `mean` and `rstd` (not `x̂`, which would double the memory). Backward,
    with `n = (x - mean) * rstd` and `dn = scale * dy`:
    `dx = rstd * (dn - mean(dn) - n * mean(dn * n))`, `dscale = Σ dy n`, `dbias = Σ dy`.
    """
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
        raise ValueError(f"layer_norm: eps must be a number > 0; got {eps!r}")
    if not isinstance(bias, bool):
        raise ValueError(f"layer_norm: bias must be True or False; got {bias!r}")
    opts = [f"eps={eps!r}"] * (eps != 1e-5) + ["bias=False"] * (not bias)
    name = f"layer_norm({', '.join(opts)})"
    keys = {"scale", "bias"} if bias else {"scale"}

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input shape must be (..., features); got {input_shape}")
        d = input_shape[-1]
        params = {"scale": jnp.ones((d,), float)}
        if bias:
            params["bias"] = jnp.zeros((d,), float)
        return tuple(input_shape), params

    def forward(params, x, *, key=None):
        check_float(name, x)
        params = param_dict(name, params, keys)
        d = params["scale"].shape[-1]
        if x.ndim < 1 or x.shape[-1] != d or any(p.shape != (d,) for p in params.values()):
            raise ValueError(
                f"{name}: input has shape {x.shape} but this layer was initialised for "
                f"{d} features (params of shape ({d},)); expected (..., {d})"
            )
        mean = x.mean(-1, keepdims=True)
        centred = x - mean
        rstd = jax.lax.rsqrt(jnp.mean(centred * centred, -1, keepdims=True) + eps)
        y = params["scale"] * (centred * rstd)
        if bias:
            y = y + params["bias"]
        return y, (x, mean, rstd)

    def backward(params, cache, dy):
        x, mean, rstd = cache
        n = (x - mean) * rstd
        axes = tuple(range(dy.ndim - 1))
        grads = {"scale": (dy * n).sum(axes)}
        if bias:
            grads["bias"] = dy.sum(axes)
        dn = params["scale"] * dy
        dx = rstd * (dn - dn.mean(-1, keepdims=True) - n * (dn * n).mean(-1, keepdims=True))
        return grads, dx

    return Layer(init, forward, backward, name)
