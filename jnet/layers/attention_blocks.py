"""Scaled dot-product attention's maths, forward and backward by hand, in two forms.

Arrays are per head: `q, k, v, o (B, H, T, d)` with `q` already scaled by `1/sqrt(d)`;
`lse (B, H, T)` is each query row's log-sum-exp of its allowed scores; `mask (B, T)` is
True at real steps (None: all real). Query i may attend to key j when key j is real and,
if `causal`, j <= i. A row with no allowed key (a padded query under left padding, a
sequence that is all padding) gets `o = 0`, `lse = +inf` (so `exp(s - lse) = 0` in the
backward) and a zero gradient: no NaN anywhere.

- simple: the whole `(B, H, T, T)` score matrix at once; the fastest for short T.
- blocked: a `lax.scan` over blocks of `block` keys, all queries at once, with an online
  softmax in the forward (FlashAttention's running max and sum); the backward recomputes
  `P = exp(S - lse)` one key block at a time. Nothing `T x T` is ever whole: the largest
  temporary is `(B, H, T, block)`, linear in T.

Neither form keeps the probabilities: both save `o` and `lse` only, and the backward uses
`dS = P * (dP - rowsum(dO * O))` (docs/attention_backward.md derives it).

Dropout on the probabilities (`rate > 0` with a `key`): the kept-mask is drawn again from
the same key in the backward, whole (simple) or per key block from `fold_in(key, block
index)` (blocked), so forward and backward agree without storing it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _allowed(mask, causal, q_len, k0, k_len):
    """(B or 1, 1, Tq, k_len) bool: may query i attend to key k0 + j."""
    ok = jnp.ones((1, 1, q_len, k_len), bool)
    if causal:
        i = jnp.arange(q_len)[:, None]
        j = k0 + jnp.arange(k_len)[None, :]
        ok = ok & (j <= i)[None, None]
    if mask is not None:
        ok = ok & mask[:, None, None, :]
    return ok


def _keep_scale(key, rate, shape, dtype):
    """Inverted-dropout factors: 1/(1-rate) where kept, 0 where dropped; None without dropout."""
    if key is None or rate == 0.0:
        return None
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


def _scores(q, k):
    return jnp.einsum("bhqd,bhkd->bhqk", q, k)


def simple_forward(q, k, v, mask, causal, rate=0.0, key=None):
    """`(o, lse)` with the whole score matrix."""
    t, tk = q.shape[-2], k.shape[-2]
    ok = _allowed(mask, causal, t, 0, tk)
    s = jnp.where(ok, _scores(q, k), -jnp.inf)
    m = jnp.max(s, axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0)  # a fully masked row: exp(-inf - 0) = 0, not NaN
    p = jnp.exp(s - m)
    total = jnp.sum(p, axis=-1, keepdims=True)
    live = total > 0
    p = p / jnp.where(live, total, 1)
    scale = _keep_scale(key, rate, p.shape, p.dtype)
    o = (p if scale is None else p * scale) @ v
    lse = jnp.where(live, m + jnp.log(jnp.where(live, total, 1)), jnp.inf)
    return o, lse[..., 0]


def _block_grads(q, kb, vb, do, lse, delta, ok, scale):
    """One key block's share: `(dq part, dk_b, dv_b)` from the recomputed probabilities."""
    p = jnp.where(ok, jnp.exp(_scores(q, kb) - lse[..., None]), 0)
    pd = p if scale is None else p * scale
    dv = jnp.einsum("bhqk,bhqd->bhkd", pd, do)
    dp = jnp.einsum("bhqd,bhkd->bhqk", do, vb)
    if scale is not None:
        dp = dp * scale
    ds = p * (dp - delta[..., None])
    return ds @ kb, jnp.einsum("bhqk,bhqd->bhkd", ds, q), dv


def simple_backward(q, k, v, o, lse, do, mask, causal, rate=0.0, key=None):
    """`(dq, dk, dv)` of the simple form (dq is the gradient of the scaled q)."""
    ok = _allowed(mask, causal, q.shape[-2], 0, k.shape[-2])
    delta = jnp.sum(do * o, axis=-1)  # rowsum(dO * O) = rowsum(dP * P)
    scale = _keep_scale(key, rate, q.shape[:-1] + (k.shape[-2],), q.dtype)
    return _block_grads(q, k, v, do, lse, delta, ok, scale)


def _split(k, v, mask, block):
    """Keys, values and key mask padded to whole blocks, blocks first: `(nb, B, H, block, d)`."""
    b, h, t, d = k.shape
    nb = -(-t // block)
    pad = nb * block - t
    real = jnp.ones((b, t), bool) if mask is None else mask
    if pad:
        k = jnp.pad(k, ((0, 0), (0, 0), (0, pad), (0, 0)))
        v = jnp.pad(v, ((0, 0), (0, 0), (0, pad), (0, 0)))
        real = jnp.pad(real, ((0, 0), (0, pad)))  # padded keys are masked out
    kb = jnp.moveaxis(k.reshape(b, h, nb, block, d), 2, 0)
    vb = jnp.moveaxis(v.reshape(b, h, nb, block, d), 2, 0)
    mb = jnp.moveaxis(real.reshape(b, nb, block), 1, 0)
    need_mask = mask is not None or pad > 0
    return kb, vb, mb, need_mask


def _block_scale(key, rate, i, shape, dtype):
    return None if key is None or rate == 0.0 else _keep_scale(
        jax.random.fold_in(key, i), rate, shape, dtype
    )


def blocked_forward(q, k, v, mask, causal, rate=0.0, key=None, *, block=128):
    """`(o, lse)` by an online softmax over blocks of `block` keys."""
    b, h, t, d = q.shape
    kb, vb, mb, need_mask = _split(k, v, mask, block)
    shape = (b, h, t, block)

    def step(carry, inputs):
        m, total, acc = carry
        i, k_i, v_i, m_i = inputs
        ok = _allowed(m_i if need_mask else None, causal, t, i * block, block)
        s = jnp.where(ok, _scores(q, k_i), -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(s, axis=-1))
        safe = jnp.where(jnp.isfinite(m_new), m_new, 0)  # no key yet: keep everything at 0
        p = jnp.exp(s - safe[..., None])
        alpha = jnp.exp(m - safe)  # rescales what was summed under the old max
        total = alpha * total + jnp.sum(p, axis=-1)
        scale = _block_scale(key, rate, i, shape, p.dtype)
        acc = alpha[..., None] * acc + (p if scale is None else p * scale) @ v_i
        return (m_new, total, acc), None

    init = (
        jnp.full((b, h, t), -jnp.inf, q.dtype),
        jnp.zeros((b, h, t), q.dtype),
        jnp.zeros((b, h, t, v.shape[-1]), q.dtype),
    )
    (m, total, acc), _ = jax.lax.scan(step, init, (jnp.arange(kb.shape[0]), kb, vb, mb))
    live = total > 0
    o = acc / jnp.where(live, total, 1)[..., None]
    safe = jnp.where(jnp.isfinite(m), m, 0)
    lse = jnp.where(live, safe + jnp.log(jnp.where(live, total, 1)), jnp.inf)
    return o, lse


def blocked_backward(q, k, v, o, lse, do, mask, causal, rate=0.0, key=None, *, block=128):
    """`(dq, dk, dv)`, recomputing the probabilities one key block at a time."""
    b, h, t, d = q.shape
    kb, vb, mb, need_mask = _split(k, v, mask, block)
    delta = jnp.sum(do * o, axis=-1)
    shape = (b, h, t, block)

    def step(dq, inputs):
        i, k_i, v_i, m_i = inputs
        ok = _allowed(m_i if need_mask else None, causal, t, i * block, block)
        scale = _block_scale(key, rate, i, shape, q.dtype)
        dq_i, dk_i, dv_i = _block_grads(q, k_i, v_i, do, lse, delta, ok, scale)
        return dq + dq_i, (dk_i, dv_i)

    dq, (dk, dv) = jax.lax.scan(step, jnp.zeros_like(q), (jnp.arange(kb.shape[0]), kb, vb, mb))
    unblock = lambda g: jnp.moveaxis(g, 0, 2).reshape(b, h, -1, g.shape[-1])[:, :, : k.shape[2]]  # noqa: E731
    return dq, unblock(dk), unblock(dv)
