"""Data parallelism with a 1-D device mesh: batch sharded on the ``data`` axis, the rest replicated.

The same jitted train step runs on one CPU, one GPU, many devices or many hosts: place the batch with
``shard_batch`` and the train state with ``replicate``, and ``jax.jit`` partitions the step
(GSPMD). Reductions over the batch are over the *global* batch, so a mean loss, its gradient and
train-mode BatchNorm statistics (mean and variance over T·B and space, docs/FORMULAS.md §2) equal
those of one device holding the whole batch; XLA inserts the all-reduces. No ``pmap``, no
``axis_name`` plumbing::

    mesh = sharding.make_mesh()                       # every device of every process on 'data'
    state = sharding.replicate(state, mesh)
    step = jax.jit(train_step, donate_argnums=0)
    rows = sharding.process_rows(mesh, global_batch)  # this process's rows of each global batch
    for images, labels in batches:                    # numpy, images[rows], labels[rows]
        state, metrics = step(state, sharding.shard_batch((images, labels), mesh))

Multi-host (several processes, e.g. a TPU pod slice or GPUs on several nodes): every process calls
``jax.distributed.initialize()`` first (``tgo_train.distributed`` does it for the programs);
``jax.devices()`` then lists the devices of all processes and ``make_mesh()`` spans them. Each
process loads only its ``process_rows`` of each global batch and passes them to ``shard_batch``,
which assembles the global array with ``jax.make_array_from_process_local_data``. Results of a
jitted function that are replicated (a loss, a count) can be read on every process.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = 0, axis: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh on axis ``axis`` over ``num_devices`` devices; 0 or None: every device of every process.

    With several processes the mesh takes the first ``num_devices / process_count`` local devices of
    each process (in process order), so every process holds an equal, contiguous part of each batch.
    """
    devices = jax.devices()
    total, processes = len(devices), jax.process_count()
    num_devices = 0 if num_devices is None else num_devices
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) \
            or not 0 <= num_devices <= total:
        raise ValueError(f"num_devices must be an int in [0, {total}] (0 = all {total} devices of "
                         f"{processes} process(es)), got {num_devices!r}")
    count = int(num_devices) or total
    if processes == 1:
        return Mesh(np.asarray(devices[:count]), (axis,))
    if count % processes:
        raise ValueError(f"num_devices={count} must be 0 (all {total}) or a multiple of the {processes} "
                         "processes, so that every process holds an equal part of each batch")
    per_process = count // processes
    chosen = []
    for p in range(processes):
        local = [d for d in devices if d.process_index == p]
        if len(local) < per_process:
            raise ValueError(f"num_devices={count} needs {per_process} devices on each of the {processes} "
                             f"processes, but process {p} has {len(local)}")
        chosen += local[:per_process]
    return Mesh(np.asarray(chosen), (axis,))


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


def describe(mesh: Mesh) -> str:
    """'8 devices (2 processes × 4)' or '4 devices' for messages."""
    processes = len({d.process_index for d in mesh.devices.flat})
    if processes == 1:
        return f"{mesh.size} device{'s' if mesh.size != 1 else ''}"
    return f"{mesh.size} devices ({processes} processes × {mesh.size // processes})"


def check_batch_size(batch_size: int, mesh: Mesh, field: str = "batch_size") -> None:
    """One ValueError naming both numbers when a global batch does not split evenly over the mesh."""
    if batch_size % mesh.size:
        raise ValueError(f"{field}={batch_size} is not divisible by the {describe(mesh)} of the mesh; "
                         f"use a multiple of {mesh.size} (or set num_devices)")


def process_rows(mesh: Mesh, batch_size: int) -> slice:
    """The rows ``[lo, hi)`` of a global batch of ``batch_size`` that this process's devices hold.

    Each process loads and feeds only these rows (``shard_batch``); with one process it is all of them.
    """
    check_batch_size(batch_size, mesh)
    index_map = batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
    spans = sorted({(idx[0].start or 0, batch_size if idx[0].stop is None else idx[0].stop)
                    for idx in index_map.values()})
    for (_, stop), (start, _) in zip(spans, spans[1:]):
        if stop != start:  # make_mesh keeps each process's devices together; a hand-made mesh may not
            raise ValueError(f"this process's devices hold rows {spans} of the batch, not one contiguous "
                             "block; order the mesh devices by process")
    return slice(spans[0][0], spans[-1][1])


def _leading_size(leaf: Any) -> int:
    if np.ndim(leaf) == 0:
        raise ValueError(f"every batch leaf needs a leading batch axis, got a scalar {leaf!r}")
    return int(np.shape(leaf)[0])


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Places a pytree of host arrays (numpy), each [B, ...], as jax arrays split on the data axis.

    With one process, ``B`` is the global batch and must be divisible by ``mesh.size``. With several
    processes, each passes its ``process_rows`` of the global batch (``B / process_count`` rows when
    every process has as many mesh devices) and the global batch is assembled from them.
    """
    sharding = batch_sharding(mesh)
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("shard_batch got an empty batch")
    sizes = {_leading_size(leaf) for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"batch leaves differ in their leading (batch) size: {sorted(sizes)}")
    (local_rows,) = sizes
    if jax.process_count() == 1:
        check_batch_size(local_rows, mesh, field="batch size")
        return jax.device_put(batch, sharding)
    local_devices = len(mesh.local_devices)
    if not local_devices or local_rows % local_devices:
        raise ValueError(f"this process's batch of {local_rows} rows does not split over its "
                         f"{local_devices} mesh devices")
    global_rows = local_rows * mesh.size // local_devices
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
        sharding, np.asarray(x), (global_rows, *np.shape(x)[1:])), batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (params, optimiser state, ...) as full copies on every device of the mesh.

    Every process must pass the same values (same seed, same checkpoint).
    """
    return jax.device_put(tree, replicated(mesh))
