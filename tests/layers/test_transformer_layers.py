"""The transformer's layers one at a time: embedding (scatter-add, integer input, ids out of
range), positional_embedding, layer_norm, gelu (both forms, float32 too), dense without
bias, and softmax cross entropy over (N, T, V) logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _marks import fast_at

import jnet
from jnet.gradcheck import assert_trees_close

KEY = jax.random.key(0)


def randn(shape, seed=0, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def vjp_both(layer, params, x, dy):
    """(hand-written backward, jax.vjp of the forward) at (params, x)."""
    y, cache = layer.forward(params, x)
    _, vjp = jax.vjp(lambda p, x: layer.forward(p, x)[0], params, x)
    return layer.backward(params, cache, dy), vjp(dy)


def test_embedding_scatter_adds_repeated_tokens():
    emb = jnet.embedding(5, 3)
    shape, params = emb.init(KEY, (2, 4))
    assert shape == (2, 4, 3) and params["w"].shape == (5, 3)
    ids = jnp.array([[1, 1, 4, 1], [0, 4, 4, 2]])
    dy = randn((2, 4, 3))

    @jax.jit  # one compile: compiling is what costs here
    def everything(params, ids, dy):
        y, cache = emb.forward(params, ids)
        hand = emb.backward(params, cache, dy)
        # Through apply's custom_vjp: jax.grad of the params with integer input.
        got = jax.grad(lambda p: jnp.sum(jnet.apply(emb)(p, ids) * dy))(params)["w"]
        naive = jax.grad(lambda w: jnp.sum(jax.nn.one_hot(ids, 5) @ w * dy))(params["w"])
        return y, hand, got, naive

    y, (grads, dx), got, naive = everything(params, ids, dy)
    np.testing.assert_array_equal(y, params["w"][ids])
    assert dx is None  # the ids get no gradient
    want = np.zeros((5, 3))
    for (n, t), v in np.ndenumerate(np.asarray(ids)):
        want[v] += np.asarray(dy[n, t])  # token 1 three times, token 4 three times
    np.testing.assert_allclose(grads["w"], want, rtol=1e-14)
    assert not np.any(grads["w"][3])  # unused token: no gradient
    np.testing.assert_allclose(got, naive, rtol=1e-14)
    np.testing.assert_allclose(got, want, rtol=1e-14)


@pytest.mark.slow
def test_embedding_takes_any_leading_axes_and_refuses_floats():
    emb = jnet.embedding(7, 2)
    _, params = emb.init(KEY, (3,))
    assert emb.forward(params, jnp.array([[[1, 2]]]))[0].shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"embedding\(7, 2\): input must be integer token ids"):
        emb.forward(params, jnp.ones((2, 3)))
    assert emb.vocab_size == 7 and jnet.serial(emb, jnet.dense(2)).vocab_size == 7


@pytest.mark.slow
def test_embedding_ids_out_of_range_raise_when_concrete_and_are_nan_under_jit():
    emb = jnet.embedding(4, 2)
    _, params = emb.init(KEY, (3,))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 4\); got 2 outside it, "
                                         r"in \[-1, 4\]"):  # fmt: skip
        emb.forward(params, jnp.array([[0, 4, -1]]))
    y = jax.jit(lambda p, x: emb.forward(p, x)[0])(params, jnp.array([[0, 4, -1]]))
    assert np.all(np.isnan(y[0, 1:])) and np.array_equal(y[0, 0], params["w"][0])
    g = jax.jit(lambda p, x: emb.backward(p, emb.forward(p, x)[1], jnp.ones((1, 3, 2))))(
        params, jnp.array([[0, 4, -1]])
    )[0]["w"]
    np.testing.assert_array_equal(g, np.array([[1, 1], [0, 0], [0, 0], [0, 0]]))


@pytest.mark.slow
def test_positional_embedding_adds_the_first_t_rows():
    pos = jnet.positional_embedding(6)
    shape, params = pos.init(KEY, (2, 4, 3))
    assert shape == (2, 4, 3) and params["w"].shape == (6, 3)
    x = randn((2, 4, 3))
    np.testing.assert_allclose(pos.forward(params, x)[0], x + params["w"][:4], rtol=1e-15)
    dy = randn((2, 4, 3), seed=1)
    (grads, dx), (ref_p, ref_x) = vjp_both(pos, params, x, dy)
    assert_trees_close((grads, dx), (ref_p, ref_x), rtol=1e-14)
    assert not np.any(grads["w"][4:])
    with pytest.raises(ValueError, match=r"positional_embedding\(6\): the sequence has T = 7 "
                                         r"steps, more than max_len = 6"):  # fmt: skip
        pos.forward(params, randn((2, 7, 3)))
    with pytest.raises(ValueError, match=r"T = 9 steps, more than max_len = 6"):
        pos.init(KEY, (1, 9, 3))


def _naive_layer_norm(params, x, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    y = (x - mean) / jnp.sqrt(var + eps) * params["scale"]
    return y + params["bias"] if "bias" in params else y


@pytest.mark.parametrize("bias", fast_at([True, False], {0}))
def test_layer_norm_matches_the_naive_forward_and_its_vjp(bias):
    ln = jnet.layer_norm(bias=bias)
    _, params = ln.init(KEY, (2, 3, 5))
    assert set(params) == ({"scale", "bias"} if bias else {"scale"})
    params = jax.tree.map(lambda a: a + randn(a.shape, seed=3), params)  # not ones/zeros
    x, dy = randn((2, 3, 5)) * 3 + 1, randn((2, 3, 5), seed=1)

    @jax.jit
    def everything(params, x, dy):
        y, cache = ln.forward(params, x)
        _, vjp = jax.vjp(_naive_layer_norm, params, x)
        return y, _naive_layer_norm(params, x), ln.backward(params, cache, dy), vjp(dy), cache

    y, ref, hand, want, cache = everything(params, x, dy)
    np.testing.assert_allclose(y, ref, rtol=1e-13)
    assert_trees_close(hand, want, rtol=1e-12)
    assert [c.shape for c in cache] == [(2, 3, 5), (2, 3, 1), (2, 3, 1)]  # x, mean, rstd


@pytest.mark.slow
def test_layer_norm_refuses_wrong_widths_and_arguments():
    ln = jnet.layer_norm()
    _, params = ln.init(KEY, (2, 4))
    with pytest.raises(ValueError, match=r"layer_norm\(\): input has shape \(2, 5\)"):
        ln.forward(params, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"eps must be a number > 0"):
        jnet.layer_norm(eps=0)
    assert jnet.layer_norm(bias=False).name == "layer_norm(bias=False)"


@pytest.mark.parametrize(
    "approximate, dtype",
    fast_at([(a, d) for a in (False, True) for d in (jnp.float64, jnp.float32)], set(),
            unpack=True),  # all in CI; the registry's gelu cases check both forms too
)
def test_gelu_both_forms_match_jax(approximate, dtype):
    layer = jnet.gelu(approximate)
    x = jnp.linspace(-6, 6, 97, dtype=dtype).reshape(1, 97)
    y, cache = layer.forward((), x)
    ref = jax.nn.gelu(x, approximate=approximate)
    rtol = 1e-14 if dtype == jnp.float64 else 1e-6
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=rtol)
    dy = jnp.ones_like(x)
    _, dx = layer.backward((), cache, dy)
    want = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=approximate)))(x[0])
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx[0], want, rtol=10 * rtol, atol=10 * rtol)
    # The two forms differ (by up to ~5e-4 near |x| = 2): not the same function twice.
    other = jax.nn.gelu(x, approximate=not approximate)
    assert float(jnp.max(jnp.abs(y - other))) > 1e-4


@pytest.mark.slow
def test_dense_without_bias_holds_w_alone():
    layer = jnet.dense(3, bias=False)
    _, params = layer.init(KEY, (2, 4))
    assert set(params) == {"w"}
    x, dy = randn((2, 4)), randn((2, 3), seed=1)
    np.testing.assert_array_equal(layer.forward(params, x)[0], x @ params["w"])
    (grads, dx), ref = vjp_both(layer, params, x, dy)
    assert_trees_close((grads, dx), ref, rtol=1e-14)
    with pytest.raises(ValueError, match=r"params must be a dict with \['w'\]"):
        layer.forward({"w": params["w"], "b": jnp.zeros(3)}, x)


@pytest.mark.slow
def test_softmax_cross_entropy_over_tokens_is_the_mean_over_every_token():
    logits, labels = randn((2, 3, 5)), jnp.array([[0, 4, 2], [1, 1, 3]])
    loss = jnet.softmax_cross_entropy
    logp = jax.nn.log_softmax(logits)
    want = -np.mean([logp[n, t, labels[n, t]] for n in range(2) for t in range(3)])
    np.testing.assert_allclose(jnet.apply(loss)(logits, labels), want, rtol=1e-14)
    grad = jax.grad(jnet.apply(loss))(logits, labels)
    ref = jax.grad(lambda z: -jnp.mean(jnp.take_along_axis(
        jax.nn.log_softmax(z), labels[..., None], -1)))(logits)  # fmt: skip
    np.testing.assert_allclose(grad, ref, rtol=1e-13)
    right = jnp.where(jnp.arange(5) == labels[..., None], 9.0, 0.0).at[0, 0, 1].set(99.0)
    np.testing.assert_allclose(jnet.accuracy(loss, right, labels), 5 / 6)  # 5 of 6 tokens
