"""A bigram language model for the jnet.lm tests: logits (N, T, V) = w[tokens], causal."""

import jax
import jax.numpy as jnp

import jnet


def bigram(vocab: int) -> jnet.Layer:
    """Tokens `(N, T)` -> logits `w[tokens]` `(N, T, vocab)`; params `{"w": (vocab, vocab)}`.

    Each position's logits depend on its own token only: a causal network whose
    gradients (a scatter-add into w's rows) are easy to write by hand.
    """

    def init(key, input_shape):
        return tuple(input_shape) + (vocab,), {"w": 0.5 * jax.random.normal(key, (vocab, vocab))}

    def forward(params, x, *, key=None):
        return params["w"][x], x

    def backward(params, x, dy):
        dw = jnp.zeros_like(params["w"]).at[x.reshape(-1)].add(dy.reshape(-1, vocab))
        return {"w": dw}, None

    return jnet.Layer(init, forward, backward, name=f"bigram({vocab})")


def positional_bigram(vocab: int, max_len: int) -> jnet.Layer:
    """Logits `w[tokens] + p[:T]`: causal, and each position's logits depend on where it is,
    so a sampler that reads the wrong position of its window gets other tokens."""

    def init(key, input_shape):
        k1, k2 = jax.random.split(key)
        params = {
            "w": jax.random.normal(k1, (vocab, vocab)),
            "p": jax.random.normal(k2, (max_len, vocab)),
        }
        return tuple(input_shape) + (vocab,), params

    def forward(params, x, *, key=None):
        return params["w"][x] + params["p"][: x.shape[-1]], x

    def backward(params, x, dy):
        dw = jnp.zeros_like(params["w"]).at[x.reshape(-1)].add(dy.reshape(-1, vocab))
        rows = dy.reshape(-1, x.shape[-1], vocab).sum(0)
        return {"w": dw, "p": jnp.zeros_like(params["p"]).at[: x.shape[-1]].set(rows)}, None

    return jnet.Layer(init, forward, backward, name=f"positional_bigram({vocab}, {max_len})")
