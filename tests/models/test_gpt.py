"""tie, transformer_block and gpt: layouts, nanoGPT's init, the tied matrix's summed
gradient against autodiff of a naive forward, token ids at fit's data check, and the
culprit finder walking into blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet.gradcheck import assert_trees_close, check_gradients
from jnet.gradcheck.transformer_cases import naive_block, naive_gpt
from jnet.models import transformer

KEY = jax.random.key(0)
CE = jnet.softmax_cross_entropy


def tokens(shape, vocab, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, shape))


def naive_ce(logits, labels):
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], -1))


def test_tie_removes_the_target_and_sums_both_gradients():
    net = jnet.tie(jnet.serial(jnet.embedding(5, 3), jnet.dense(5, bias=False)), (0, "w"),
                   (1, "w"), transpose=True)  # fmt: skip
    _, params = net.init(KEY, (2, 4))
    assert jax.tree.map(jnp.shape, params) == ({"w": (5, 3)}, {})
    ids, labels = tokens((2, 4), 5), tokens((2, 4), 5, seed=1)
    w = params[0]["w"]

    def naive(w, v):  # one matrix used twice (v = w): autodiff sums the two paths
        return naive_ce(jax.nn.one_hot(ids, 5) @ w @ v.T, labels)

    @jax.jit  # one compile: compiling is what costs here
    def everything(params):
        y = jnet.apply(net)(params, ids)
        grads = jax.grad(lambda p: jnet.apply(CE)(jnet.apply(net)(p, ids), labels))(params)
        w = params[0]["w"]
        return y, grads, jax.grad(lambda w: naive(w, w))(w), jax.grad(naive, 1)(w, w)

    y, grads, want, head_alone = everything(params)
    np.testing.assert_allclose(y, w[ids] @ w.T, rtol=1e-14)
    np.testing.assert_allclose(grads[0]["w"], want, rtol=1e-13)
    assert not np.allclose(grads[0]["w"], head_alone, rtol=1e-3)  # neither path alone


def test_tie_refuses_missing_or_mismatched_leaves():
    net = jnet.serial(jnet.embedding(5, 3), jnet.dense(4, bias=False))
    with pytest.raises(ValueError, match=r"has shape \(3, 4\); sharing the leaf at \(0, 'w'\) "
                                         r"transposed gives \(3, 5\)"):  # fmt: skip
        jnet.tie(net, (0, "w"), (1, "w"), transpose=True).init(KEY, (2, 4))
    with pytest.raises(ValueError, match=r"no leaf at \(0, 'w'\) or at \(1, 'b'\)"):
        jnet.tie(net, (0, "w"), (1, "b")).init(KEY, (2, 4))
    with pytest.raises(ValueError, match=r"tie: target is a path of keys into the params"):
        jnet.tie(net, (0, "w"), "w")


@pytest.mark.slow
def test_gpt_layout_and_nanogpt_init():
    net = jnet.gpt(50, block_size=16, layers=2, heads=2, dim=64)
    _, params = net.init(KEY, (1, 16))
    shapes = jax.tree.map(jnp.shape, params)
    assert shapes[0] == {"w": (50, 64)} and shapes[1] == {"w": (16, 64)} and shapes[2] == ()
    assert shapes[5] == {"scale": (64,), "bias": (64,)} and shapes[6] == {}  # ln_f, tied head
    ((ln1, attn, _),), ((_, fc, _, proj, _),) = params[3]
    assert fc["w"].shape == (64, 256) and proj["w"].shape == (256, 64)
    for w, std in ((params[0]["w"], 0.02), (attn["w_qkv"], 0.02), (fc["w"], 0.02),
                   (attn["w_out"], 0.01), (proj["w"], 0.01)):  # 0.02 / sqrt(2 * 2)
        assert abs(float(jnp.std(w)) / std - 1) < 0.1, (w.shape, float(jnp.std(w)), std)
    assert not np.any(attn["b_qkv"]) and not np.any(fc["b"]) and np.all(ln1["scale"] == 1)
    untied = jnet.gpt(50, block_size=16, layers=1, heads=2, dim=8, bias=False, tie_weights=False)
    _, params = untied.init(KEY, (1, 4))
    assert jax.tree.map(jnp.shape, params[-1]) == {"w": (8, 50)}
    names = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert not any(n.endswith(("['b']", "['bias']", "['b_qkv']", "['b_out']")) for n in names)
    with pytest.raises(ValueError, match=r"T = 17 steps, more than max_len = 16"):
        jnet.apply(net)(net.init(KEY, (1, 16))[1], tokens((1, 17), 50))


@pytest.mark.slow
@pytest.mark.parametrize("tie_weights", [True, False])
def test_gpt_gradients_match_autodiff_of_the_naive_forward(tie_weights):
    net = jnet.gpt(7, block_size=6, layers=2, heads=2, dim=4, tie_weights=tie_weights)
    _, params = net.init(KEY, (2, 5))
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(KEY, a.shape), params)
    ids, labels = tokens((2, 5), 7), tokens((2, 5), 7, seed=1)
    logits = jnet.apply(net)(params, ids)
    np.testing.assert_allclose(logits, naive_gpt(params, ids, 2, 2, tie_weights), rtol=1e-12)
    hand = jax.jit(jax.grad(lambda p: jnet.apply(CE)(jnet.apply(net)(p, ids), labels)))(params)
    ref = jax.jit(jax.grad(lambda p: naive_ce(naive_gpt(p, ids, 2, 2, tie_weights), labels)))(
        params
    )
    assert_trees_close(hand, ref, rtol=1e-10, atol=1e-15)


@pytest.mark.slow
def test_transformer_block_matches_the_naive_block():
    block = jnet.transformer_block(2, causal=False)
    _, params = block.init(KEY, (2, 5, 4))
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(KEY, a.shape), params)
    x = jax.random.normal(jax.random.key(1), (2, 5, 4))
    f = jnet.apply(block)
    np.testing.assert_allclose(f(params, x), naive_block(params, x, 2, causal=False), rtol=1e-12)
    _, vjp = jax.vjp(f, params, x)
    _, ref = jax.vjp(lambda p, x: naive_block(p, x, 2, causal=False), params, x)
    dy = jax.random.normal(jax.random.key(2), (2, 5, 4))
    assert_trees_close(vjp(dy), ref(dy), rtol=1e-10, atol=1e-15)


def test_token_ids_at_the_data_check():
    net = jnet.serial(jnet.embedding(7, 4), jnet.dense(7))  # says vocab_size=7, as gpt does
    _, params = net.init(KEY, (2, 5))
    y = tokens((2, 5), 7)
    with pytest.raises(ValueError, match=r"fit: serial\(embedding\(7, 4\), dense\(7\)\) takes "
                                         r"integer token ids in \[0, 7\); got x of dtype float"):
        jnet.evaluation.validate_data(net, CE, params, np.zeros((2, 5)), y, "fit")
    bad = np.array([[0, 1, 2, 3, 9], [0, -1, 2, 3, 4]])
    with pytest.raises(ValueError, match=r"fit: token ids x \(for serial.*\) must lie in "
                                         r"\[0, 7\); got 2 outside it, in \[-1, 9\]"):  # fmt: skip
        jnet.evaluation.validate_data(net, CE, params, bad, y, "fit")
    x, _ = jnet.evaluation.validate_data(net, CE, params, tokens((2, 5), 7), y, "fit")
    assert jnp.issubdtype(x.dtype, jnp.integer)


@pytest.mark.slow
def test_evaluate_takes_token_ids():
    net = jnet.gpt(7, block_size=6, layers=1, heads=1, dim=4)
    _, params = net.init(KEY, (2, 5))
    x, y = tokens((3, 5), 7), tokens((3, 5), 7, seed=1)
    with pytest.raises(ValueError, match=r"evaluate: gpt\(7, .*\) takes integer token ids"):
        jnet.evaluate(net, CE, params, np.zeros((3, 5)), y)
    metrics = jnet.evaluate(net, CE, params, x, y, batch_size=2)  # a full batch and a rest
    logits = jnet.apply(net)(params, x)
    np.testing.assert_allclose(metrics["loss"], naive_ce(logits, y), rtol=1e-12)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(np.argmax(logits, -1) == y))


def _planted_layer_norm(monkeypatch, which):
    """gpt's `which`-th layer norm (in build order) with dx off by 1.5."""
    made = []

    def factory(**kwargs):
        layer = jnet.layer_norm(**kwargs)
        made.append(layer)
        if len(made) - 1 != which:
            return layer

        def backward(params, cache, dy):
            grads, dx = layer.backward(params, cache, dy)
            return grads, 1.5 * dx

        return layer._replace(backward=backward)

    monkeypatch.setattr(transformer, "layer_norm", factory)


@pytest.mark.slow
def test_a_wrong_layer_norm_inside_block_1_is_named_at_its_address(monkeypatch):
    _planted_layer_norm(monkeypatch, 2)  # block 0: ln_1, ln_2; block 1: ln_1
    net = jnet.gpt(7, block_size=6, layers=2, heads=2, dim=4)
    _, params = net.init(KEY, (2, 5))
    ids, labels = tokens((2, 5), 7), tokens((2, 5), 7, seed=1)
    report = check_gradients(net, CE, params, ids, labels, raise_on_failure=False,
                             per_example=False)  # fmt: skip
    assert report.failing_layers == ["4/0/0/0:layer_norm()"]
    checked = {r.case for r in report.layers}
    assert {"0:embedding(7, 4)", "3/0/0/1:self_attention(2)", "4/1/0/1:dense(4D)",
            "4/1/0/2:gelu()", "5:layer_norm()", "6:dense(7)", "loss"} <= checked  # fmt: skip
    # The whole-network table blames every leaf upstream of it, the token matrix among them.
    blamed = {r.input for r in report.rows if not r.passed}
    assert {"0.w", "1.w", "3.0.0.1.w_qkv"} <= blamed and "4.0.0.0.scale" not in blamed
