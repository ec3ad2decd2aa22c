"""Data parallelism on JAX's own sharding: a device mesh with a "data" axis.

Each minibatch is split along the mesh's "data" axis, while parameters and optimizer
state are replicated; XLA inserts the gradient all-reduce. The compiled epoch is the
same function on one device or many, so results agree to float tolerance.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh named "data" over `devices` (default: every device JAX sees)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def place(mesh: Mesh | None, x, y, validation, state, batch_size: int | None):
    """Puts data and state on the mesh; returns them and the sharding for each batch.

    The dataset is replicated (every device can gather any example), each batch is
    sharded along "data", and the state is replicated. Without a mesh, nothing moves.
    """
    if mesh is None:
        return x, y, validation, state, None
    n_dev = mesh.shape["data"]
    global_batch = x.shape[0] if batch_size is None else batch_size
    if global_batch % n_dev:
        raise ValueError(
            f"the batch of {global_batch} examples cannot be split evenly over the {n_dev} "
            f"devices of the mesh's 'data' axis; choose a batch size divisible by {n_dev}"
        )
    replicated = NamedSharding(mesh, PartitionSpec())
    batch = NamedSharding(mesh, PartitionSpec("data"))
    put = lambda tree, s: jax.device_put(tree, s)
    if batch_size is None:  # full batch: the dataset is the batch
        x, y = put(x, batch), put(y, batch)
    else:
        x, y = put(x, replicated), put(y, replicated)
    if validation is not None:
        validation = put(validation, replicated)
    return x, y, validation, put(state, replicated), batch
