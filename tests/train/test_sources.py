"""fit's data sources: host iterables of batches, device-sampled batches, and resume on both."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_support import assert_trees_equal, blobs, float32, without_seconds

import jnet
import jnet.data

CE = jnet.softmax_cross_entropy
W, B = float32(jnet.initializers.glorot_normal()), float32(jnet.initializers.zeros())
NET = jnet.serial(jnet.dense(8, W, B), jnet.relu(), jnet.dense(3, W, B))


def batches_of(x, y, size, seed=0):
    """A seeded generator of shuffled minibatches, pass after pass, the last partial one
    included (fit drops it)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(x))
        for i in range(0, len(x), size):
            yield x[order[i : i + size]], y[order[i : i + size]]


@pytest.mark.slow
def test_host_batches_are_applied_in_order_and_the_padding_is_not():
    # 7 batches an epoch in calls of 3: calls of 3, 3 and 1 (padded to 3, not applied).
    x, y = blobs(70, 5)
    batches = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 70, 10)]
    key = jax.random.key(0)
    result = jnet.fit(NET, CE, optax.sgd(0.1), data=batches, steps_per_epoch=7, steps_per_call=3,
                      epochs=2, key=key, progress=False)  # fmt: skip
    init_key, _ = jax.random.split(key)
    state = jnet.init_state(NET, optax.sgd(0.1), init_key, (1, 5))
    step = jax.jit(jnet.make_step(NET, CE, optax.sgd(0.1)))
    losses = []
    for _ in range(2):  # a list is iterated again for the second epoch
        for batch in batches:
            state, m = step(state, batch, jax.random.key(1))  # no dropout: the key is unused
            losses.append(float(m["loss"]))
    np.testing.assert_allclose(result.params[0]["w"], state.params[0]["w"], rtol=1e-6)
    np.testing.assert_allclose(result.history["loss"], [np.mean(losses[:7]), np.mean(losses[7:])],
                               rtol=1e-5)  # fmt: skip


@pytest.mark.slow
def test_a_partial_last_batch_is_dropped_and_other_shapes_are_refused():
    x, y = blobs(64, 5)
    run = lambda data, **kw: jnet.fit(NET, CE, 0.1, data=data, epochs=1, key=jax.random.key(0),  # noqa: E731
                                      progress=False, **kw)  # fmt: skip
    # 25 examples in batches of 10: 10, 10, 5 (dropped), then the next pass.
    partial = [(x[:10], y[:10]), (x[10:20], y[10:20]), (x[20:25], y[20:25])]
    assert run(partial, steps_per_epoch=3).history["epoch"] == [1]
    with pytest.raises(ValueError, match=r"batch 1 has x \(10, 4\)"):
        run([(x[:10], y[:10]), (x[:10, :4], y[:10])], steps_per_epoch=2)
    with pytest.raises(ValueError, match="ran out after 2 batches"):
        run(iter([(x[:10], y[:10]), (x[10:20], y[10:20])]), steps_per_epoch=3)
    with pytest.raises(ValueError, match="needs steps_per_epoch"):
        run([(x[:10], y[:10])])
    with pytest.raises(ValueError, match="labels|outside"):
        run([(x[:10], y[:10] + 5)], steps_per_epoch=1)
    with pytest.raises(ValueError, match="either x and y, or data="):
        jnet.fit(NET, CE, 0.1, x, y, data=partial, epochs=1, key=jax.random.key(0))


@pytest.mark.slow
def test_a_resumed_host_run_skips_the_consumed_batches_and_ends_bit_exact(tmp_path, capfd):
    x, y = blobs(90, 5)  # passes of 5 batches of 16 and a partial one of 10 (dropped)
    kw = dict(steps_per_epoch=6, steps_per_call=4, key=jax.random.key(3), progress=False,
              validation=(x[:20], y[:20]))  # fmt: skip
    straight = jnet.fit(NET, CE, optax.adam(1e-2), data=batches_of(x, y, 16), epochs=4, **kw)
    jnet.fit(NET, CE, optax.adam(1e-2), data=batches_of(x, y, 16), epochs=2,
             checkpoint_dir=tmp_path, **kw)  # fmt: skip
    resumed = jnet.fit(NET, CE, optax.adam(1e-2), data=batches_of(x, y, 16), epochs=4,
                       checkpoint_dir=tmp_path, **kw)  # fmt: skip
    assert "skipping the 14 batches it had consumed" in capfd.readouterr().err  # 12 + 2 partial
    assert_trees_equal(resumed.params, straight.params)
    assert without_seconds(resumed.history) == without_seconds(straight.history)


def windows(ids, batch, block):
    """A tiny device sampler: random windows of a token array, the next token as target."""

    def sample(key):
        starts = jax.random.randint(key, (batch,), 0, ids.shape[0] - block - 1)
        x = jax.vmap(lambda s: jax.lax.dynamic_slice(ids, (s,), (block,)))(starts)
        y = ids[starts + block]
        return jax.nn.one_hot(x, 4, dtype=jnp.float32).reshape(batch, -1), y

    return sample


@pytest.mark.slow
def test_sampled_batches_are_drawn_on_the_device_and_learned():
    ids = jnp.asarray(np.tile([0, 1, 2, 3], 50))  # a cycle: the next token is learnable
    sample = windows(ids, 16, 3)
    traced = []
    counting = lambda key: traced.append(1) or sample(key)  # noqa: E731
    net = jnet.serial(jnet.dense(16, W, B), jnet.relu(), jnet.dense(4, W, B))
    source = jnet.train.sampled(counting, steps_per_epoch=20)
    result = jnet.fit(net, CE, optax.adam(3e-2), data=source, epochs=4, key=jax.random.key(0),
                      progress=False, epochs_per_call=2)  # fmt: skip
    assert result.history["epoch"] == [1, 2, 3, 4]
    assert result.history["accuracy"][-1] == 1.0 > result.history["accuracy"][0]
    assert len(traced) <= 3  # traced (checked once, compiled once), never called per step
    plain = jnet.train.sampled(sample, steps_per_epoch=20)
    again = jnet.fit(net, CE, optax.adam(3e-2), data=plain, epochs=4, key=jax.random.key(0),
                     progress=False, epochs_per_call=2)  # fmt: skip
    assert_trees_equal(again.params, result.params)
    with pytest.raises(ValueError, match="steps_per_epoch must be an int >= 1"):
        jnet.train.sampled(sample, steps_per_epoch=0)


@pytest.mark.slow
def test_host_batches_on_real_mnist_reach_the_array_paths_accuracy(data_dir):
    # Tutorial 004's MLP, batch 64, two epochs: through a numpy generator and on the device.
    (x, y), (xt, yt) = jnet.data.mnist_flat(data_dir)
    y, yt = y.astype(np.int32), yt.astype(np.int32)
    net = jnet.serial(jnet.dense(100), jnet.relu(), jnet.dense(200), jnet.relu(), jnet.dense(10))
    opt = jnet.per_layer(optax.sgd(0.05), {-1: optax.sgd(0.1)})
    kw = dict(epochs=2, key=jax.random.key(0), progress=False)
    arrays = jnet.fit(net, CE, opt, x, y, batch_size=64, **kw)
    host = jnet.fit(net, CE, opt, data=batches_of(x, y, 64), steps_per_epoch=len(x) // 64, **kw)
    acc = [jnet.evaluate(net, CE, r.params, xt, yt)["accuracy"] for r in (arrays, host)]
    assert min(acc) > 0.93 and abs(acc[0] - acc[1]) < 0.01, acc  # 2 epochs: ~94.5% each


@pytest.mark.slow
def test_divergence_on_host_batches_names_the_step_and_keeps_the_last_finite_state():
    x, y = blobs(60, 5)
    batches = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 60, 10)]
    # Finite data: batch 4's loss (~1e30) is finite, its update is not; batch 5's loss is NaN.
    batches[4] = (batches[4][0] * 1e30, batches[4][1])
    with pytest.raises(jnet.DivergenceError, match=r"epoch 1, step 6 of 6 \(global step 5\)") as e:
        jnet.fit(NET, CE, 0.1, data=batches, steps_per_epoch=6, steps_per_call=3, epochs=2,
                 key=jax.random.key(0), progress=False)  # fmt: skip
    assert int(e.value.state.step) == 4 and e.value.history["epoch"] == []
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(e.value.params))


@pytest.mark.slow
def test_fit_trains_a_gpt_on_token_windows_drawn_on_the_device():
    # The transformer's token stream as fit's third source: jnet.data.random_windows inside
    # the compiled loop, validation on every non-overlapping window of a held-out stream.
    ids = jnp.asarray(np.tile([0, 1, 2, 3, 4], 60), jnp.int32)  # the next token is learnable
    train, val = ids[:240], ids[240:]
    net = jnet.gpt(5, block_size=8, layers=1, heads=2, dim=16, bias=False)
    source = jnet.train.sampled(lambda key: jnet.data.random_windows(key, train, 4, 8),
                                steps_per_epoch=25)  # fmt: skip
    result = jnet.fit(net, CE, optax.adam(1e-2), data=source, epochs=2, key=jax.random.key(0),
                      validation=jnet.data.sequential_windows(val, 8), progress=False)  # fmt: skip
    assert result.model_state == ()
    assert result.history["val_loss"][-1] < 0.1 * np.log(5)  # from ln 5 at the start
    assert result.history["val_accuracy"][-1] == 1.0
