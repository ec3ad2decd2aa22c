"""The transformer: `transformer_block` (pre-norm, GPT-2's) and `gpt`, a decoder-only
language model with nanoGPT's layout and initialisation.

Both are made of `serial`, `residual` and (for the tied output projection) `tie`, so their
backward is the chain of the layers' hand-written ones and the walks of `summary` and the
gradient checker reach every layer norm, attention and dense inside.
"""

from __future__ import annotations

import math

import jax

from jnet import initializers
from jnet.layers.attention import self_attention
from jnet.layers.base import Layer
from jnet.layers.checks import positive_int
from jnet.layers.combinators import serial
from jnet.layers.core import dense, gelu, width_dense
from jnet.layers.core import dropout as dropout_layer
from jnet.layers.embedding import embedding, positional_embedding
from jnet.layers.layer_norm import layer_norm
from jnet.layers.residual import residual
from jnet.layers.tie import tie

STD = 0.02  # GPT-2's and nanoGPT's initial standard deviation


def _block(heads, mlp_ratio, causal, bias, rate, proj_std) -> Layer:
    positive_int("transformer_block", "heads", heads)
    positive_int("transformer_block", "mlp_ratio", mlp_ratio)
    w, proj = initializers.normal(STD), initializers.normal(proj_std)
    opts = [f"mlp_ratio={mlp_ratio}"] * (mlp_ratio != 4) + ["causal=False"] * (not causal)
    opts += ["bias=False"] * (not bias) + [f"dropout={rate!r}"] * (rate != 0.0)
    attn = serial(
        layer_norm(bias=bias),
        self_attention(heads, causal=causal, bias=bias, dropout=rate),
        dropout_layer(rate),
        name="attention",
    )
    mlp = serial(
        layer_norm(bias=bias),
        width_dense(lambda d: mlp_ratio * d, f"dense({mlp_ratio}D)", w, bias=bias),
        gelu(),
        width_dense(lambda d: _divide(d, mlp_ratio), "dense(D)", proj, bias=bias),
        dropout_layer(rate),
        name="mlp",
    )
    name = f"transformer_block({', '.join([str(heads), *opts])})"
    return serial(residual(attn), residual(mlp), name=name)


def _divide(d: int, ratio: int) -> int:
    if d % ratio:
        raise ValueError(f"dense(D): input width {d} is not a multiple of mlp_ratio {ratio}")
    return d // ratio


def transformer_block(
    heads: int, *, mlp_ratio: int = 4, causal: bool = True, bias: bool = True,
    dropout: float = 0.0,
) -> Layer:  # fmt: skip
    """A pre-norm transformer block (GPT-2, nanoGPT): `x + attn(ln1(x))`, then
    `x + mlp(ln2(x))`, with `mlp = dense(mlp_ratio·D), gelu, dense(D)`. `x (N, T, D) ->
    (N, T, D)`; D must be a multiple of `heads`.

    Args:
      heads: attention heads (`jnet.self_attention(heads, causal=, bias=, dropout=)`).
      mlp_ratio: the MLP's hidden width is `mlp_ratio * D`.
      causal: each position attends to itself and the earlier ones only.
      bias: False leaves every bias out (the layer norms' and the dense layers').
      dropout: on the attention probabilities, after the attention's projection and after
        the MLP (nanoGPT's attn_dropout, resid_dropout and MLP dropout), while training.

    Layout: `serial(residual(attention), residual(mlp))`, with
    `attention = serial(layer_norm, self_attention, dropout)` and
    `mlp = serial(layer_norm, dense(4D), gelu(), dense(D), dropout)`, so params are
    `(((ln_1, attn, ()),), ((ln_2, c_fc, (), c_proj, ()),))`: e.g. `params[0][0][1]` is the
    attention's `{"w_qkv", "b_qkv", "w_out", "b_out"}`, `params[1][0][1]["w"]` nanoGPT's
    `mlp.c_fc.weight.T`. Init: dense weights `normal(0.02)` (nanoGPT's; `gpt` scales the
    MLP's `c_proj` by `1/sqrt(2 * layers)`), biases zeros, the attention's own init.
    """
    return _block(heads, mlp_ratio, causal, bias, dropout, STD)


def gpt(
    vocab_size: int,
    *,
    block_size: int,
    layers: int,
    heads: int,
    dim: int,
    dropout: float = 0.0,
    bias: bool = True,
    tie_weights: bool = True,
) -> Layer:
    """A GPT: token ids `(N, T)`, `T <= block_size` -> logits `(N, T, vocab_size)`.

    Token and position embeddings, `layers` causal `transformer_block`s, a final layer norm
    and an output projection (no bias) which, with `tie_weights`, reuses the token
    embedding matrix (GPT-2, nanoGPT): a `tie`, so that matrix is one parameter and its
    gradient is the sum of the embedding's scatter-add and the projection's.

    Params, a tuple (index: layer, nanoGPT's name): 0 `embedding` (`wte`, `{"w": (V, D)}`),
    1 `positional_embedding` (`wpe`), 2 `dropout` (`()`), 3 ... 2+layers the blocks (`h`,
    see `transformer_block`), 3+layers `layer_norm` (`ln_f`), 4+layers the projection
    (`lm_head`: `{}` when tied, else `{"w": (D, V)}` = `lm_head.weight.T`).

    Init as nanoGPT: every matrix and embedding `normal(0.02)`, biases zeros, layer norms
    ones, and the residual projections (the attention's `w_out`, the MLP's `c_proj`)
    `normal(0.02 / sqrt(2 * layers))`.
    """
    for what, value in (("vocab_size", vocab_size), ("block_size", block_size),
                        ("layers", layers), ("heads", heads), ("dim", dim)):  # fmt: skip
        positive_int("gpt", what, value)
    if dim % heads:
        raise ValueError(f"gpt: dim {dim} must be a multiple of heads {heads}")
    proj_std = STD / math.sqrt(2 * layers)
    net = serial(
        embedding(vocab_size, dim),
        positional_embedding(block_size),
        dropout_layer(dropout),
        *[_block(heads, 4, True, bias, dropout, proj_std) for _ in range(layers)],
        layer_norm(bias=bias),
        dense(vocab_size, initializers.normal(STD), bias=False),
    )
    name = f"gpt({vocab_size}, block_size={block_size}, layers={layers}, heads={heads}, " \
           f"dim={dim}{'' if bias else ', bias=False'}{'' if tie_weights else ', untied'})"
    if tie_weights:
        net = tie(net, (0, "w"), (4 + layers, "w"), transpose=True, name=name)
    else:
        net = net._replace(name=name)
    return net._replace(init=_attention_init(net.init, proj_std))


def _attention_init(init, proj_std):
    """`init`, then the attention matrices redrawn as nanoGPT's (`w_qkv` 0.02, `w_out`
    `proj_std`); their biases stay zeros."""

    def redraw(key, input_shape):
        out_shape, params = init(key, input_shape)
        key = jax.random.fold_in(key, 1)
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        leaves = []
        for i, (path, leaf) in enumerate(flat):
            std = {"w_qkv": STD, "w_out": proj_std}.get(getattr(path[-1], "key", None))
            if std is not None:
                leaf = initializers.normal(std)(jax.random.fold_in(key, i), leaf.shape,
                                                leaf.dtype)  # fmt: skip
            leaves.append(leaf)
        return out_shape, jax.tree.unflatten(treedef, leaves)

    return redraw
