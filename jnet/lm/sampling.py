"""Text generation from a prompt: one compiled loop over a fixed-size context window.

nanoGPT's `generate` feeds the last `block_size` tokens (`idx[:, -block_size:]`) to the
model, takes the logits of the last position, divides them by the temperature, keeps the
`top_k` largest and samples. Here the whole loop is one `lax.fori_loop` inside a jit: the
tokens live in a buffer of fixed length, and each step runs the network on a window of
exactly `block_size` tokens (`dynamic_slice`), so every step has the same shapes. While
the text is shorter than `block_size`, the window starts at 0 and the tokens after the
current position are padding the network must not look at: the network must be causal
(position t's output depends on tokens 0..t only), as a GPT is. The logits read are those
of the current position, which are then exactly nanoGPT's.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet import arguments
from jnet.layers import Layer, Params, State, forward_with_state


def _check(prompt: Any, temperature: Any, top_k: int | None, new_tokens: int, block_size: int):
    arguments.positive_int("generate", "new_tokens", new_tokens)
    arguments.positive_int("generate", "block_size", block_size)
    arguments.positive_int("generate", "top_k", top_k, optional=True)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float | np.floating):
        raise ValueError(f"generate: temperature must be a positive number; got {temperature!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"generate: temperature must be positive and finite; got {temperature!r} "
            "(for greedy decoding pass top_k=1)"
        )
    shape, dtype = jnp.shape(prompt), jnp.result_type(prompt)
    if len(shape) not in (1, 2) or shape[-1] < 1 or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(
            "generate: prompt must be integer token ids (T,) or (N, T) with T >= 1; got shape "
            f"{shape} and dtype {dtype}"
        )


@functools.lru_cache(maxsize=32)
def _sampler(net: Layer, new_tokens: int, block_size: int, top_k: int | None):
    def sample(params, state, prompt, key, temperature):
        n, p = prompt.shape
        total = max(p + new_tokens, block_size)
        buf = jnp.zeros((n, total), jnp.int32).at[:, :p].set(prompt.astype(jnp.int32))

        def body(i, carry):
            buf, key = carry
            length = p + i  # tokens so far; the next one goes at index `length`
            start = jnp.maximum(length - block_size, 0)
            window = jax.lax.dynamic_slice_in_dim(buf, start, block_size, axis=1)
            logits = forward_with_state(net, params, window, state=state)[0]
            last = jax.lax.dynamic_index_in_dim(logits, length - 1 - start, 1, keepdims=False)
            last = last.astype(jnp.float32) / temperature
            if top_k is not None and top_k < last.shape[-1]:
                kth = jax.lax.top_k(last, top_k)[0][:, -1:]
                last = jnp.where(last < kth, -jnp.inf, last)
            key, sub = jax.random.split(key)
            token = jax.random.categorical(sub, last, axis=-1).astype(jnp.int32)
            return jax.lax.dynamic_update_slice_in_dim(buf, token[:, None], length, 1), key

        buf, _ = jax.lax.fori_loop(0, new_tokens, body, (buf, key))
        return buf[:, : p + new_tokens]

    return jax.jit(sample)


def generate(
    net: Layer,
    params: Params,
    prompt: Any,
    key: jax.Array,
    *,
    new_tokens: int,
    block_size: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    state: State = (),
) -> jax.Array:
    """Samples `new_tokens` tokens after `prompt` from a causal network, compiled.

    Args:
      net, params: a causal network from int32 tokens `(N, T)` to logits `(N, T, V)`
        (e.g. `jnet.gpt`), run in inference mode (no dropout); `state` its model state.
      prompt: token ids `(T,)` or `(N, T)`, `T >= 1`; longer than `block_size` is fine (the
        window holds its last `block_size` tokens, as nanoGPT crops).
      key: a PRNG key; the same key gives the same text.
      new_tokens: how many tokens to add (static: one compilation per value).
      block_size: the context the network was trained on (its maximum length).
      temperature: divides the logits (> 0; lower is more conservative).
      top_k: keep only the `top_k` most likely tokens (None: all); `top_k=1` is greedy
        decoding (argmax).

    Returns:
      int32 `(T + new_tokens,)` or `(N, T + new_tokens)`: the prompt, then the samples.
    """
    _check(prompt, temperature, top_k, new_tokens, block_size)
    arguments.prng_key("generate", key)
    prompt = jnp.asarray(prompt)
    single = prompt.ndim == 1
    out = _sampler(net, new_tokens, block_size, top_k)(
        params, state, prompt[None] if single else prompt, key, jnp.float32(temperature)
    )
    return out[0] if single else out
