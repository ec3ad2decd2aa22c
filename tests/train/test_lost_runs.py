"""Runs that were lost or silently wrong (issue 22): a full disk, x64 divergence, a noisy resume."""

import logging
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from _train_support import blobs

import jnet
from jnet.checkpoint import SaveError

CE = jnet.softmax_cross_entropy
NO_SPACE = (
    'RESOURCE_EXHAUSTED: Error writing "0001/0.0" in OCDBT database at local file '
    '"{tmp}/state.orbax-checkpoint-tmp/ocdbt.process_0/": Failed to write 290 bytes to file 7: '
    "No space left on device [os_error_code='28']"
)


def test_a_full_disk_during_a_save_keeps_the_run_and_its_space(tmp_path, monkeypatch, capfd):
    # What orbax does on a full disk: its threads log tracebacks through absl, the partial
    # `<step>.orbax-checkpoint-tmp` folder stays, and a ValueError comes out of the wait.
    failed = []

    def full_disk(manager):
        if failed:  # orbax reports a failed save once (close() waits again)
            return
        failed.append(True)
        partial = tmp_path / "2.orbax-checkpoint-tmp"
        (partial / "state.orbax-checkpoint-tmp").mkdir(parents=True, exist_ok=True)
        (partial / "state.orbax-checkpoint-tmp" / "chunk").write_bytes(b"\0" * 1000)
        logging.getLogger("absl").error("_SignalingThread.run() raised an exception: RESOURCE")
        raise ValueError(NO_SPACE.format(tmp=partial))

    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", full_disk)
    x, y = blobs(64, 5)
    with pytest.raises(SaveError) as e:
        jnet.fit(jnet.serial(jnet.dense(3)), CE, optax.adam(1e-2), x, y, epochs=2,
                 batch_size=16, key=jax.random.key(0), progress=False, checkpoint_dir=tmp_path,
                 checkpoint_every=2)  # fmt: skip
    message = str(e.value)
    assert "\n" not in message and "No space left on device" in message
    assert "the trained state is not lost" in message and str(tmp_path) in message
    assert int(e.value.state.step) == 2 * 4 and e.value.history["epoch"] == [1, 2]
    assert jax.tree.structure(e.value.params) == jax.tree.structure(e.value.state.params)
    assert not list(tmp_path.glob("*orbax-checkpoint-tmp*"))  # the space is given back
    assert "RESOURCE" not in capfd.readouterr().err  # no absl tracebacks


@pytest.mark.slow
def test_divergence_under_x64_is_caught_where_the_float32_history_overflows():
    # Each float64 step loss stays finite while its float32 epoch sum, what the history shows,
    # is inf: before, fit returned normally with history loss [2.5e33, inf, inf, ...].
    assert jax.config.jax_enable_x64
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6, 6, 2)), rng.integers(0, 3, 64)
    net = jnet.serial(
        jnet.conv2d(4, 3), jnet.batch_norm(), jnet.relu(), jnet.flatten(), jnet.dense(3)
    )
    with pytest.raises(jnet.DivergenceError, match=r"in float32, as the history keeps it") as e:
        jnet.fit(net, CE, optax.sgd(1e6), x, y, epochs=5, batch_size=16, key=jax.random.key(0),
                 progress=False)  # fmt: skip
    assert all(np.isfinite(e.value.history["loss"]))


RESUME_PAST_DAMAGE = textwrap.dedent(
    """
    import pathlib, sys, warnings
    import jax, optax, numpy as np, jnet
    sys.path.insert(0, "tests")
    from _train_support import blobs
    x, y = blobs(64, 5)
    folder = pathlib.Path(sys.argv[1])
    # Many arrays: TensorStore still reads the others after the first read fails.
    net = jnet.serial(*[layer for _ in range(6) for layer in (jnet.dense(32), jnet.batch_norm(),
                        jnet.relu())], jnet.dense(3))
    run = lambda epochs: jnet.fit(net, jnet.softmax_cross_entropy, optax.adam(1e-2), x, y,
        epochs=epochs, batch_size=16, key=jax.random.key(0), progress=False,
        checkpoint_dir=folder, checkpoint_every=1)
    run(2)
    for f in (folder / "2" / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":  # the arrays' data, cut in half
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    warnings.simplefilter("ignore")
    result = run(3)
    print("resumed", result.history["epoch"])
    """
)


@pytest.mark.slow
def test_resuming_past_a_corrupt_checkpoint_prints_no_event_loop_tracebacks(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", RESUME_PAST_DAMAGE, str(tmp_path / "ckpt")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed [1, 2, 3]" in done.stdout
    assert "Event loop is closed" not in done.stderr and "Traceback" not in done.stderr
    assert "resuming from checkpoint" in done.stderr


ORPHANED_TASKS = textwrap.dedent(
    """
    import asyncio, gc, logging
    from jnet.checkpoint.quiet import ignore_orphaned_orbax_tasks
    logging.basicConfig()

    async def failing():
        raise ValueError("a read failed")

    ns = {}  # a coroutine whose code lives in orbax, as async_deserialize's does
    exec(compile("async def async_deserialize(f):\\n    await f()",
                 "/site-packages/orbax/checkpoint/_src/serialization/serialization.py", "exec"), ns)

    def orphan(coro):  # a task that fails and is never awaited, then collected
        loop = asyncio.new_event_loop()
        task = loop.create_task(coro)
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        del task
        gc.collect()

    ignore_orphaned_orbax_tasks()
    ignore_orphaned_orbax_tasks()  # idempotent
    assert len(logging.getLogger("asyncio").filters) == 1
    orphan(ns["async_deserialize"](failing))
    print("orbax's task done", flush=True)
    orphan(failing())  # anyone else's is still reported
    """
)


@pytest.mark.slow  # a fresh process
def test_orbaxs_orphaned_read_tasks_are_not_reported_and_others_are():
    done = subprocess.run(
        [sys.executable, "-c", ORPHANED_TASKS], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "orbax's task done" in done.stdout
    # One report: the task that is not orbax's.
    assert done.stderr.count("Task exception was never retrieved") == 1, done.stderr
    assert "coro=<failing()" in done.stderr and "async_deserialize" not in done.stderr
