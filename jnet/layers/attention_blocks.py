"""Scaled dot-product attention's maths, forward and backward by hand, in two forms.

Arrays are per head: `q, k, v, o (B, H, T, d)` with `q` already scaled by `1/sqrt(d)`;
`lse (B, H, T)` is each query row's log-sum-exp of its allowed scores; `mask (B, T)` is
True at real steps (None: all real). Query i may attend to key j when key j is real and,
if `causal`, j <= i. A row with no allowed key (a padded query under left padding, a
sequence that is all padding) gets `o = 0`, `lse = +inf` (so `exp(s - lse) = 0` in the
backward) and a zero gradient: no NaN anywhere.

- simple: the whole `(B, H, T, T)` score matrix at once; the fastest for short T.
- blocked: tiles of `block` queries by `block` keys (T padded to whole blocks with masked
  keys). The forward visits the query blocks one after another (`lax.map`), each an online
  softmax over its key blocks (FlashAttention's running max and sum, a `fori_loop`); the
  backward visits the key blocks (`lax.scan`), each recomputing `P = exp(S - lse)` tile by
  tile over its query blocks, accumulating dk and dv and adding into the carried dq.
  Causal: only the tiles at or below the diagonal are visited (about half). Nothing
  `T x T` is ever whole: the largest temporary is a tile, `(B, H, block, block)`.

Neither form keeps the probabilities: both save `o` and `lse` only, and the backward uses
`dS = P * (dP - rowsum(dO * O))` (docs/attention_backward.md derives it).

Dropout on the probabilities (`rate > 0` with a `key`): the kept-mask is drawn again from
the same key in the backward, whole (simple) or per tile from `fold_in(key, tile index)`
(blocked), so forward and backward agree without storing it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _allowed(real, causal, i0, q_len, j0, k_len):
    """(B or 1, 1, q_len, k_len) bool: may query i0 + a attend to key j0 + c; `real` holds
    the keys' mask (None: all real)."""
    ok = jnp.ones((1, 1, q_len, k_len), bool)
    if causal:
        ok = ok & ((j0 + jnp.arange(k_len))[None, :] <= (i0 + jnp.arange(q_len))[:, None])
    if real is not None:
        ok = ok & real[:, None, None, :]
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
    ok = _allowed(mask, causal, 0, t, 0, tk)
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
    ok = _allowed(mask, causal, 0, q.shape[-2], 0, k.shape[-2])
    delta = jnp.sum(do * o, axis=-1)  # rowsum(dO * O) = rowsum(dP * P)
    scale = _keep_scale(key, rate, q.shape[:-1] + (k.shape[-2],), q.dtype)
    return _block_grads(q, k, v, do, lse, delta, ok, scale)


def _block_scale(key, rate, i, shape, dtype):
    return None if key is None or rate == 0.0 else _keep_scale(
        jax.random.fold_in(key, i), rate, shape, dtype
    )


def _pad_to(a, tp, axis, value=0):
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, tp - a.shape[axis])
    return jnp.pad(a, pad, constant_values=value)


def _at(a, i, block, axis=2):
    return jax.lax.dynamic_slice_in_dim(a, i * block, block, axis)


def _visited(tile, causal, fixed, *, below):
    """`tile(n, carry)` for every n, or (causal) only where the tile is at or below the
    diagonal: n <= fixed (`below`, n a key block) or n >= fixed (n a query block). The
    loop keeps static bounds and skips with `lax.cond`, so `jax.grad` and `jax.vjp` can
    still differentiate through it (the gradient checker does, and so do HVPs)."""
    if not causal:
        return tile
    return lambda n, carry: jax.lax.cond(
        (n <= fixed) if below else (n >= fixed), tile, lambda n, c: c, n, carry
    )


def blocked_forward(q, k, v, mask, causal, rate=0.0, key=None, *, block=128):
    """`(o, lse)`: query blocks one after another, each an online softmax over its key
    blocks (only those at or below the diagonal when causal)."""
    b, h, t, d = q.shape
    nb = -(-t // block)
    tp = nb * block
    qp, kp, vp = (_pad_to(a, tp, 2) for a in (q, k, v))
    real = None if mask is None and tp == t else _pad_to(
        jnp.ones((b, t), bool) if mask is None else mask, tp, 1, False
    )

    def row(i):
        qi = _at(qp, i, block)

        def tile(j, carry):
            m, total, acc = carry
            real_j = None if real is None else _at(real, j, block, 1)
            ok = _allowed(real_j, causal, i * block, block, j * block, block)
            s = jnp.where(ok, _scores(qi, _at(kp, j, block)), -jnp.inf)
            m_new = jnp.maximum(m, jnp.max(s, axis=-1))
            safe = jnp.where(jnp.isfinite(m_new), m_new, 0)
            p = jnp.exp(s - safe[..., None])
            alpha = jnp.exp(m - safe)
            total = alpha * total + jnp.sum(p, axis=-1)
            scale = _block_scale(key, rate, i * nb + j, p.shape, p.dtype)
            acc = alpha[..., None] * acc + (p if scale is None else p * scale) @ _at(vp, j, block)
            return m_new, total, acc

        init = (
            jnp.full((b, h, block), -jnp.inf, q.dtype),
            jnp.zeros((b, h, block), q.dtype),
            jnp.zeros((b, h, block, d), q.dtype),
        )
        m, total, acc = jax.lax.fori_loop(0, nb, _visited(tile, causal, i, below=True), init)
        live = total > 0
        o = acc / jnp.where(live, total, 1)[..., None]
        safe = jnp.where(jnp.isfinite(m), m, 0)
        return o, jnp.where(live, safe + jnp.log(jnp.where(live, total, 1)), jnp.inf)

    o, lse = jax.lax.map(row, jnp.arange(nb))  # (nb, B, H, block, ...)
    o = jnp.moveaxis(o, 0, 2).reshape(b, h, tp, d)[:, :, :t]
    return o, jnp.moveaxis(lse, 0, 2).reshape(b, h, tp)[:, :, :t]


def blocked_backward(q, k, v, o, lse, do, mask, causal, rate=0.0, key=None, *, block=128):
    """`(dq, dk, dv)`: key blocks one after another, each recomputing its tiles of P with
    the query blocks at or below the diagonal; dq is carried and updated tile by tile."""
    b, h, t, d = q.shape
    nb = -(-t // block)
    tp = nb * block
    qp, kp, vp, dop = (_pad_to(a, tp, 2) for a in (q, k, v, do))
    delta = _pad_to(jnp.sum(do * o, axis=-1), tp, 2)
    lsep = _pad_to(lse, tp, 2, jnp.inf)  # padded query rows: P = 0
    real = None if mask is None and tp == t else _pad_to(
        jnp.ones((b, t), bool) if mask is None else mask, tp, 1, False
    )

    def col(dq, j):
        kj, vj = _at(kp, j, block), _at(vp, j, block)
        real_j = None if real is None else _at(real, j, block, 1)

        def tile(i, carry):
            dq, dk, dv = carry
            qi = _at(qp, i, block)
            ok = _allowed(real_j, causal, i * block, block, j * block, block)
            scale = _block_scale(key, rate, i * nb + j, (b, h, block, block), q.dtype)
            dq_i, dk_i, dv_i = _block_grads(
                qi, kj, vj, _at(dop, i, block), _at(lsep, i, block), _at(delta, i, block),
                ok, scale,
            )  # fmt: skip
            dq = jax.lax.dynamic_update_slice_in_dim(dq, _at(dq, i, block) + dq_i, i * block, 2)
            return dq, dk + dk_i, dv + dv_i

        zero = jnp.zeros((b, h, block, d), q.dtype)
        dq, dk, dv = jax.lax.fori_loop(
            0, nb, _visited(tile, causal, j, below=False), (dq, zero, zero)
        )
        return dq, (dk, dv)

    dq, (dk, dv) = jax.lax.scan(col, jnp.zeros_like(qp), jnp.arange(nb))
    unblock = lambda g: jnp.moveaxis(g, 0, 2).reshape(b, h, tp, d)[:, :, :t]  # noqa: E731
    return dq[:, :, :t], unblock(dk), unblock(dv)
