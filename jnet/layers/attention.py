"""Multi-head self-attention with a hand-written backward whose memory is linear in T.

`self_attention(heads)` maps `x (N, T, D) -> (N, T, D)` (further leading axes count as
batch): `qkv = x w_qkv + b_qkv`, per head `softmax(q k^T / sqrt(D/heads)) v`, the heads
side by side, then `y = o w_out + b_out`. The maths per head, in a simple and a blocked
form, is in `attention_blocks`; docs/attention_backward.md derives the backward.

Parameter layout (nanoGPT's `CausalSelfAttention`): `w_qkv (D, 3D)` has the columns
`[q | k | v]`, each split into `heads` contiguous blocks of `D/heads`; from PyTorch,
`w_qkv = c_attn.weight.T`, `b_qkv = c_attn.bias`, `w_out = c_proj.weight.T`,
`b_out = c_proj.bias`.

Key padding: pass the pair `(x, mask)`, mask `(N, T)` bool (or 0/1 numbers) True at real
steps, as the recurrent layers take it; the layer then returns the pair `(y, mask)`. No
query attends to a padded key; a padded step's output is zeros and its dx is 0 (as in
the recurrent layers), and the mask's gradient is None. A real query always sees at
least itself, so only padded rows can be fully masked: they give zeros, never NaN.

Memory: the forward saves x, q, k, v, the heads' output o and each row's log-sum-exp,
all linear in T, never the `(N, heads, T, T)` probabilities; the backward recomputes
them. Up to `simple_max_t()` steps (64 on CPU) the scores are built whole; beyond, in
tiles of `BLOCK` (64) queries by keys with an online softmax, visiting only the tiles at or
below the diagonal when causal (BENCHMARKS.md, "Attention memory", has the measurements
that place the switch).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jnet import initializers
from jnet.layers import attention_blocks as blocks
from jnet.layers.base import Layer
from jnet.layers.checks import check_float, param_dict, positive_int, split_pair

# The longest T on the whole-matrix path, per backend. CPU: measured (BENCHMARKS.md,
# "Attention memory"): tiles of 64 are as fast at T = 64 and faster beyond. Elsewhere: not
# measured yet; 256 keeps the GPU configuration's T = 256 on the path of fewest kernels.
SIMPLE_MAX_T = {"cpu": 64, "default": 256}
BLOCK = 64  # queries and keys per tile on the blocked path


def self_attention(
    heads: int,
    *,
    causal: bool = True,
    bias: bool = True,
    dropout: float = 0.0,
    block_size: int | None = None,
) -> Layer:
    """Multi-head self-attention, `x (N, T, D) -> (N, T, D)`, scale `1/sqrt(D/heads)`.

    Args:
      heads: number of heads; D must be a multiple of it.
      causal: query i attends only to keys j <= i (a decoder, GPT).
      bias: params `{"w_qkv": (D, 3D), "b_qkv": (3D,), "w_out": (D, D), "b_out": (D,)}`;
        False: `{"w_qkv", "w_out"}` alone.
      dropout: drop probability on the attention probabilities while training (a `key`
        passed to forward); 0.0, or no key, costs nothing.
      block_size: None (default): whole score matrices up to `simple_max_t()` steps, tiles
        of `BLOCK` beyond. An int: always tiles of that many queries and keys.

    Input `x` or the pair `(x, mask)` (see the module docstring). Init: w_qkv Glorot normal
    per `(D, D)` block, w_out Glorot normal, biases zeros.
    """
    positive_int("self_attention", "heads", heads)
    for what, flag in (("causal", causal), ("bias", bias)):
        if not isinstance(flag, bool):
            raise ValueError(f"self_attention: {what} must be True or False; got {flag!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not (
        0.0 <= dropout < 1.0
    ):
        raise ValueError(f"self_attention: dropout must be in [0, 1); got {dropout!r}")
    if block_size is not None:
        positive_int("self_attention", "block_size", block_size)
    extra = "".join(
        f", {k}={v!r}"
        for k, v, default in (
            ("causal", causal, True), ("bias", bias, True), ("dropout", dropout, 0.0),
            ("block_size", block_size, None),
        )
        if v != default
    )  # fmt: skip
    name = f"self_attention({heads}{extra})"
    keys = {"w_qkv", "w_out"} | ({"b_qkv", "b_out"} if bias else set())

    def init(key, input_shape):
        pair = bool(input_shape) and isinstance(input_shape[0], tuple | list)
        shape = tuple(input_shape[0] if pair else input_shape)
        if len(shape) < 3:
            raise ValueError(f"{name}: input shape {shape}; expected 3 axes (N, T, D)")
        d = _head_dim(name, shape[-1], heads) * heads
        glorot = initializers.glorot_normal()
        kq, kk, kv, ko = jax.random.split(key, 4)
        params = {
            "w_qkv": jnp.concatenate([glorot(k, (d, d)) for k in (kq, kk, kv)], axis=1),
            "w_out": glorot(ko, (d, d)),
        }
        if bias:
            dtype = params["w_qkv"].dtype
            params |= {"b_qkv": jnp.zeros(3 * d, dtype), "b_out": jnp.zeros(d, dtype)}
        return ((shape, tuple(input_shape[1])) if pair else shape), params

    def check(params, x):
        x, mask, pair = split_pair(name, x)
        check_float(name, x)
        if x.ndim < 3 or x.shape[-2] < 1:
            raise ValueError(
                f"{name}: input has shape {x.shape}; expected 3 axes (N, T, D) with T >= 1"
            )
        p = param_dict(name, params, keys)
        d = x.shape[-1]
        _head_dim(name, d, heads)
        shapes = {"w_qkv": (d, 3 * d), "b_qkv": (3 * d,), "w_out": (d, d), "b_out": (d,)}
        if any(p[k].shape != shapes[k] for k in keys):
            got = ", ".join(f"{k} {p[k].shape}" for k in sorted(keys))
            want = ", ".join(f"{k} {shapes[k]}" for k in sorted(keys))
            raise ValueError(
                f"{name}: params hold {got}; an input of {d} features needs {want}"
            )
        if pair:
            if not hasattr(mask, "dtype"):
                raise ValueError(f"{name}: mask must be an array; got {type(mask).__name__}")
            if mask.shape != x.shape[:-1]:
                raise ValueError(
                    f"{name}: mask has shape {mask.shape}; expected {x.shape[:-1]}, "
                    f"(N, T) of the input {x.shape}"
                )
            mask = mask if mask.dtype == jnp.bool_ else mask != 0
        return p, x, mask, pair

    def forward(params, x, *, key=None):
        params, x, mask, pair = check(params, x)
        t, d = x.shape[-2:]
        x3 = x.reshape(-1, t, d)
        m2 = None if mask is None else mask.reshape(-1, t)
        qkv = x3 @ params["w_qkv"]
        if bias:
            qkv = qkv + params["b_qkv"]
        q, k, v = (_heads(a, heads) for a in jnp.split(qkv, 3, axis=-1))
        q = q * (1.0 / math.sqrt(d // heads))
        drop_key = key if dropout > 0.0 else None
        fwd, block = _path(t, block_size)
        o, lse = fwd(q, k, v, m2, causal, dropout, drop_key, **block)
        o2 = _merge(o)
        y = o2 @ params["w_out"]
        if bias:
            y = y + params["b_out"]
        if m2 is not None:
            y = jnp.where(m2[..., None], y, 0)
        y = y.reshape(x.shape)
        cache = (x3, q, k, v, o, lse, m2, drop_key)
        return ((y, mask) if pair else y), cache

    def backward(params, cache, dy):
        x3, q, k, v, o, lse, m2, drop_key = cache
        pair = isinstance(dy, tuple | list)
        if pair:
            dy = dy[0]  # the mask's cotangent is not used
        shape = dy.shape
        b, t, d = x3.shape
        dy = dy.reshape(b, t, d)
        if m2 is not None:
            dy = jnp.where(m2[..., None], dy, 0)
        dy2 = dy.reshape(-1, d)
        grads = {"w_out": _merge(o).reshape(-1, d).T @ dy2}
        do = _heads(dy @ params["w_out"].T, heads)
        bwd, block = _path(t, block_size, backward=True)
        dq, dk, dv = bwd(q, k, v, o, lse, do, m2, causal, dropout, drop_key, **block)
        dq = dq * (1.0 / math.sqrt(d // heads))
        dqkv = jnp.concatenate([_merge(g) for g in (dq, dk, dv)], axis=-1)
        grads["w_qkv"] = x3.reshape(-1, d).T @ dqkv.reshape(-1, 3 * d)
        if bias:
            grads |= {"b_qkv": dqkv.reshape(-1, 3 * d).sum(0), "b_out": dy2.sum(0)}
        dx = (dqkv @ params["w_qkv"].T).reshape(shape)
        return grads, ((dx, None) if pair else dx)

    return Layer(init, forward, backward, name)


def _head_dim(name: str, d: int, heads: int) -> int:
    if d % heads:
        raise ValueError(
            f"{name}: the input's {d} features do not split into {heads} heads; "
            "D must be a multiple of heads"
        )
    return d // heads


def simple_max_t() -> int:
    """The longest T that takes the whole-matrix path on the default backend."""
    return SIMPLE_MAX_T.get(jax.default_backend(), SIMPLE_MAX_T["default"])


def _path(t: int, block_size: int | None, backward: bool = False):
    """The forward (or backward) function for T steps, and its keyword arguments."""
    if block_size is None and t <= simple_max_t():
        return (blocks.simple_backward if backward else blocks.simple_forward), {}
    block = min(t, BLOCK if block_size is None else block_size)  # no block past the end
    return (blocks.blocked_backward if backward else blocks.blocked_forward), {"block": block}


def _heads(a: jax.Array, heads: int) -> jax.Array:
    """`(B, T, D) -> (B, heads, T, D/heads)`: contiguous column blocks, one per head."""
    b, t, d = a.shape
    return a.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)


def _merge(a: jax.Array) -> jax.Array:
    """`(B, heads, T, d) -> (B, T, heads * d)`, the inverse of `_heads`."""
    b, h, t, d = a.shape
    return a.transpose(0, 2, 1, 3).reshape(b, t, h * d)
