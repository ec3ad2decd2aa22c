"""jnet.lm's token-stream training: compiled chunks of make_step on random windows, the
whole-split evaluation, fit_stream's loop and nanoGPT's optimizer recipe."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _lm_support import bigram

import jnet
import jnet.data
import jnet.lm

V, T, B = 7, 8, 4


def _state(net, opt, seed=0):
    return jnet.init_state(net, opt, jax.random.key(seed), (1, T))


@pytest.mark.slow  # 3 compilations (~5-10 s on the loaded 2-core CPU)
def test_stream_steps_equal_a_loop_of_make_step():
    net, opt = bigram(V), optax.adam(0.05)
    ids = jax.random.randint(jax.random.key(5), (200,), 0, V)
    run = jnet.lm.make_stream_steps(
        net, jnet.softmax_cross_entropy, opt, batch=B, block_size=T, steps=5, donate=False
    )
    got, losses = run(_state(net, opt), ids)
    step = jnet.make_step(net, jnet.softmax_cross_entropy, opt)

    @jax.jit
    def one(state):
        key, window_key, step_key = jax.random.split(state.key, 3)
        xy = jnet.data.random_windows(window_key, ids, B, T)
        return step(state._replace(key=key), xy, step_key)

    state, want = _state(net, opt), []
    for _ in range(5):  # the same keys, one host round trip per step
        state, m = one(state)
        want.append(float(m["loss"]))
    assert losses.shape == (5,) and losses.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(losses), want, rtol=1e-6)
    np.testing.assert_allclose(got.params["w"], state.params["w"], rtol=1e-12, atol=1e-12)
    assert int(got.step) == 5


def test_stream_eval_is_the_mean_over_every_window():
    net = bigram(V)
    _, params = net.init(jax.random.key(1), (1, T))
    ids = jax.random.randint(jax.random.key(2), (61,), 0, V)  # 7 windows of 8 (+ 4 left over)
    evaluate = jnet.lm.make_stream_eval(net, jnet.softmax_cross_entropy, block_size=T, batch_size=3)
    w, tokens = np.asarray(params["w"]), np.asarray(ids)
    logp = w - np.log(np.exp(w).sum(1, keepdims=True))
    want = -np.mean([logp[tokens[i], tokens[i + 1]] for i in range(7 * T)])
    np.testing.assert_allclose(float(evaluate(params, ids)), want, rtol=1e-12)


@pytest.mark.slow
def test_fit_stream_learns_a_periodic_stream_and_keeps_a_history():
    net = bigram(V)
    ids = np.tile(np.arange(V, dtype=np.int32), 40)  # 0 1 2 ... 6 0 1 ...: next = (t + 1) % 7
    opt = optax.adam(0.3)
    seen = []
    _, h = jnet.lm.fit_stream(
        net, jnet.softmax_cross_entropy, opt, _state(net, opt), ids[:200], val_ids=ids[200:],
        batch=B, block_size=T, iters=30, eval_every=10, steps_per_call=4,
        progress=lambda i, values: seen.append((i, sorted(values))),
    )  # fmt: skip
    assert h.iteration == [10, 20, 30] and h.step_losses.shape == (30,)
    # Calls of 2 steps (the largest divisor of 30 and 10 up to 4); progress after each.
    assert [i for i, _ in seen] == list(range(2, 31, 2))
    assert seen[4] == (10, ["loss", "val_loss"]) and seen[0] == (2, ["loss"])
    np.testing.assert_allclose(h.loss[0], h.step_losses[:10].mean(), rtol=1e-6)
    assert h.val_loss[-1] < min(0.05, h.val_loss[0])
    assert h.step_losses[-1] < h.step_losses[0] / 10
    assert h.train_seconds == sorted(h.train_seconds) and h.compile_seconds > 0


@pytest.mark.slow  # a third fit_stream compilation
def test_fit_stream_stops_on_divergence_with_the_last_finite_state():
    net, opt = bigram(V), optax.scale(jnp.nan)  # the first update makes every weight NaN
    ids = jnp.arange(100) % V
    with pytest.raises(jnet.DivergenceError, match="loss is nan at iteration 1;") as e:
        jnet.lm.fit_stream(net, jnet.softmax_cross_entropy, opt, _state(net, opt), ids,
                           batch=B, block_size=T, iters=4, steps_per_call=2)  # fmt: skip
    assert np.all(np.isfinite(e.value.state.params["w"])) and int(e.value.state.step) == 0


def _nanogpt_lr(it, lr=1e-3, warmup=100, decay_iters=2000, min_lr=1e-4):
    """nanoGPT's train.py get_lr, verbatim."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def test_nanogpt_schedule_is_nanogpts_get_lr():
    schedule = jnet.lm.nanogpt_schedule(1e-3, 2000)
    for it in (0, 1, 50, 99, 100, 101, 777, 1999, 2000, 2500):
        assert float(schedule(it)) == pytest.approx(_nanogpt_lr(it), rel=1e-6), it
    # The schedule spans the iterations asked for: 500 decays over 500.
    assert float(jnet.lm.nanogpt_schedule(1e-3, 500)(500)) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="warmup must be an int in"):
        jnet.lm.nanogpt_schedule(1e-3, 50)


def test_nanogpt_adamw_decays_matrices_only():
    params = {"w": jnp.ones((3, 3)), "b": jnp.ones(3)}
    opt = jnet.lm.nanogpt_adamw(1e-3, 2000)
    state = opt.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    # No gradient: only the weight decay moves the weights.
    updates, _ = jax.jit(opt.update)(zero, state, params)
    np.testing.assert_allclose(updates["w"], -1e-3 / 101 * 0.1 * np.ones((3, 3)), rtol=1e-5)
    np.testing.assert_allclose(updates["b"], 0.0)
    assert opt.init(params)[1].hyperparams["b2"] == pytest.approx(0.99)


@pytest.mark.slow  # two more compilations
def test_nanogpt_adamw_clips_at_global_norm_one():
    params = {"w": jnp.ones((3, 3)), "b": jnp.ones(3)}
    opt = jnet.lm.nanogpt_adamw(1e-3, 2000)
    # Clipping: a gradient of global norm 50 acts as the same direction at norm 1.0.
    g = {"w": jnp.full((3, 3), 10.0), "b": jnp.array([20.0, 0.0, -20.0])}
    norm = math.sqrt(9 * 100 + 800)
    clipped = jax.tree.map(lambda x: x / norm, g)
    plain = optax.adamw(jnet.lm.nanogpt_schedule(1e-3, 2000), b1=0.9, b2=0.99,
                        weight_decay=0.1, mask=jnet.train.default_decay_mask)  # fmt: skip
    s1, s2 = opt.init(params), plain.init(params)
    update1, update2 = jax.jit(opt.update), jax.jit(plain.update)
    for _ in range(2):  # the second step's update depends on the first gradient's scale
        u1, s1 = update1(g, s1, params)
        u2, s2 = update2(clipped, s2, params)
    for k in params:
        np.testing.assert_allclose(u1[k], u2[k], rtol=1e-6)


def test_fit_stream_refuses_ids_the_network_cannot_take():
    net, opt = bigram(V), optax.adam(0.1)
    fit = lambda train, val=None: jnet.lm.fit_stream(
        net,
        jnet.softmax_cross_entropy,
        opt,
        _state(net, opt),
        train,
        val_ids=val,
        batch=B,
        block_size=T,
        iters=2,
    )
    ok = np.arange(50) % V
    with pytest.raises(ValueError, match=r"fit_stream: train_ids: labels must lie in \[0, 7\)"):
        fit(np.arange(50))
    with pytest.raises(ValueError, match=r"fit_stream: val_ids: labels .* got labels in \[-1, 5\]"):
        fit(ok, ok - 1)
    with pytest.raises(ValueError, match="fit_stream: train_ids: 5 tokens hold no window"):
        fit(ok[:5])
    with pytest.raises(ValueError, match="1-D integer token stream"):
        fit(ok.astype(np.float32))
