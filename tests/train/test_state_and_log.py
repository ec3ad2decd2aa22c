"""Model state through training, the weight-decay rule, augmentation and metrics.jsonl."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_support import assert_trees_equal
from _train_support import blobs as three_blobs

import jnet
from jnet.train.step import default_decay_mask, l2_penalty

CE = jnet.softmax_cross_entropy


def running_mean(momentum=0.5) -> jnet.Layer:
    """A stateful identity: training updates a running mean of its input's features,
    inference subtracts it (a small stand-in for batch norm's running statistics)."""

    def init(key, shape):
        return shape, (), {"mean": jnp.zeros(shape[-1])}

    def forward(params, x, *, key=None, state):
        if key is None:
            return x - state["mean"], None, state
        mean = momentum * state["mean"] + (1 - momentum) * x.mean(0)
        return x, None, {"mean": mean}

    def backward(params, cache, dy):
        return (), dy

    return jnet.Layer(init, forward, backward, "running_mean()", stateful=True)


@pytest.fixture(scope="module")
def data():
    return three_blobs(96, 6, shift=3.0, dtype=np.float64)


@pytest.mark.slow  # the fast path's budget (CI runs it)
def test_a_stateful_network_trains_its_state_and_evaluates_with_it(data, tmp_path):
    x, y = data
    net = jnet.serial(running_mean(), jnet.dense(3))
    out_shape, params, state = net.init(jax.random.key(0), (1, 6))
    assert out_shape == (1, 3) and state[0]["mean"].shape == (6,) and state[1] == ()
    params, state, history = jnet.fit(net, CE, 0.1, x, y, epochs=3, batch_size=16,
                                        key=jax.random.key(1), progress=False)  # fmt: skip
    assert np.allclose(state[0]["mean"], x.mean(0), atol=0.6)  # the forward moved it
    with pytest.raises(ValueError, match="stateful .* pass state="):
        jnet.evaluate(net, CE, params, x, y)
    metrics = jnet.evaluate(net, CE, params, x, y, state=state)
    outputs = jnet.predict(net, params, x, state=state)
    manual = (x - state[0]["mean"]) @ params[1]["w"] + params[1]["b"]
    assert np.allclose(outputs, manual) and 0 <= metrics["accuracy"] <= 1
    y_hat, new_state = jnet.apply(net)(params, x[:4], state=state)  # inference: unchanged
    assert_trees_equal(new_state, state)
    (loss, trained), grads = jnet.value_and_grad(net, CE)(params, x[:4], y[:4],
                                                          key=jax.random.key(0), state=state)
    assert not np.allclose(trained[0]["mean"], state[0]["mean"])


@pytest.mark.slow  # two fits and a checkpoint
def test_the_model_state_survives_a_resume_bit_for_bit(data, tmp_path):
    x, y = data
    net = jnet.serial(running_mean(), jnet.dense(3))
    kw = dict(batch_size=16, key=jax.random.key(1), progress=False)
    straight, _, _ = jnet.fit(net, CE, optax.adam(1e-2), x, y, epochs=4, **kw)
    jnet.fit(net, CE, optax.adam(1e-2), x, y, epochs=2, checkpoint_dir=tmp_path, **kw)
    resumed, _, _ = jnet.fit(net, CE, optax.adam(1e-2), x, y, epochs=4, checkpoint_dir=tmp_path,
                          **kw)  # fmt: skip
    assert_trees_equal(resumed, straight)


def test_weight_decay_takes_kernels_not_biases_or_scales():
    dense = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    norm = {"scale": jnp.ones(4), "bias": jnp.ones(4)}
    params = (dense, norm, {"w": jnp.ones((3, 3, 2, 4))})
    mask = default_decay_mask(params)
    assert mask == ({"w": True, "b": False}, {"scale": False, "bias": False}, {"w": True})
    assert float(l2_penalty(params)) == 0.5 * (6 + 72)
    only_biases = lambda p: jax.tree.map(lambda leaf: leaf.ndim == 1, p)  # noqa: E731
    assert float(l2_penalty(params, only_biases)) == 0.5 * (3 + 4 + 4)
    with pytest.raises(ValueError, match="l2_mask must be a pytree of bools"):
        l2_penalty(params, {"w": True})


@pytest.mark.slow
def test_fit_decays_by_the_mask(data):
    # One full-batch SGD step from the same params: decay adds lr * l2 * p to exactly the
    # leaves the mask chooses, and nothing else moves differently.
    x, y = data
    net = jnet.serial(jnet.dense(3, b_init=jnet.initializers.normal(1.0)))
    _, p0 = net.init(jax.random.key(0), (1, 6))
    kw = dict(epochs=1, key=jax.random.key(0), progress=False, params=p0)
    lr, l2 = 0.1, 0.5
    plain, _, _ = jnet.fit(net, CE, lr, x, y, **kw)
    decayed, _, _ = jnet.fit(net, CE, lr, x, y, l2=l2, **kw)
    everything = lambda p: jax.tree.map(lambda _: True, p)  # noqa: E731
    all_decayed, _, _ = jnet.fit(net, CE, lr, x, y, l2=l2, l2_mask=everything, **kw)
    assert np.allclose(decayed[0]["w"], plain[0]["w"] - lr * l2 * p0[0]["w"])
    assert np.array_equal(decayed[0]["b"], plain[0]["b"])  # a bias is not decayed
    assert np.allclose(all_decayed[0]["b"], plain[0]["b"] - lr * l2 * p0[0]["b"])


@pytest.mark.slow
def test_augmentation_runs_on_every_batch_with_its_own_key(data):
    x, y = data
    net = jnet.serial(jnet.dense(3))
    seen = []

    def noisy(key, xb):
        seen.append(xb.shape)  # traced once: the augmentation lives in the compiled epoch
        return xb + jax.random.normal(key, xb.shape, xb.dtype)

    kw = dict(epochs=2, batch_size=16, key=jax.random.key(0), progress=False)
    plain, _, _ = jnet.fit(net, CE, 0.1, x, y, **kw)
    a, _, _ = jnet.fit(net, CE, 0.1, x, y, augment=noisy, **kw)
    b, _, _ = jnet.fit(net, CE, 0.1, x, y, augment=noisy, **kw)
    assert seen == [(16, 6), (16, 6)]  # one trace per fit
    assert_trees_equal(a, b)  # same key, same augmentation
    assert not np.allclose(a[0]["w"], plain[0]["w"])


@pytest.mark.slow
def test_fit_appends_one_json_line_an_epoch(data, tmp_path):
    x, y = data
    net = jnet.serial(jnet.dense(3))
    kw = dict(batch_size=16, key=jax.random.key(0), progress=False, log_dir=tmp_path / "log",
              validation=(x[:10], y[:10]), checkpoint_dir=tmp_path / "ckpt")  # fmt: skip
    jnet.fit(net, CE, 0.1, x, y, epochs=2, **kw)
    jnet.fit(net, CE, 0.1, x, y, epochs=3, **kw)  # resumed: the log goes on
    lines = (tmp_path / "log" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
