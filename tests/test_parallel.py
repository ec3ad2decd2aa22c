"""Data parallelism: meshes and placement here; 8 CPU devices in a fresh subprocess.

The 8-device checks need XLA_FLAGS set before JAX starts, so one subprocess
(`_parallel_worker.py devices`) runs every fit once and the tests below compare its
results: 1 device vs 8 (params and history to float32 tolerance), clear errors for
batches that do not split, exact sharded checkpoints, and resume == uninterrupted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _parallel_support import F32, WORKER, assert_history_close, leaves, tail, worker_env
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jnet import parallel

TIMEOUT_S = 180  # the worker takes ~20 s on an idle 2-core machine


@pytest.fixture(scope="module")
def eight(tmp_path_factory, data_dir):
    """Runs the 8-device worker once; returns (arrays, info) as it saved them."""
    out = tmp_path_factory.mktemp("eight_devices")
    log = out / "log.txt"
    env = worker_env(out, "--xla_force_host_platform_device_count=8")
    with open(log, "w") as f:
        try:
            proc = subprocess.run(
                [sys.executable, str(WORKER), "devices", str(out), str(data_dir)],
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT_S,  # kills the child when it runs over
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"8-device worker ran over {TIMEOUT_S} s:\n{tail(log)}")
    assert proc.returncode == 0, f"8-device worker failed:\n{tail(log)}"
    arrays = dict(np.load(out / "devices.npz"))
    return arrays, json.loads((out / "devices.json").read_text())


# --- 8 CPU devices (subprocess) -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("run", ["mini", "full"])
def test_eight_devices_match_one(eight, run):
    """Minibatches (dropout, validation) and full batch: same params and history."""
    arrays, info = eight
    one, many = leaves(arrays, f"{run}_one"), leaves(arrays, f"{run}_eight")
    for a, b in zip(one, many, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(b, a, **F32)
    assert_history_close(info[f"{run}_eight"], info[f"{run}_one"], **F32)


@pytest.mark.slow
def test_eight_device_params_are_replicated(eight):
    _, info = eight
    assert "'data': 8" in info["mini_eight_sharding"]
    assert "spec=P()" in info["mini_eight_sharding"]


@pytest.mark.slow
def test_batches_that_do_not_split_are_refused(eight):
    errors = eight[1]["errors"]
    assert "batch of 60 examples cannot be split evenly over the 8 devices" in errors["batch"]
    assert "divisible by 8" in errors["batch"]
    assert "batch_size=None" in errors["full_batch"] and "100 examples" in errors["full_batch"]
    assert "drop 4 examples" in errors["full_batch"]
    assert "asked for 9 devices but JAX sees 8" in errors["too_many"]
    assert "at least 1" in errors["zero"]
    assert eight[1]["mesh3"] == [0, 1, 2]  # the first n devices


@pytest.mark.slow
def test_sharded_checkpoint_round_trips_exactly(eight):
    arrays, info = eight
    saved, restored = leaves(arrays, "saved"), leaves(arrays, "restored")
    assert len(saved) == len(restored) > 4
    for a, b in zip(saved, restored, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(b, a)
    assert info["restored"]["epoch"] == 1 and info["restored"]["meta"] == {"note": "8 devices"}
    assert all(info["restored"]["shardings_equal"])


@pytest.mark.slow
def test_resumed_eight_device_run_equals_uninterrupted(eight):
    arrays, info = eight
    for a, b in zip(leaves(arrays, "mini_eight"), leaves(arrays, "resumed"), strict=True):
        np.testing.assert_array_equal(b, a)
    assert_history_close(info["resumed"], info["mini_eight"], rtol=0, atol=0)


# --- in this process (one device) -------------------------------------------------------


def test_data_mesh_on_the_devices_here():
    mesh = parallel.data_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    assert parallel.data_mesh(1).devices.tolist() == [jax.devices()[0]]
    assert parallel.data_mesh(devices=jax.devices()[:1]).size == 1


@pytest.mark.parametrize(
    ("n", "error", "message"),
    [
        (10_000, ValueError, "asked for 10000 devices"),
        (0, ValueError, "at least 1"),
        (-2, ValueError, "at least 1"),
        ("2", TypeError, "must be an int"),
        (2.0, TypeError, "must be an int"),
    ],
)
def test_data_mesh_rejects_bad_counts(n, error, message):
    with pytest.raises(error, match=message):
        parallel.data_mesh(n)


def test_data_mesh_takes_a_count_or_devices_not_both():
    with pytest.raises(ValueError, match="not both"):
        parallel.data_mesh(1, devices=jax.devices())


def test_place_without_mesh_moves_nothing():
    x, y, state = np.ones((4, 2)), np.zeros(4), {"w": np.ones(2)}
    out = parallel.place(None, x, y, None, state, 2)
    assert out[0] is x and out[1] is y and out[3] is state and out[4] is None


def test_place_needs_a_data_axis():
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match="axis named 'data'"):
        parallel.place(mesh, jnp.ones((4, 2)), jnp.zeros(4), None, {}, 2)


def test_place_on_one_device_mesh_replicates_state_and_shards_full_batch():
    mesh = parallel.data_mesh(1)
    x, y = jnp.ones((4, 2), jnp.float32), jnp.zeros(4, jnp.int32)
    state = {"w": jnp.ones(3, jnp.float32), "key": jax.random.key(0)}
    val = (x[:2], y[:2])
    px, py, pval, pstate, batch = parallel.place(mesh, x, y, val, state, None)
    assert batch == NamedSharding(mesh, PartitionSpec("data"))
    assert px.sharding == batch and py.sharding == batch
    assert pstate["w"].sharding == NamedSharding(mesh, PartitionSpec())
    assert pval[0].sharding == NamedSharding(mesh, PartitionSpec())
    np.testing.assert_array_equal(
        jax.random.key_data(pstate["key"]), jax.random.key_data(state["key"])
    )


def test_single_process_batch_helpers():
    mesh = parallel.data_mesh(1)
    assert parallel.local_rows(mesh, 8) == slice(0, 8)
    xb = np.arange(12.0, dtype=np.float32).reshape(6, 2)
    (gx,) = parallel.global_batch(mesh, (xb,))
    assert gx.shape == (6, 2) and gx.sharding == NamedSharding(mesh, PartitionSpec("data"))
    np.testing.assert_array_equal(parallel.to_host({"a": gx})["a"], xb)
