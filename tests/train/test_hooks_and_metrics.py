"""fit's metrics= and callbacks=: custom metrics equal numpy's, early stopping, the best model."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_support import assert_trees_equal, blobs, float32

import jnet

CE = jnet.softmax_cross_entropy
W, B = float32(jnet.initializers.glorot_normal()), float32(jnet.initializers.zeros())


def top2(outputs, targets):
    """Per example: is the label among the two largest outputs?"""
    second = jnp.sort(outputs, axis=-1)[:, -2]
    return jnp.take_along_axis(outputs, targets[:, None], axis=-1)[:, 0] >= second


def recall_of_class_0(outputs, targets):
    """Per example: 1 for a class-0 example predicted 0; NaN-free mean over all examples."""
    return ((targets == 0) & (jnp.argmax(outputs, -1) == 0)).astype(jnp.float32)


def numpy_top2(outputs, labels):
    ranks = np.argsort(-outputs, axis=-1)[:, :2]
    return float(np.mean([label in r for label, r in zip(labels, ranks, strict=True)]))


@pytest.mark.slow
def test_a_custom_metric_equals_numpy_on_the_same_outputs(tmp_path):
    x, y = blobs(120, 6, shift=0.3)
    xv, yv = blobs(50, 6, seed=1)
    net = jnet.serial(jnet.dense(8, W, B), jnet.relu(), jnet.dense(4, W, B))
    metrics = {"top2": top2, "recall0": recall_of_class_0}
    result = jnet.fit(net, CE, optax.adam(1e-2), x, y, epochs=3, batch_size=20,
                      key=jax.random.key(0), validation=(xv, yv), metrics=metrics,
                      progress=False, log_dir=tmp_path)  # fmt: skip
    outputs = jnet.predict(net, result.params, xv)
    # The last epoch's validation figures are those of the returned parameters.
    assert result.history["val_top2"][-1] == pytest.approx(numpy_top2(outputs, yv), abs=1e-6)
    expected_recall = np.mean((yv == 0) & (outputs.argmax(-1) == 0))
    assert result.history["val_recall0"][-1] == pytest.approx(expected_recall, abs=1e-6)
    # evaluate takes the same metrics.
    figures = jnet.evaluate(net, CE, result.params, xv, yv, metrics=metrics, batch_size=16)
    assert figures["top2"] == pytest.approx(numpy_top2(outputs, yv), abs=1e-6)
    assert set(result.history) >= {"top2", "recall0", "val_top2", "val_recall0"}
    assert all(0 <= v <= 1 for v in result.history["top2"])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_top2"] for r in rows] == result.history["val_top2"]


def test_metric_mistakes_are_named():
    x, y = blobs(20, 3)
    net = jnet.serial(jnet.dense(3))
    with pytest.raises(TypeError, match="metrics must be a dict"):
        jnet.evaluate(net, CE, net.init(jax.random.key(0), (1, 3))[1], x, y, metrics=[top2])
    with pytest.raises(ValueError, match="metric names must not be"):
        jnet.fit(net, CE, 0.1, x, y, epochs=1, key=jax.random.key(0), metrics={"loss": top2})
    with pytest.raises(ValueError, match=r"metric 'mean' must return one value per example"):
        jnet.evaluate(net, CE, net.init(jax.random.key(0), (1, 3))[1], x, y,
                      metrics={"mean": lambda o, t: jnp.mean(o)})  # fmt: skip


def overfitting_run(callbacks, epochs=40):
    """Random labels: the training loss falls while the validation loss soon climbs."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 10)).astype(np.float32), rng.integers(0, 3, 40)
    xv, yv = rng.normal(size=(40, 10)).astype(np.float32), rng.integers(0, 3, 40)
    net = jnet.serial(jnet.dense(64, W, B), jnet.relu(), jnet.dense(3, W, B))
    result = jnet.fit(net, CE, optax.adam(3e-2), x, y, epochs=epochs, batch_size=10,
                      key=jax.random.key(0), validation=(xv, yv), callbacks=callbacks,
                      progress=False)  # fmt: skip
    return net, (xv, yv), result


@pytest.mark.slow
def test_early_stopping_stops_and_restores_the_best_epoch(tmp_path):
    stopper = jnet.train.early_stopping(monitor="val_loss", patience=3, mode="min")
    best = jnet.train.best_checkpoint(tmp_path / "best.jnet", monitor="val_loss")
    seen = []
    net, (xv, yv), result = overfitting_run([stopper, best, seen.append])
    val = result.history["val_loss"]
    best_epoch = int(np.argmin(val)) + 1
    assert len(val) < 40 and stopper.stopped_epoch == len(val) == best_epoch + 3
    assert stopper.watch.best_epoch == best_epoch
    # The returned parameters are the best epoch's, not the last one's.
    restored = jnet.evaluate(net, CE, result.params, xv, yv)["loss"]
    assert restored == pytest.approx(val[best_epoch - 1], rel=1e-5) and restored < val[-1]
    # The best model's file holds the same parameters.
    params, _, meta = jnet.load(tmp_path / "best.jnet")
    assert meta == {"epoch": best_epoch, "monitor": "val_loss", "value": val[best_epoch - 1]}
    assert_trees_equal(params, result.params)
    # Every callback saw every call: one event per epoch here, the last with the stop.
    assert [e.epoch for e in seen] == list(range(1, len(val) + 1)) and seen[-1].epoch_end


@pytest.mark.slow
def test_a_callback_stops_the_run_and_sees_host_calls_mid_epoch():
    x, y = blobs(60, 4)
    batches = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 60, 10)]
    seen = []

    def stop_after_two_epochs(event):
        seen.append((event.epoch, event.epoch_end, int(event.state.step)))
        return event.epoch == 2

    result = jnet.fit(jnet.serial(jnet.dense(3)), CE, 0.1, data=batches, steps_per_epoch=6,
                      steps_per_call=3, epochs=10, key=jax.random.key(0), progress=False,
                      callbacks=[stop_after_two_epochs])  # fmt: skip
    assert result.history["epoch"] == [1, 2]
    assert seen == [(0, False, 3), (1, True, 6), (1, False, 9), (2, True, 12)]


def test_early_stopping_names_a_monitor_the_history_lacks():
    x, y = blobs(20, 3)
    with pytest.raises(ValueError, match=r"monitor 'val_loss' is not in the history.*validation"):
        jnet.fit(jnet.serial(jnet.dense(3)), CE, 0.1, x, y, epochs=2, key=jax.random.key(0),
                 progress=False, callbacks=[jnet.train.early_stopping()])  # fmt: skip
