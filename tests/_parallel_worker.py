"""Subprocess side of test_parallel.py and test_distributed.py (JAX must start fresh).

    python tests/_parallel_worker.py devices OUT DATA_DIR
        8 CPU devices, one process: 1-device vs 8-device fits, sharded checkpoints, resume.
    python -m jnet.distributed --processes 2 --local-devices 2 \
        tests/_parallel_worker.py process OUT DATA_DIR
        2 processes on 127.0.0.1 with 2 CPU devices each; run alone: the reference.

The parent sets XLA_FLAGS and JAX_PLATFORMS before this starts. Results go to
OUT/<name>.npz (arrays) and OUT/<name>.json (histories, messages); the parent compares.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jnet
import jnet.data
from jnet import parallel, train
from jnet.checkpoint import Checkpointer

# A compile cache shared by the calls of one test session: a resumed run compiles the
# same program as the first, and would otherwise pay for it twice.
if os.environ.get("JNET_TEST_XLA_CACHE"):
    jax.config.update("jax_compilation_cache_dir", os.environ["JNET_TEST_XLA_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

NET = jnet.serial(jnet.dense(32), jnet.relu(), jnet.dropout(0.2), jnet.dense(10))
LOSS = jnet.softmax_cross_entropy


def mnist_subset(data_dir: str, n_train: int, n_val: int):
    """float32 images (N, 784) in [0, 1] and int32 labels: the first N of each split."""
    (x, y), (xv, yv) = jnet.data.mnist_flat(data_dir, train_size=n_train, test_size=n_val)
    return (x, y.astype(np.int32)), (xv, yv.astype(np.int32))


def run_fit(x, y, validation, *, epochs, batch_size, mesh=None, checkpoint_dir=None):
    return jnet.fit(
        NET,
        LOSS,
        optax.adam(1e-2),
        x,
        y,
        epochs=epochs,
        key=jax.random.key(0),
        batch_size=batch_size,
        validation=validation,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=1 if checkpoint_dir else None,
        progress=False,
        mesh=mesh,
    )


def flat(prefix: str, tree) -> dict[str, np.ndarray]:
    """`{prefix/0, prefix/1, ...}`: the leaves of `tree` as host numpy arrays."""
    leaves = jax.tree.leaves(parallel.to_host(tree))
    return {f"{prefix}/{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}


def error_of(fn) -> str:
    try:
        fn()
    except (ValueError, TypeError) as e:
        return f"{type(e).__name__}: {e}"
    return ""


def devices(out: pathlib.Path, data_dir: str) -> None:
    """One process, 8 CPU devices: the issue's single-host checks."""
    assert jax.device_count() == 8, jax.devices()
    arrays, info = {}, {"timings": {}}
    (x, y), val = mnist_subset(data_dir, 512, 200)
    mesh = parallel.data_mesh()
    tick = time.perf_counter()

    def timed(name):
        nonlocal tick
        info["timings"][name] = round(time.perf_counter() - tick, 2)
        tick = time.perf_counter()

    # 1 device vs 8: minibatches with dropout and validation, and full batch.
    for name, m in (("one", None), ("eight", mesh)):
        params, _, hist = run_fit(x, y, val, epochs=2, batch_size=64, mesh=m)
        arrays |= flat(f"mini_{name}", params)
        info[f"mini_{name}"] = hist
        info[f"mini_{name}_sharding"] = str(jax.tree.leaves(params)[0].sharding)
        params, _, hist = run_fit(x[:256], y[:256], None, epochs=3, batch_size=None, mesh=m)
        arrays |= flat(f"full_{name}", params)
        info[f"full_{name}"] = hist
        timed(f"fit_{name}")

    # Batches that do not split over the devices, and meshes that cannot be built.
    info["errors"] = {
        "batch": error_of(lambda: run_fit(x, y, None, epochs=1, batch_size=60, mesh=mesh)),
        "full_batch": error_of(
            lambda: run_fit(x[:100], y[:100], None, epochs=1, batch_size=None, mesh=mesh)
        ),
        "too_many": error_of(lambda: parallel.data_mesh(9)),
        "zero": error_of(lambda: parallel.data_mesh(0)),
    }
    info["mesh3"] = [d.id for d in parallel.data_mesh(3).devices]

    # Checkpoint of a state replicated over the 8 devices: exact round trip, same sharding.
    ckpt = Checkpointer(out / "ckpt_roundtrip")
    state = train.init_state(NET, optax.adam(1e-2), jax.random.key(1), (1, 784))
    state = parallel.put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    state, _ = train.train_step(NET, LOSS, optax.adam(1e-2))(state, (x[:64], y[:64]))
    ckpt.save(1, state, {"note": "8 devices"})
    # Same structure and shardings, other values: what comes back was read from disk.
    like = state._replace(params=jax.tree.map(jnp.zeros_like, state.params))
    epoch, restored, meta = ckpt.restore_latest(like)
    ckpt.close()
    info["restored"] = {
        "epoch": epoch,
        "meta": meta,
        "shardings_equal": [
            a.sharding == b.sharding
            for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True)
        ],
    }
    key_data = lambda s: s._replace(key=jax.random.key_data(s.key))
    arrays |= flat("saved", key_data(state)) | flat("restored", key_data(restored))
    timed("checkpoint")

    # Resume on 8 devices: 1 epoch, stop, then on to 2, against the uninterrupted run above.
    ckpt_dir = out / "ckpt_resume"
    run_fit(x, y, val, epochs=1, batch_size=64, mesh=mesh, checkpoint_dir=ckpt_dir)
    params, _, hist = run_fit(
        x, y, val, epochs=2, batch_size=64, mesh=mesh, checkpoint_dir=ckpt_dir
    )
    arrays |= flat("resumed", params)
    info["resumed"] = hist
    timed("resume")
    save(out, "devices", arrays, info)


def process(out: pathlib.Path, data_dir: str) -> None:
    """One process of a run; `python -m jnet.distributed` has joined it to the others.

    Started directly (one process, no mesh), it is the reference run.
    """
    pid, num_processes = jax.process_index(), jax.process_count()
    if num_processes > 1:
        mesh = parallel.data_mesh()
        assert mesh.size == jax.device_count() == 2 * num_processes, mesh
    else:
        mesh = None
    arrays, info = {}, {"process_count": jax.process_count(), "devices": jax.device_count()}
    start = time.perf_counter()
    (x, y), val = mnist_subset(data_dir, 256, 100)

    if mesh is not None:
        # Processes given different data are told so (in every process).
        state = train.init_state(NET, optax.sgd(0.1), jax.random.key(0), (1, 784))
        mine = x[:64] + pid  # process 1's copy differs
        info["mismatch"] = error_of(lambda: parallel.place(mesh, mine, y[:64], None, state, 32))
        # Sharded over processes and back: each process filled only its own rows.
        batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        arrays["roundtrip"] = parallel.to_host(parallel.put(x[:64], batch))
        arrays["roundtrip_expected"] = x[:64]

    # fit, checkpointing every epoch (orbax: every process writes its part), then restore.
    ckpt_dir = out / f"ckpt_{num_processes}"
    params, _, hist = run_fit(
        x, y, val, epochs=2, batch_size=32, mesh=mesh, checkpoint_dir=ckpt_dir
    )
    arrays |= flat("fit", params)
    info["fit"] = hist
    info["evaluate"] = jnet.evaluate(NET, LOSS, params, val[0], val[1])
    state = train.init_state(NET, optax.adam(1e-2), jax.random.key(0), (1, 784))
    if mesh is not None:
        state = parallel.put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    ckpt = Checkpointer(ckpt_dir, lock=False)  # an inspection while the folder is idle
    epoch, restored, meta = ckpt.restore_latest(state)
    ckpt.close()
    arrays |= flat("restored", restored.params)
    info["restored"] = {"epoch": epoch, "history": meta["history"]}
    info["restored_sharding"] = str(jax.tree.leaves(restored.params)[0].sharding)

    # A custom loop where each process loads only its rows of every global batch.
    opt = optax.sgd(0.1)
    step = train.train_step(NET, LOSS, opt)
    state = train.init_state(NET, opt, jax.random.key(2), (1, 784))
    batch = 32
    if mesh is not None:
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        state = parallel.put(state, replicated)
        rows = parallel.local_rows(mesh, batch)
        info["local_rows"] = [rows.start, rows.stop]
    for i in range(4):
        xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        if mesh is not None:  # only this process's rows are read
            xb, yb = parallel.global_batch(mesh, (xb[rows], yb[rows]))
        state, metrics = step(state, (xb, yb), jax.random.fold_in(jax.random.key(3), i))
    arrays |= flat("loop", state.params)
    info["loop_loss"] = float(metrics["loss"])
    info["seconds"] = round(time.perf_counter() - start, 2)
    save(out, f"process{pid}_of{num_processes}", arrays, info)
    if num_processes > 1:
        jax.distributed.shutdown()


def save(out: pathlib.Path, name: str, arrays: dict, info: dict) -> None:
    np.savez(out / f"{name}.npz", **arrays)
    (out / f"{name}.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    mode, out, data_dir = sys.argv[1:]
    if mode == "devices":
        devices(pathlib.Path(out), data_dir)
    else:
        process(pathlib.Path(out), data_dir)
