"""Embeddings: `embedding` (token ids -> vectors) and `positional_embedding` (learned
positions added to a sequence), each with a hand-written backward.

The token embedding's backward is a scatter-add (llm.c's `encoder_backward`): every
occurrence of a token adds its row of `dy` into that token's row of `dw`, so a token used
twice gets both gradients. Its integer input gets no gradient (`dx` is None, JAX's zero).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jnet import initializers
from jnet.layers.base import Layer
from jnet.layers.checks import check_float, param_dict, positive_int


def check_ids(name: str, ids: np.ndarray, vocab_size: int, what: str = "token ids") -> None:
    """Raises a ValueError naming the range when concrete `ids` fall outside `[0, vocab_size)`."""
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        bad = int(np.sum((ids < 0) | (ids >= vocab_size)))
        raise ValueError(
            f"{name}: {what} must lie in [0, {vocab_size}); got {bad} outside it, in "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )


def embedding(
    vocab_size: int, dim: int, *, w_init: initializers.Initializer | None = None
) -> Layer:
    """A lookup table: integer token ids `(N, T)` (any leading axes) -> `(N, T, dim)`.

    Args:
      vocab_size: the number of token ids, V; ids lie in `[0, V)`.
      dim: the vector size D.
      w_init: initializer of `w (V, D)`; default `normal(0.02)` (GPT-2, nanoGPT).

    Params: `{"w": (vocab_size, dim)}` (PyTorch's `nn.Embedding.weight` as it is).
    Backward: `dw[v] = sum of dy over the positions holding v` (scatter-add); no gradient
    for the ids. Ids outside `[0, V)`: a ValueError when they are concrete (an eager call,
    and `fit`/`evaluate`'s data check, which reads the network's `vocab_size`); under `jit`
    nothing can raise, so such an id gives a row of NaN (JAX's own gather would silently
    clamp it to a valid row) and adds nothing to `dw`: the loss turns NaN and `fit`'s
    divergence check stops the run.
    """
    positive_int("embedding", "vocab_size", vocab_size)
    positive_int("embedding", "dim", dim)
    name = f"embedding({vocab_size}, {dim})"
    w_init = w_init or initializers.normal(0.02)

    def init(key, input_shape):
        return tuple(input_shape) + (dim,), {"w": w_init(key, (vocab_size, dim))}

    def forward(params, x, *, key=None):
        w = param_dict(name, params, {"w"})["w"]
        if not hasattr(x, "dtype") or not jnp.issubdtype(jnp.result_type(x), jnp.integer):
            got = f"dtype {jnp.result_type(x)}" if hasattr(x, "dtype") else type(x).__name__
            raise ValueError(
                f"{name}: input must be integer token ids (N, T); got {got} (float data "
                "goes to a dense layer; ids as x.astype('int32'))"
            )
        if w.shape != (vocab_size, dim):
            raise ValueError(f"{name}: params hold w {w.shape}, not ({vocab_size}, {dim})")
        if not isinstance(x, jax.core.Tracer):
            check_ids(name, np.asarray(x), vocab_size)
        valid = (x >= 0) & (x < vocab_size)
        rows = jnp.take(w, jnp.clip(x, 0, vocab_size - 1), axis=0)
        return jnp.where(valid[..., None], rows, jnp.nan), x  # cache = the ids

    def backward(params, x, dy):
        w = params["w"]
        valid = (x >= 0) & (x < vocab_size)
        rows = jnp.where(valid[..., None], dy, 0).reshape(-1, dim).astype(w.dtype)
        ids = jnp.clip(x, 0, vocab_size - 1).reshape(-1)
        return {"w": jnp.zeros_like(w).at[ids].add(rows)}, None

    return Layer(init, forward, backward, name, vocab_size=vocab_size)


def positional_embedding(
    max_len: int, *, w_init: initializers.Initializer | None = None
) -> Layer:
    """Learned positions: `x (N, T, D) -> x + w[:T]` for any `T <= max_len`.

    Args:
      max_len: the longest sequence (nanoGPT's `block_size`).
      w_init: initializer of `w (max_len, D)`; default `normal(0.02)` (GPT-2, nanoGPT).

    Params: `{"w": (max_len, D)}` (nanoGPT's `wpe.weight`). Backward: `dx = dy`,
    `dw[:T] = dy` summed over the leading axes, `dw[T:] = 0`. Any leading axes.
    """
    positive_int("positional_embedding", "max_len", max_len)
    name = f"positional_embedding({max_len})"
    w_init = w_init or initializers.normal(0.02)

    def length(shape):
        if len(shape) < 2:
            raise ValueError(f"{name}: input has shape {tuple(shape)}; expected (..., T, D)")
        if shape[-2] > max_len:
            raise ValueError(
                f"{name}: the sequence has T = {shape[-2]} steps, more than max_len = "
                f"{max_len} (input shape {tuple(shape)})"
            )
        return shape[-2]

    def init(key, input_shape):
        length(input_shape)
        return tuple(input_shape), {"w": w_init(key, (max_len, input_shape[-1]))}

    def forward(params, x, *, key=None):
        check_float(name, x)
        w = param_dict(name, params, {"w"})["w"]
        t = length(x.shape)
        if w.shape != (max_len, x.shape[-1]):
            raise ValueError(
                f"{name}: input has shape {x.shape} but w has shape {w.shape}; expected "
                f"(..., T, {w.shape[-1]})"
            )
        return x + w[:t], jnp.zeros((0, t), x.dtype)  # cache: T, in a zero-size array

    def backward(params, cache, dy):
        t, w = cache.shape[1], params["w"]
        summed = dy.reshape(-1, t, dy.shape[-1]).sum(0).astype(w.dtype)
        return {"w": jnp.zeros_like(w).at[:t].set(summed)}, dy.astype(cache.dtype)

    return Layer(init, forward, backward, name)
