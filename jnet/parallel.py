"""Data parallelism on JAX's own sharding: a device mesh with a "data" axis, over processes.

Each minibatch is split along the mesh's "data" axis, while parameters and optimizer
state are replicated; XLA inserts the gradient all-reduce. The compiled epoch is the
same function on one device or many, and the global batch is the same, so results
agree with a single-device run to float tolerance.

Several processes (hosts) run the same program on one global mesh (multi-controller
JAX): call `initialize` first, then `fit(..., mesh=data_mesh())` in every process with
the same arguments. How data is fed:

- `fit` (via `place`): every process passes the same full dataset (loaded from its own
  disk) and puts it only on its own devices (`jax.make_array_from_callback`: no data
  crosses processes). Every process draws the same permutation from the same key, so all
  agree on each batch's members; each device gathers only its rows of the global batch
  from its local copy, so each process feeds exactly its share of every batch. Only
  gradients (and metrics) are all-reduced. The dataset must fit in each device's memory.
- Custom loops over larger data: each process loads only its rows of every global batch
  (`local_rows`) and `global_batch` assembles the global array without copying
  (`jax.make_array_from_process_local_data`); feed it to `train_step`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_count: int | None = None,
    **kwargs: Any,
) -> None:
    """`jax.distributed.initialize`, with CPU collectives (gloo) switched on. Call it first.

    With no arguments, JAX detects the cluster (SLURM, Open MPI, TPU pods, Kubernetes).
    On CPU, `local_device_count` splits each process into that many CPU devices (the
    `jax_num_cpu_devices` option), e.g. to test a multi-process mesh on one machine.
    Extra keyword arguments (e.g. `initialization_timeout`) go to JAX.
    """
    # Cross-process collectives on CPU need an implementation; on GPU/TPU it is unused.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if local_device_count is not None:
        jax.config.update("jax_num_cpu_devices", local_device_count)
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)


def data_mesh(n_devices: int | None = None, *, devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh named "data" over the first `n_devices` devices (None: all JAX sees).

    Devices are ordered process by process, so each process's devices hold one contiguous
    block of every batch. With several processes, `n_devices` must be a multiple of the
    process count and the mesh takes the first `n_devices / processes` devices of each
    (a process without devices in the mesh could not take part). `devices=` gives an
    explicit list instead.

    Raises:
      ValueError: `n_devices` is not positive, exceeds the devices available, or does
        not divide evenly among the processes.
    """
    if devices is not None:
        if n_devices is not None:
            raise ValueError("data_mesh: pass n_devices or devices, not both")
        return Mesh(np.asarray(list(devices)), ("data",))
    if n_devices is not None and (isinstance(n_devices, bool) or not isinstance(n_devices, int)):
        raise TypeError(f"data_mesh: n_devices must be an int or None; got {n_devices!r}")
    per_process: dict[int, list] = {}
    for d in jax.devices():
        per_process.setdefault(d.process_index, []).append(d)
    available = sum(len(ds) for ds in per_process.values())
    n = available if n_devices is None else n_devices
    if n < 1:
        raise ValueError(f"data_mesh: n_devices must be at least 1; got {n}")
    if n > available:
        raise ValueError(
            f"data_mesh: asked for {n} devices but JAX sees {available} "
            f"({jax.default_backend()}; {len(per_process)} process(es)). On CPU, set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts."
        )
    if n % len(per_process):
        raise ValueError(
            f"data_mesh: {n} devices cannot be split evenly over {len(per_process)} processes"
        )
    k = n // len(per_process)
    if any(len(ds) < k for ds in per_process.values()):
        raise ValueError(f"data_mesh: some process has fewer than {k} devices")
    chosen = [d for p in sorted(per_process) for d in per_process[p][:k]]
    return Mesh(np.asarray(chosen), ("data",))


def _data_size(mesh: Mesh) -> int:
    if "data" not in mesh.shape:
        raise ValueError(f"the mesh needs an axis named 'data'; it has {tuple(mesh.shape)}")
    return mesh.shape["data"]


def _check_divisible(mesh: Mesh, global_batch: int, full_batch: bool) -> None:
    n_dev = _data_size(mesh)
    if global_batch % n_dev:
        if full_batch:
            what = "dataset (batch_size=None: the whole dataset is one batch)"
            fix = f"use a dataset size divisible by {n_dev} (drop {global_batch % n_dev} examples)"
        else:
            what, fix = "batch", f"choose a batch size divisible by {n_dev}"
        raise ValueError(
            f"the {what} of {global_batch} examples cannot be split evenly over the {n_dev} "
            f"devices of the mesh's 'data' axis; {fix} or another device count "
            "(jnet does not pad: padded rows would change the mean loss)"
        )


def _put_leaf(value, sharding: NamedSharding):
    if sharding.is_fully_addressable:
        return jax.device_put(value, sharding)
    # Several processes: each fills only its own devices from its own host copy. (A
    # device_put would first all-gather the whole value to check it is equal everywhere.)
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(value)
        data = _put_leaf(jax.random.key_data(value), sharding)
        return jax.random.wrap_key_data(data, impl=impl)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put(tree: Any, sharding: NamedSharding) -> Any:
    """Places every leaf of `tree` with `sharding`; each process must pass the same values.

    One process: `jax.device_put`. Several: each process fills its own devices from its
    own copy with `jax.make_array_from_callback`, so nothing crosses processes.
    """
    return jax.tree.map(lambda leaf: _put_leaf(leaf, sharding), tree)


def _fingerprint(tree) -> np.ndarray:
    """Size and CRC32 of every leaf: cheap to compare across processes."""
    rows = []
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        host = np.ascontiguousarray(np.asarray(leaf))
        rows.append([host.size % 2**32, zlib.crc32(host.tobytes())])
    return np.asarray(rows, np.uint32)  # 32 bits: JAX without x64 would truncate int64


def place(mesh: Mesh | None, x, y, validation, state, batch_size: int | None):
    """Puts data and state on the mesh; returns them and the sharding for each batch.

    The training set is replicated (every device can gather any example) and each batch
    is constrained to be sharded along "data"; full-batch training (`batch_size=None`)
    shards the training set itself. The validation set and the state are replicated.
    Without a mesh, nothing moves. With several processes, every process must pass the
    same data and state (checked by fingerprint) and fills only its own devices.

    Raises:
      ValueError: the batch does not split evenly over the "data" axis, or processes
        were given different data.
    """
    if mesh is None:
        return x, y, validation, state, None
    global_batch = x.shape[0] if batch_size is None else batch_size
    _check_divisible(mesh, global_batch, batch_size is None)
    replicated = NamedSharding(mesh, PartitionSpec())
    batch = NamedSharding(mesh, PartitionSpec("data"))
    if not replicated.is_fully_addressable:
        _assert_same_everywhere((x, y, validation, state))
    if batch_size is None:  # full batch: the dataset is the batch
        x, y = put(x, batch), put(y, batch)
    else:
        x, y = put(x, replicated), put(y, replicated)
    if validation is not None:
        validation = put(validation, replicated)
    return x, y, validation, put(state, replicated), batch


def _assert_same_everywhere(tree) -> None:
    from jax.experimental import multihost_utils

    prints = multihost_utils.process_allgather(_fingerprint(tree))  # (processes, leaves, 2)
    differ = [p for p in range(len(prints)) if not np.array_equal(prints[p], prints[0])]
    if differ:
        raise ValueError(
            f"fit(mesh=...) over {len(prints)} processes needs the same data, params and key "
            "in every process (each process's devices take their share of every batch from "
            f"their own full copy); processes {differ} were given other values than process 0"
        )


def local_rows(mesh: Mesh, batch_size: int) -> slice:
    """The rows of a global batch of `batch_size` that this process's devices hold.

    For custom loops: load `batch[local_rows(mesh, n)]` in each process, then
    `global_batch`. One process: all rows.
    """
    _check_divisible(mesh, batch_size, False)
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    index = sharding.addressable_devices_indices_map((batch_size,)).values()
    starts = sorted({(i[0].start or 0, i[0].stop or batch_size) for i in index})
    lo, hi = starts[0][0], starts[-1][1]
    if sum(b - a for a, b in starts) != hi - lo:  # data_mesh keeps a process's rows together
        raise ValueError(f"this process's rows of the batch are not contiguous: {starts}")
    return slice(lo, hi)


def global_batch(mesh: Mesh, local: Any) -> Any:
    """Assembles each process's rows of a batch into global arrays sharded along "data".

    Args:
      mesh: the mesh of `data_mesh`.
      local: a pytree of arrays `(B / processes, ...)`: this process's rows, those of
        `local_rows(mesh, B)`.
    Returns:
      The same pytree of global arrays `(B, ...)`, with no data crossing processes.
    """
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    _check_divisible(mesh, _leading(local) * jax.process_count(), False)
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), local
    )


def _leading(tree) -> int:
    return jax.tree.leaves(tree)[0].shape[0]


def to_host(tree: Any) -> Any:
    """Numpy copies of every leaf, in every process (gathered when sharded over processes).

    Replicated arrays (params after `fit`) are read from a local device.
    """
    from jax.experimental import multihost_utils

    def get(leaf):
        if isinstance(leaf, jax.Array) and not (
            leaf.is_fully_addressable or leaf.is_fully_replicated
        ):
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree.map(get, tree)


__all__: Sequence[str] = [
    "data_mesh",
    "global_batch",
    "initialize",
    "local_rows",
    "place",
    "put",
    "to_host",
]
