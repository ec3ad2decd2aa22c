"""Gradient-check cases for the transformer's layers and models, and their plain forwards.

The registry checks each case's hand-written backward against `jax.grad` of the layer's own
forward and finite differences. The `naive_*` functions here are independent forwards
written the obvious way (the embedding as a one-hot matmul, layer norm from its
definition, the tied GPT with one matrix used twice): tests/models/test_gpt.py
differentiates them with `jax.grad`, so the tied matrix's summed gradient is checked
against autodiff of a forward that knows nothing of `tie`.

Token-id cases draw their input in `[0, vocab)` (`case.draw_input`); small vocabularies
make repeated tokens certain, the scatter-add's case.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jnet import initializers, models
from jnet import layers as L
from jnet.gradcheck.attention_cases import naive_attention
from jnet.gradcheck.case import Case
from jnet.gradcheck.case import labels as _labels
from jnet.gradcheck.case import regression as _regression
from jnet.losses import mean_squared_error, softmax_cross_entropy


def naive_embedding(w, ids):
    return jax.nn.one_hot(ids, w.shape[0], dtype=w.dtype) @ w


def naive_layer_norm(params, x, eps=1e-5):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, -1, keepdims=True)
    y = (x - mean) / jnp.sqrt(var + eps) * params["scale"]
    return y + params["bias"] if "bias" in params else y


def naive_gelu(x, approximate=False):
    if approximate:
        return 0.5 * x * (1 + jnp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + jax.scipy.special.erf(x / math.sqrt(2)))


def _linear(p, x):
    return x @ p["w"] + p["b"] if "b" in p else x @ p["w"]


def naive_block(params, x, heads, causal=True):
    """`transformer_block`'s forward from its definition, on its params layout."""
    ((ln1, attn, _),), ((ln2, fc, _, proj, _),) = params
    x = x + naive_attention(attn, naive_layer_norm(ln1, x), heads, causal=causal)
    return x + _linear(proj, naive_gelu(_linear(fc, naive_layer_norm(ln2, x))))


def naive_gpt(params, ids, heads, layers, tied=True):
    """`gpt`'s forward: the token matrix `params[0]["w"]` used twice when `tied`."""
    wte, wpe = params[0]["w"], params[1]["w"]
    x = naive_embedding(wte, ids) + wpe[: ids.shape[-1]]
    for i in range(layers):
        x = naive_block(params[3 + i], x, heads)
    x = naive_layer_norm(params[3 + layers], x)
    return x @ (wte.T if tied else params[4 + layers]["w"])


def _randomised(layer: L.Layer) -> L.Layer:
    """`layer` with every parameter drawn from normal(0.5) around its init: ones and zeros
    (layer norm's scale and bias) would leave some terms of the gradient unchecked."""

    def init(key, input_shape):
        out, params = layer.init(key, input_shape)
        leaves, treedef = jax.tree.flatten(params)
        keys = list(jax.random.split(jax.random.fold_in(key, 7), max(len(leaves), 1)))[
            : len(leaves)
        ]
        noise = [
            initializers.normal(0.5)(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)
        ]
        return out, jax.tree.unflatten(treedef, [a + n for a, n in zip(leaves, noise, strict=True)])

    return layer._replace(init=init)


def _case(net, shape, loss=mean_squared_error, targets=_regression):
    return Case(net, loss, shape, targets)


CASES: dict[str, Case] = {
    "embedding repeated tokens": _case(lambda: L.embedding(5, 3), (3, 6)),  # 18 ids, 5 values
    "positional_embedding T<max_len": _case(lambda: L.positional_embedding(6), (2, 4, 3)),
    "layer_norm": _case(lambda: _randomised(L.layer_norm()), (3, 2, 5)),
    "layer_norm no bias": _case(lambda: _randomised(L.layer_norm(bias=False)), (4, 6)),
    "gelu": _case(L.gelu, (4, 6)),
    "gelu approximate": _case(lambda: L.gelu(approximate=True), (4, 6)),
    "dense no bias": _case(lambda: L.dense(5, bias=False), (4, 6)),
    "transformer_block causal": _case(
        lambda: _randomised(models.transformer_block(2)), (2, 5, 4)
    ),  # fmt: skip
    "transformer_block not causal, one head, no bias": _case(
        lambda: _randomised(models.transformer_block(1, causal=False, bias=False)), (2, 4, 3)
    ),
    "transformer_block T=1": _case(lambda: _randomised(models.transformer_block(2)), (3, 1, 4)),
    "gpt 2 blocks tied": _case(
        lambda: models.gpt(7, block_size=6, layers=2, heads=2, dim=4),
        (2, 5),
        softmax_cross_entropy,
        _labels,
    ),  # fmt: skip
}
