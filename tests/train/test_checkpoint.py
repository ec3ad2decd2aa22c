"""fit's checkpoints: a resumed run equals an uninterrupted one, bit for bit, even past damage."""

import shutil
import warnings

import jax
import numpy as np
import optax
import pytest
from _train_support import assert_trees_equal, float32, without_seconds

import jnet
from jnet.checkpoint import Checkpointer, CheckpointError, LayoutError

CE = jnet.softmax_cross_entropy

# Reading a garbled checkpoint, tensorstore may call back into orbax's event loop after orbax
# closed it; Python reports that "Event loop is closed" as unraisable. Harmless: the restore
# has already failed and been reported.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


W, B = float32(jnet.initializers.glorot_normal()), float32(jnet.initializers.zeros())
# Dropout draws a fresh mask every step and adam carries moments: both must survive a resume.
NET = jnet.serial(jnet.dense(16, W, B), jnet.relu(), jnet.dropout(0.2), jnet.dense(3, W, B))


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 250)
    x = (rng.normal(0, 1.5, (3, 10))[y] + rng.normal(0, 1, (250, 10))).astype(np.float32)
    return x[:200], y[:200], (x[200:], y[200:])


def run(blobs, epochs, **kwargs):
    """Minibatch adam with dropout and validation; always the same key."""
    x, y, validation = blobs
    options = dict(batch_size=32, validation=validation, key=jax.random.key(4), progress=False)
    return jnet.fit(NET, CE, optax.adam(1e-2), x, y, epochs=epochs, **options | kwargs)


@pytest.fixture(scope="module")
def uninterrupted(blobs):
    return run(blobs, 6)


@pytest.fixture(scope="module")
def interrupted(blobs, tmp_path_factory):
    """A run stopped after 4 of 6 epochs, with checkpoints at epochs 2 and 4."""
    folder = tmp_path_factory.mktemp("interrupted")
    params, _, history = run(blobs, 4, checkpoint_dir=folder, checkpoint_every=2)
    return folder, history


@pytest.fixture
def checkpoints(interrupted, tmp_path):
    """A private copy of the interrupted run's checkpoint folder."""
    folder = tmp_path / "checkpoints"
    shutil.copytree(interrupted[0], folder)
    assert sorted(p.name for p in folder.iterdir()) == ["2", "4"]
    return folder


def resume(blobs, folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, _, history = run(blobs, 6, checkpoint_dir=folder, checkpoint_every=2)
    return params, history, [str(w.message) for w in caught if "corrupt" in str(w.message)]


@pytest.mark.slow
def test_resume_is_bit_exact(blobs, uninterrupted, interrupted, checkpoints):
    assert without_seconds(interrupted[1]) == {
        k: v[:4] for k, v in uninterrupted.history.items() if k != "seconds"
    }
    params, history, complaints = resume(blobs, checkpoints)
    assert complaints == []
    assert_trees_equal(params, uninterrupted.params)
    assert without_seconds(history) == without_seconds(uninterrupted.history)
    assert set(history) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert Checkpointer(checkpoints, lock=False).epochs() == [2, 4, 6]


@pytest.mark.slow
def test_resume_full_batch_with_other_chunking(blobs, tmp_path):
    # Uninterrupted: two calls of 5 epochs. Interrupted: two calls of 2, then two of 3.
    full = dict(batch_size=None, validation=None)
    params, _, history = run(blobs, 10, epochs_per_call=5, **full)
    run(blobs, 4, epochs_per_call=2, checkpoint_dir=tmp_path, **full)
    resumed, _, resumed_history = run(blobs, 10, epochs_per_call=3, checkpoint_dir=tmp_path, **full)
    assert_trees_equal(resumed, params)
    assert without_seconds(resumed_history) == without_seconds(history)
    assert history["epoch"] == list(range(1, 11))


def truncate_every_file(folder):
    for path in folder.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def garble_array_chunks(folder):
    # The arrays' data files (ocdbt "d/" chunks); the JSON metadata stays readable.
    chunks = [p for p in (folder / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert chunks
    for path in chunks:
        raw = bytearray(path.read_bytes())
        raw[::3] = bytes(b ^ 0x5A for b in raw[::3])
        path.write_bytes(bytes(raw))


def remove_state(folder):
    shutil.rmtree(folder / "state")


@pytest.mark.slow
@pytest.mark.parametrize("damage", [truncate_every_file, garble_array_chunks, remove_state])
def test_corrupt_newest_checkpoint_falls_back(blobs, uninterrupted, checkpoints, damage):
    damage(checkpoints / "4")
    params, history, complaints = resume(blobs, checkpoints)
    assert len(complaints) == 1 and str(checkpoints / "4") in complaints[0], complaints
    # Resumed from epoch 2, the result is still that of the uninterrupted run.
    assert_trees_equal(params, uninterrupted.params)
    assert without_seconds(history) == without_seconds(uninterrupted.history)
    # The damaged checkpoint was replaced by a good one on the way.
    shutil.rmtree(checkpoints / "6")
    like = jnet.init_state(NET, optax.adam(1e-2), jax.random.key(0), (1, 10))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epoch, state, meta = Checkpointer(checkpoints, lock=False).restore_latest(like)
    assert epoch == 4 == meta["epoch"] and not [w for w in caught if "corrupt" in str(w.message)]


@pytest.mark.slow
def test_all_checkpoints_corrupt_is_an_error(blobs, checkpoints):
    truncate_every_file(checkpoints / "4")
    remove_state(checkpoints / "2")
    with pytest.raises(CheckpointError, match="no checkpoint could be restored") as info:
        with pytest.warns(UserWarning, match="corrupt"):
            run(blobs, 6, checkpoint_dir=checkpoints, checkpoint_every=2)
    assert str(checkpoints / "4") in str(info.value) and str(checkpoints / "2") in str(info.value)


@pytest.mark.slow
def test_leftover_temporary_folder_is_ignored(blobs, uninterrupted, checkpoints):
    # A run killed while saving epoch 6 leaves orbax's half-written temporary folder.
    tmp = checkpoints / "6.orbax-checkpoint-tmp-1700000000"
    shutil.copytree(checkpoints / "4", tmp)
    (tmp / "_CHECKPOINT_METADATA").unlink()
    truncate_every_file(tmp / "state")
    params, history, complaints = resume(blobs, checkpoints)
    assert complaints == []
    assert_trees_equal(params, uninterrupted.params)
    assert without_seconds(history) == without_seconds(uninterrupted.history)


@pytest.mark.slow
def test_a_checkpoint_dir_that_cannot_be_written_fails_before_training(
    blobs, tmp_path, monkeypatch
):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        run(blobs, 2, checkpoint_dir=a_file)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("jnet.checkpoint.store.tempfile.TemporaryFile", refuse)
    with pytest.raises(CheckpointError, match="cannot write checkpoints to .*: Permission denied"):
        run(blobs, 2, checkpoint_dir=tmp_path / "locked")


@pytest.mark.slow
def test_resuming_with_another_network_names_the_leaf(blobs, checkpoints):
    wider = jnet.serial(jnet.dense(32, W, B), jnet.relu(), jnet.dropout(0.2), jnet.dense(3, W, B))
    x, y, _ = blobs
    with pytest.raises(LayoutError, match=r"another network or optimizer: its \.params\[0\]"):
        jnet.fit(wider, CE, optax.adam(1e-2), x, y, epochs=6, key=jax.random.key(0),
                 checkpoint_dir=checkpoints, progress=False)  # fmt: skip
    # Another optimizer: adam's state is not sgd's.
    with pytest.raises(LayoutError, match="holds .* arrays, this run's state"):
        jnet.fit(NET, CE, optax.sgd(0.1), x, y, epochs=6, key=jax.random.key(0),
                 checkpoint_dir=checkpoints, progress=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, said",
    [
        (dict(batch_size=20), "batch_size 32 -> 20"),
        (dict(validation=None), "validation True -> False"),
    ],
)
def test_resuming_with_other_settings_is_refused(blobs, checkpoints, change, said):
    with pytest.raises(ValueError, match=f"is from another run: {said}"):
        run(blobs, 6, checkpoint_dir=checkpoints, **change)
