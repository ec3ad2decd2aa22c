"""Checkpoints that cannot lie, resumes that cannot drift, settings that cannot be nonsense.

Each test reproduces one case that once lost data or gave a silently wrong result.
"""

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _marks import fast_at
from _train_support import assert_trees_equal, float32, without_seconds
from _train_support import blobs as three_blobs

import jnet
from jnet.checkpoint import Checkpointer, FolderLock, LockedError, SaveError

CE = jnet.softmax_cross_entropy
W, B = float32(jnet.initializers.glorot_normal()), float32(jnet.initializers.zeros())
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def make_net(activation=jnet.relu, rate=0.2):
    return jnet.serial(jnet.dense(16, W, B), activation(), jnet.dropout(rate), jnet.dense(3, W, B))


@pytest.fixture(scope="module")
def blobs():
    return three_blobs(160, 10)


def run(blobs, epochs, net=None, optimizer=None, **kwargs):
    x, y = blobs
    options = dict(batch_size=32, key=jax.random.key(4), progress=False)
    return jnet.fit(net or make_net(), CE, optimizer or optax.adam(1e-2), x, y, epochs=epochs,
                    **options | kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(blobs):
    return run(blobs, 4)


@pytest.fixture(scope="module")
def stopped(blobs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stopped")
    run(blobs, 3, checkpoint_dir=folder, checkpoint_every=1)
    return folder


@pytest.fixture
def folder(stopped, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(stopped, copy)
    return copy


def resume(blobs, folder, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, _, history = run(blobs, 4, checkpoint_dir=folder, checkpoint_every=1, **kwargs)
    return params, history, [str(w.message) for w in caught if "corrupt" in str(w.message)]


# 1. Checksums: a flipped bit, another checkpoint's arrays, an edited history.
def array_files(checkpoint):
    # The merged data files orbax reads (state/d/); state/ocdbt.process_*/d/ are its journal.
    return [p for p in (checkpoint / "state" / "d").iterdir() if p.is_file()]


@pytest.mark.slow
@pytest.mark.parametrize("where", fast_at([0.25, 0.5, 0.9], {1}))
def test_a_flipped_bit_in_the_newest_arrays_falls_back(blobs, uninterrupted, folder, where):
    (data,) = array_files(folder / "3")
    raw = bytearray(data.read_bytes())
    raw[int(len(raw) * where)] ^= 0x10
    data.write_bytes(bytes(raw))
    params, history, complaints = resume(blobs, folder)
    assert len(complaints) == 1 and str(folder / "3") in complaints[0]
    assert "\n" not in complaints[0] and len(complaints[0]) < 400  # one line, no spec dump
    assert_trees_equal(params, uninterrupted.params)
    assert without_seconds(history) == without_seconds(uninterrupted.history)


@pytest.mark.slow
def test_arrays_that_read_cleanly_but_differ_are_caught(blobs, uninterrupted, folder):
    shutil.rmtree(folder / "3" / "state")
    shutil.copytree(folder / "2" / "state", folder / "3" / "state")  # valid arrays, wrong ones
    params, history, complaints = resume(blobs, folder)
    assert len(complaints) == 1 and "does not match its digest" in complaints[0]
    assert "array .params[0]['b']" in complaints[0] or "array ." in complaints[0]  # leaf named
    assert_trees_equal(params, uninterrupted.params)


@pytest.mark.slow
def test_an_edited_history_in_the_metadata_is_caught(blobs, uninterrupted, folder):
    meta_file = folder / "3" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["history"]["loss"][0] = 0.0
    meta_file.write_text(json.dumps(meta))
    params, history, complaints = resume(blobs, folder)
    assert len(complaints) == 1 and "metadata does not match its digest" in complaints[0]
    assert without_seconds(history) == without_seconds(uninterrupted.history)


# 2. A resume with other settings is refused, naming what changed.
@pytest.mark.slow
@pytest.mark.parametrize(
    "change, field",
    [
        (dict(optimizer=optax.adam(5e-3)), "optimizer"),
        (dict(optimizer=optax.adamw(1e-2)), "optimizer"),
        (dict(net=make_net(jnet.tanh)), "network"),
        (dict(net=make_net(rate=0.5)), "network"),
        (dict(l2=1e-3), "l2"),
    ],
)
def test_a_resume_with_changed_settings_is_refused(blobs, folder, change, field):
    expected = rf"from another run: {field} .*allow_changes=\{{'{field}'\}}"
    with pytest.raises(ValueError, match=expected):
        resume(blobs, folder, **change)


@pytest.mark.slow
def test_allow_changes_continues_and_the_resume_announces_itself(blobs, folder, capfd):
    _, history, _ = resume(blobs, folder, optimizer=optax.adam(5e-3), allow_changes={"optimizer"})
    assert history["epoch"] == [1, 2, 3, 4]
    assert f"fit: resuming from checkpoint {folder / '3'} (epoch 3 of 4)" in capfd.readouterr().err
    with pytest.raises(ValueError, match="allow_changes names unknown settings"):
        resume(blobs, folder, allow_changes={"learning_rate"})


# 3. One run per folder.
def _hold_lock(folder, ready, release):
    with FolderLock(folder):
        ready.set()
        release.wait(30)


@pytest.mark.slow
def test_a_second_run_on_a_locked_folder_is_refused(blobs, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(LockedError, match=rf"locked by process {holder.pid} on host "):
            run(blobs, 1, checkpoint_dir=tmp_path)
    finally:
        release.set()
        holder.join(30)
    run(blobs, 1, checkpoint_dir=tmp_path)  # released on exit: free again
    assert not (tmp_path / ".jnet-lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".jnet-lock").write_text(json.dumps({"host": os.uname().nodename,
                                                     "pid": dead.pid, "since": 0}))  # fmt: skip
    with pytest.warns(UserWarning, match="stale lock"):
        lock = FolderLock(tmp_path)
    lock.release()
    (tmp_path / ".jnet-lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": 0}))
    with pytest.raises(LockedError, match="on host elsewhere"):
        FolderLock(tmp_path)  # another host's process cannot be seen from here: refused


# 4. A non-finite optimizer state is divergence; a failed save keeps the result.
@pytest.mark.slow
def test_an_overflowing_adam_state_is_divergence_naming_the_leaf(blobs, tmp_path):
    # Inputs of 1e20: the loss stays finite (softmax CE grows linearly), but Adam's second
    # moment, the squared gradient, overflows float32; it used to freeze the weights.
    x, y = blobs
    net = jnet.serial(jnet.dense(3, W, B))
    expected = r"made the optimizer state leaf 0\.nu\.0\.w NaN or inf"
    with pytest.raises(jnet.DivergenceError, match=expected) as e:
        run((x * 1e20, y), 3, net=net, checkpoint_dir=tmp_path)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(e.value.state.opt_state))


@pytest.mark.slow
def test_a_failed_save_keeps_the_trained_state(blobs, tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Checkpointer, "save", refuse)
    with pytest.raises(SaveError, match="trained state is not lost") as e:
        run(blobs, 2, checkpoint_dir=tmp_path)
    assert int(e.value.state.step) == 2 * 5 and e.value.history["epoch"] == [1, 2]


# 5. Nonsense settings.
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(l2=-1.0), r"l2 .* must be a finite number >= 0"),
        (dict(l2=float("nan")), r"l2 .* must be a finite number >= 0"),
        (dict(optimizer=optax.sgd(-0.1)), r"learning rate is -0.1; it must be finite and >= 0"),
    ],
)
def test_nonsense_settings_are_refused(blobs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(blobs, 1, **kwargs)


def test_a_negative_number_as_learning_rate_is_refused(blobs):
    x, y = blobs
    with pytest.raises(ValueError, match=r"learning rate is -0.5"):
        jnet.fit(make_net(), CE, -0.5, x, y, epochs=1, key=jax.random.key(0), progress=False)


# 8. Smaller cases.
def test_train_step_on_a_donated_state_says_so():
    net = jnet.serial(jnet.dense(3))
    opt = optax.sgd(0.1)
    state = jnet.init_state(net, opt, jax.random.key(0), (1, 4))
    batch = (jnp.ones((2, 4)), jnp.zeros(2, int))
    step = jnet.train_step(net, CE, opt)
    step(state, batch)
    with pytest.raises(ValueError, match="donated to an earlier call"):
        step(state, batch)
    keep = jnet.train_step(net, CE, opt, donate=False)
    fresh = jnet.init_state(net, opt, jax.random.key(0), (1, 4))
    keep(fresh, batch)
    keep(fresh, batch)  # not donated: usable again


def test_batch_size_larger_than_the_data_names_fit(blobs):
    with pytest.raises(ValueError, match=r"^fit: batch_size 500 exceeds the 160 training"):
        run(blobs, 1, batch_size=500)


@pytest.mark.slow
def test_float64_validation_data_is_reported_as_float64(blobs):
    x, y = blobs
    wide = np.concatenate([x, x[:, :1]], axis=1).astype(np.float64)  # 11 features, float64
    with pytest.raises(ValueError, match=r"^fit\(validation\): x of shape \(160, 11\) and dtype "
                                         r"float64 does not fit"):  # fmt: skip
        run(blobs, 1, validation=(wide, y))
    run(blobs, 1, validation=(x.astype(np.float64), y))  # the right shape in float64 trains
