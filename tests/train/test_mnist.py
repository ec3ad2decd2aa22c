"""Training on real MNIST: tutorial 000's accuracy, a minibatch run, and the divergence guard."""

import re
import shutil
import warnings

import jax
import numpy as np
import optax
import pytest
from _train_support import all_finite, assert_trees_equal, float32

import jnet
import jnet.data as data
from jnet.checkpoint import Checkpointer

CE, MSE = jnet.softmax_cross_entropy, jnet.mean_squared_error

GLOROT, ZEROS = float32(jnet.initializers.glorot_normal()), float32(jnet.initializers.zeros())


def tutorial_net(hidden: int = 512):
    """784-hidden-10 relu with the tutorials' `randn * 0.01` weights and zero biases."""
    w, b = float32(jnet.initializers.normal(0.01)), ZEROS
    return jnet.serial(jnet.dense(hidden, w, b), jnet.relu(), jnet.dense(10, w, b))


@pytest.fixture(scope="module")
def mnist(data_dir):
    """The first 5000 training and 2000 test images, (N, 784) float32 in [0, 1]."""
    return data.mnist_flat(data_dir, train_size=5000, test_size=2000)


# --- learning ----------------------------------------------------------------------------


@pytest.mark.slow
def test_tutorial_000_full_batch_gd_reaches_97_percent(mnist):
    # Tutorial 000: 500 full-batch SGD steps at lr 0.1 on the first 1000 images.
    (x, y), (x_test, y_test) = mnist
    x, y = x[:1000], y[:1000]
    net = tutorial_net()
    params, _, history = jnet.fit(
        net, CE, 0.1, x, y, epochs=500, key=jax.random.key(0), progress=False
    )

    assert history["epoch"] == list(range(1, 501))
    assert history["loss"][0] == pytest.approx(np.log(10), abs=0.01)  # near-uniform softmax at init
    assert history["loss"][-1] < 0.2
    train = jnet.evaluate(net, CE, params, x, y)
    assert train["accuracy"] == pytest.approx(0.971, abs=0.01)
    # The lead measured 92.0% on the first 200 test images (87.0% on all 10k).
    assert jnet.evaluate(net, CE, params, x_test[:200], y_test[:200])["accuracy"] > 0.88


@pytest.mark.slow
def test_minibatch_adam_learns(mnist):
    (x, y), (x_test, y_test) = mnist
    net = jnet.serial(
        jnet.dense(100, GLOROT, ZEROS),
        jnet.relu(),
        jnet.dense(10, GLOROT, ZEROS),
    )
    params, _, history = jnet.fit(
        net,
        CE,
        optax.adam(2e-3),
        x[:4000],
        y[:4000],
        epochs=3,
        batch_size=64,
        key=jax.random.key(0),
        validation=(x_test, y_test),
        progress=False,
    )
    assert np.all(np.diff(history["loss"]) < 0), history["loss"]
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    test = jnet.evaluate(net, CE, params, x_test, y_test)
    assert test["accuracy"] > 0.85  # chance is 0.1; ~0.89 measured
    # Validation inside fit is the same computation as evaluate after it.
    assert history["val_accuracy"][-1] == pytest.approx(test["accuracy"], abs=1e-6)
    assert history["val_loss"][-1] == pytest.approx(test["loss"], rel=1e-5)


# --- divergence guard ---------------------------------------------------------------------
# Softmax CE stays finite even at lr 1e3, so these blow up MSE on one-hot targets instead:
# with lr 1e3 the loss grows ~1e4-fold per full-batch step and overflows after ~8 steps.


@pytest.fixture(scope="module")
def blowup(mnist):
    (x, y), _ = mnist
    return x[:1000], data.one_hot(y[:1000], 10)


def global_step(error: Exception) -> int:
    match = re.search(r"global step (\d+)", str(error))
    assert match, str(error)
    return int(match.group(1))


@pytest.mark.slow
def test_divergence_full_batch_keeps_last_finite_state(blowup):
    x, y = blowup
    net, key = tutorial_net(), jax.random.key(1)
    with pytest.raises(jnet.DivergenceError) as info:
        jnet.fit(net, MSE, 1e3, x, y, epochs=30, key=key, progress=False)
    e = info.value
    bad = global_step(e)
    assert 2 <= bad < 30
    # Full batch: one step per epoch, so the bad step is in epoch bad + 1.
    assert f"epoch {bad + 1}," in str(e) and "step 1 of 1" in str(e)
    assert "learning rate 1000" in str(e)
    assert isinstance(e, FloatingPointError)

    assert all_finite(e.params) and all_finite(e.state)
    assert int(e.state.step) == bad - 1 and e.params is e.state.params
    # The history covers the epochs before the bad one, all finite.
    assert e.history["epoch"] == list(range(1, bad + 1))
    assert np.all(np.isfinite(e.history["loss"]))
    # The state after bad - 1 updates, bit for bit: a run stopped there by hand.
    params, _, history = jnet.fit(net, MSE, 1e3, x, y, epochs=bad - 1, key=key, progress=False)
    assert_trees_equal(e.params, params)
    assert e.history["loss"][: bad - 1] == history["loss"]


@pytest.mark.slow
def test_divergence_minibatch_names_epoch_step_and_rate(blowup):
    x, y = blowup
    with pytest.raises(jnet.DivergenceError) as info:
        jnet.fit(
            tutorial_net(),
            MSE,
            1e3,
            x,
            y,
            epochs=3,
            batch_size=100,
            key=jax.random.key(1),
            progress=False,
        )
    e = info.value
    bad = global_step(e)
    match = re.search(r"epoch (\d+), step (\d+) of 10\b", str(e))
    assert match, str(e)
    assert (int(match.group(1)), int(match.group(2))) == (bad // 10 + 1, bad % 10 + 1)
    assert "learning rate 1000" in str(e)
    assert all_finite(e.state) and int(e.state.step) == bad - 1


@pytest.mark.slow
def test_divergence_with_checkpoints_never_saves_nan(blowup, tmp_path):
    x, y = blowup
    net, key = tutorial_net(), jax.random.key(1)
    with pytest.raises(jnet.DivergenceError) as info:
        jnet.fit(
            net,
            MSE,
            1e3,
            x,
            y,
            epochs=30,
            key=key,
            checkpoint_dir=tmp_path,
            checkpoint_every=2,
            progress=False,
        )
    e = info.value
    bad = global_step(e)
    # Calls of 2 epochs: the replay reaches back into the call before the bad one.
    reference, _, _ = jnet.fit(net, MSE, 1e3, x, y, epochs=bad - 1, key=key, progress=False)
    assert_trees_equal(e.params, reference)

    # Every checkpoint left behind restores cleanly, is finite and predates the bad step.
    like = jnet.init_state(net, optax.sgd(1e3), jax.random.key(0), (1, 784))
    epochs = Checkpointer(tmp_path, lock=False).epochs()
    assert epochs and all(epoch % 2 == 0 and epoch <= bad for epoch in epochs)
    for epoch in reversed(epochs):
        checkpointer = Checkpointer(tmp_path, lock=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a corrupt checkpoint would warn
            restored_epoch, state, meta = checkpointer.restore_latest(like)
        checkpointer.close()
        assert restored_epoch == epoch == meta["epoch"] == int(state.step)
        assert all_finite(state)
        assert meta["history"]["loss"] == e.history["loss"][:epoch]
        shutil.rmtree(tmp_path / str(epoch))  # expose the previous one


@pytest.mark.slow
def test_divergence_message_has_injected_learning_rate(blowup):
    x, y = blowup
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=1e3)
    with pytest.raises(jnet.DivergenceError, match=r"learning rate 1000\b"):
        jnet.fit(
            tutorial_net(), MSE, optimizer, x, y, epochs=30, key=jax.random.key(1), progress=False
        )
    # A plain optax.sgd keeps no rate in its state: the message says so rather than guess.
    with pytest.raises(jnet.DivergenceError, match="learning rate unknown"):
        jnet.fit(
            tutorial_net(),
            MSE,
            optax.sgd(1e3),
            x,
            y,
            epochs=30,
            key=jax.random.key(1),
            progress=False,
        )
