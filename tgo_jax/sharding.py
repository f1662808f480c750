"""Data parallelism with a 1-D device mesh: batch sharded on the ``data`` axis, the rest replicated.

The same jitted train step runs on one CPU, one GPU or many devices: place the batch with
``shard_batch`` and the train state with ``replicate``, and ``jax.jit`` partitions the step
(GSPMD). Reductions over the batch are over the *global* batch, so a mean loss, its gradient and
train-mode BatchNorm statistics (mean and variance over T·B and space, docs/FORMULAS.md §2) equal
those of one device holding the whole batch; XLA inserts the all-reduces. No ``pmap``, no
``axis_name`` plumbing::

    mesh = sharding.make_mesh()                       # all devices on the 'data' axis
    state = sharding.replicate(state, mesh)
    step = jax.jit(train_step, donate_argnums=0)
    for images, labels in batches:                    # numpy, global batch divisible by mesh.size
        state, metrics = step(state, sharding.shard_batch((images, labels), mesh))

Multi-host (several processes, e.g. a TPU pod or GPUs on several nodes): call
``jax.distributed.initialize()`` at the very start of every process, before any other JAX call
(on Cloud TPU and under SLURM/Open MPI it finds the coordinator itself; otherwise pass
``coordinator_address="host0:1234", num_processes=N, process_id=i``). ``jax.devices()`` then
lists the devices of all processes and ``make_mesh()`` spans them. Each process loads its own
slice of the global batch (``jax.process_index()`` of ``jax.process_count()``) and passes it to
``shard_batch``, which assembles the global array with
``jax.make_array_from_process_local_data``; the per-process batch must then be divisible by
``jax.local_device_count()``. Launch the same command on every host; save checkpoints from all
processes (orbax coordinates) and print from ``jax.process_index() == 0`` only.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None, axis: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (all of them when None), axis ``axis``."""
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if not isinstance(num_devices, int) or not 1 <= num_devices <= len(devices):
        raise ValueError(f"num_devices must be an int in [1, {len(devices)}] (the devices available), "
                         f"got {num_devices!r}")
    return Mesh(np.asarray(devices[:num_devices]), (axis,))


def _data_axis(mesh: Mesh) -> str:
    if len(mesh.axis_names) != 1:
        raise ValueError(f"mesh must be 1-D (a data axis), got axes {mesh.axis_names}")
    return mesh.axis_names[0]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh's data axis, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(_data_axis(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh (params, optimiser state, batch_stats)."""
    return NamedSharding(mesh, PartitionSpec())


def _check_divisible(leaf: Any, ways: int, what: str) -> None:
    if np.ndim(leaf) == 0:
        raise ValueError(f"every batch leaf needs a leading batch axis, got a scalar {leaf!r}")
    size = np.shape(leaf)[0]
    if size % ways:
        raise ValueError(f"batch size {size} (leaf of shape {np.shape(leaf)}) is not divisible by the "
                         f"{ways} {what}; use a batch size that is a multiple of {ways}")


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Places a pytree of host arrays (numpy), each [B, ...], as jax arrays split on the data axis.

    With one process, ``B`` is the global batch and must be divisible by ``mesh.size``. With several
    processes (multi-host), each passes its local slice and ``B`` must be divisible by the number
    of mesh devices local to the process.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        jax.tree.map(lambda x: _check_divisible(x, mesh.size, "devices of the mesh"), batch)
        return jax.device_put(batch, sharding)
    local = len(mesh.local_devices)
    jax.tree.map(lambda x: _check_divisible(x, local, "devices local to this process"), batch)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (params, optimiser state, ...) as full copies on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))
