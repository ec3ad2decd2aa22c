"""Gradient-check cases for self_attention, and `naive_attention`, the plain reference.

The registry checks each case's hand-written backward against `jax.grad` of the layer's
own forward and finite differences; `naive_attention` is an independent forward (the
whole softmax, `jax.nn.softmax`, in the input's dtype: not `jax.nn.dot_product_attention`,
whose softmax is float32) that tests/layers/test_attention.py differentiates with
`jax.grad` and benchmarks/attention_memory.py measures.

Six cases (each costs compiles in every registry test): causal and not, bias on and off,
one head, T = 1, a key-padding mask (drawn from the data, as rnn_cases does, with a wholly
padded example: fully masked rows), dropout, and the blocked path at a small T with
`block_size=3` (T = 7: blocks that do not divide T). More combinations are in
tests/layers/test_attention.py, against `naive_attention`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jnet import initializers
from jnet import layers as L
from jnet.gradcheck.case import Case
from jnet.gradcheck.case import regression as _regression
from jnet.layers import Layer
from jnet.losses import mean_squared_error


def naive_attention(params, x, heads, *, causal=True, mask=None):
    """The plain forward of `self_attention`: whole `(N, heads, T, T)` probabilities.

    `params` as the layer's (with or without biases); `mask (N, T)` bool or None. Padded
    steps output zeros; a row with no allowed key gives zeros.
    """
    n, t, d = x.shape
    hd = d // heads
    qkv = x @ params["w_qkv"] + params.get("b_qkv", 0)
    q, k, v = (a.reshape(n, t, heads, hd).transpose(0, 2, 1, 3) for a in jnp.split(qkv, 3, -1))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    ok = jnp.tril(jnp.ones((t, t), bool)) if causal else jnp.ones((t, t), bool)
    ok = ok[None, None] if mask is None else ok[None, None] & mask[:, None, None, :]
    s = jnp.where(ok, s, -1e30)  # finite: a fully masked row stays NaN-free under jax.grad
    p = jnp.where(ok, jax.nn.softmax(s, axis=-1), 0)
    o = (p @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
    y = o @ params["w_out"] + params.get("b_out", 0)
    return y if mask is None else jnp.where(mask[..., None], y, 0)


def _masked(layer: Layer) -> Layer:
    """Runs `layer` on `(x, mask)`: example i keeps its steps t with x[i, t, 0] > -0.5, and
    is all padding (every row fully masked) when x[i, 0, 1] < -0.5; the registry's draws
    for both masked cases hold such an example in float64 and float32, and examples whose
    first step is padding (fully masked first rows under causal attention). The mask is a
    function of each example alone, so it is right under vmap and on one example; its
    gradient is zero, as for the layer's mask."""

    def mask_of(x):
        return (x[..., 0] > -0.5) & (x[..., :1, 1] >= -0.5)

    def init(key, input_shape):
        out, params = layer.init(key, (tuple(input_shape), tuple(input_shape[:-1])))
        return out[0], params

    def forward(params, x, *, key=None):
        y, cache = layer.forward(params, (x, mask_of(x)), key=key)
        return y[0], cache

    def backward(params, cache, dy):
        dparams, dx = layer.backward(params, cache, (dy, None))
        return dparams, dx[0]

    return Layer(init, forward, backward, f"masked({layer.name})")


def _biased(heads, **kwargs):
    """self_attention with random biases (zeros would leave b's terms unchecked)."""
    layer = L.self_attention(heads, **kwargs)
    if not kwargs.get("bias", True):
        return layer
    b = initializers.normal(0.1)

    def init(key, input_shape):
        out, params = layer.init(key, input_shape)
        k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
        d = params["w_out"].shape[0]
        return out, params | {"b_qkv": b(k1, (3 * d,)), "b_out": b(k2, (d,))}

    return layer._replace(init=init)


def _case(net, shape=(3, 5, 4), uses_key=False):
    return Case(net, mean_squared_error, shape, _regression, uses_key)


CASES: dict[str, Case] = {
    "self_attention causal": _case(lambda: _biased(2)),
    "self_attention not causal, one head, no bias": _case(
        lambda: _biased(1, causal=False, bias=False), (2, 4, 3)
    ),
    "self_attention T=1": _case(lambda: _biased(2), (3, 1, 4)),
    "self_attention causal masked": _case(lambda: _masked(_biased(2)), (3, 6, 4)),
    "self_attention blocked T=7 not causal": _case(
        lambda: _biased(2, causal=False, block_size=3), (2, 7, 4)
    ),
    "self_attention blocked masked dropout": _case(
        lambda: _masked(_biased(2, dropout=0.2, block_size=3)), (3, 7, 4), uses_key=True
    ),
}
