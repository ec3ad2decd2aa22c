"""jnet.lm.generate: compiled sampling from a prompt (temperature, top-k, nanoGPT's crop)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _lm_support import bigram, positional_bigram

import jnet
import jnet.lm

V, BLOCK = 11, 5


@pytest.fixture(scope="module")
def model():
    net = positional_bigram(V, BLOCK)
    return net, net.init(jax.random.key(0), (1, BLOCK))[1]


def _greedy_by_hand(net, params, prompt, new_tokens):
    """nanoGPT's generate with argmax, one Python step per token: crop to the last BLOCK
    tokens, run the network, take the last position's logits."""
    tokens, forward = list(prompt), jax.jit(jnet.apply(net))
    for _ in range(new_tokens):
        window = jnp.asarray(tokens[-BLOCK:], jnp.int32)[None]
        logits = forward(params, window)
        tokens.append(int(jnp.argmax(logits[0, -1])))
    return tokens


@pytest.mark.slow  # the GPT one below too; the fast path samples in the other tests
def test_top_k_1_is_greedy_decoding(model):
    net, params = model
    prompt = [3, 1, 4]
    # 9 new tokens: the window first holds padding after the text, then slides (crops).
    got = jnet.lm.generate(net, params, jnp.asarray(prompt), jax.random.key(7),
                           new_tokens=9, block_size=BLOCK, top_k=1)  # fmt: skip
    assert got.shape == (12,) and got.dtype == jnp.int32
    assert got.tolist() == _greedy_by_hand(net, params, prompt, 9)
    # A prompt longer than the block is cropped to its last BLOCK tokens, as nanoGPT does.
    long = [1, 2, 3, 4, 5, 6, 7, 8]
    got = jnet.lm.generate(net, params, jnp.asarray(long), jax.random.key(1),
                           new_tokens=3, block_size=BLOCK, top_k=1)  # fmt: skip
    assert got.tolist() == _greedy_by_hand(net, params, long, 3)


@pytest.mark.slow  # another compilation (a batch of prompts)
def test_same_key_same_text_and_batches(model):
    net, params = model
    prompts = jnp.asarray([[1, 2], [3, 4], [5, 6]])
    sample = lambda key: jnet.lm.generate(
        net, params, prompts, key, new_tokens=20, block_size=BLOCK, temperature=2.0
    )
    a, b, c = sample(jax.random.key(0)), sample(jax.random.key(0)), sample(jax.random.key(1))
    assert a.shape == (3, 22) and np.array_equal(a[:, :2], prompts)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.slow  # two compilations
def test_top_k_keeps_the_k_most_likely():
    net = bigram(V)
    _, params = net.init(jax.random.key(3), (1, 4))
    out = jnet.lm.generate(net, params, jnp.zeros((8, 1), jnp.int32), jax.random.key(2),
                           new_tokens=30, block_size=4, temperature=5.0, top_k=3)  # fmt: skip
    top3 = np.argsort(np.asarray(params["w"]), axis=1)[:, -3:]
    prev, nxt = np.asarray(out[:, :-1]).ravel(), np.asarray(out[:, 1:]).ravel()
    assert all(n in top3[p] for p, n in zip(prev, nxt, strict=True))
    # A hot temperature without top-k reaches tokens outside the top 3.
    wide = jnet.lm.generate(net, params, jnp.zeros((8, 1), jnp.int32), jax.random.key(2),
                            new_tokens=30, block_size=4, temperature=5.0)  # fmt: skip
    prev, nxt = np.asarray(wide[:, :-1]).ravel(), np.asarray(wide[:, 1:]).ravel()
    assert not all(n in top3[p] for p, n in zip(prev, nxt, strict=True))


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, float("nan"), float("inf"), True, "1"])
def test_temperature_must_be_positive_and_finite(model, temperature):
    net, params = model
    with pytest.raises(ValueError, match="temperature must be"):
        jnet.lm.generate(net, params, jnp.asarray([1]), jax.random.key(0), new_tokens=2,
                         block_size=BLOCK, temperature=temperature)  # fmt: skip


def test_clear_errors_for_prompts_and_counts(model):
    net, params = model
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"prompt must be integer token ids .* got shape \(0,\)"):
        jnet.lm.generate(net, params, jnp.zeros(0, jnp.int32), key, new_tokens=2, block_size=5)
    with pytest.raises(ValueError, match="dtype float"):
        jnet.lm.generate(net, params, jnp.ones(3), key, new_tokens=2, block_size=5)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        jnet.lm.generate(net, params, jnp.ones(3, int), key, new_tokens=2, block_size=5, top_k=0)
    with pytest.raises(ValueError, match="new_tokens must be a positive integer"):
        jnet.lm.generate(net, params, jnp.ones(3, int), key, new_tokens=0, block_size=5)


@pytest.mark.slow  # compiles a GPT's sampler and three window lengths by hand
def test_gpt_top_k_1_is_greedy_decoding():
    net = jnet.gpt(V, block_size=BLOCK, layers=1, heads=2, dim=8)
    _, params = net.init(jax.random.key(4), (1, BLOCK))
    # Bigger weights than the 0.02 init, so that positions and tokens change the argmax.
    params = jax.tree.map(lambda p: p * 50.0 if p.ndim == 2 else p, params)
    prompt = [2, 7]
    got = jnet.lm.generate(
        net,
        params,
        jnp.asarray(prompt),
        jax.random.key(0),
        new_tokens=8,
        block_size=BLOCK,
        top_k=1,
    )
    want = _greedy_by_hand(net, params, prompt, 8)
    assert got.tolist() == want and len(set(want[2:])) > 1
