"""Batches placed on the mesh, each process loading only its own rows of every global batch.

The global batches are those of ``tgo_jax.data`` on one process: training batch k of an epoch holds
examples ``perm[k·B:(k+1)·B]`` with ``perm = data.epoch_permutation(N, seed, epoch)``; evaluation
batches are in dataset order, the last one padded and masked (``data.eval_batches(pad=True)``). A
process of a multi-process run gathers only its ``sharding.process_rows`` of each, so the run sees the
same global batches, in the same order, whatever the number of processes and devices.

The loaders hold images as uint8 (``tgo_jax.data.Pixels``); indexing the rows of a batch converts just those
rows to float32, so the host never holds a float copy of a split.
"""
from __future__ import annotations

from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from tgo_jax import data, sharding


def train_batches(images: np.ndarray | data.Pixels, labels: np.ndarray, batch_size: int, mesh: Mesh, *, seed: int,
                  epoch: int, start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
    """The epoch's global batches ``{'image', 'label'}`` from step ``start_step`` on, sharded on ``mesh``.

    The last ``N mod B`` examples of the permutation are dropped, as in ``data.epoch_batches``.
    """
    steps = data.num_batches(len(labels), batch_size, drop_remainder=True)
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step={start_step} is past the end of the epoch, expected 0..{steps}")
    rows = sharding.process_rows(mesh, batch_size)
    perm = data.epoch_permutation(len(labels), seed=seed, epoch=epoch)
    for k in range(start_step, steps):
        idx = perm[k * batch_size:(k + 1) * batch_size][rows]
        yield sharding.shard_batch({"image": images[idx], "label": labels[idx]}, mesh)


def eval_batches(images: np.ndarray | data.Pixels, labels: np.ndarray, batch_size: int,
                 mesh: Mesh) -> Iterator[dict[str, jax.Array]]:
    """Every example once, in dataset order: ``{'image', 'label', 'mask'}`` batches of ``batch_size``
    sharded on ``mesh``; the last batch is padded, ``mask`` [B] is False on its padding.

    Every batch has the same shape whatever the mesh, so one compilation serves them all and a noisy
    model draws the same noise on one device as on many (threefry draws do not depend on sharding).
    """
    batch_size = eval_batch_size(batch_size, len(labels), mesh)
    rows = sharding.process_rows(mesh, batch_size)
    for batch in data.eval_batches(images, labels, batch_size, pad=True):
        yield sharding.shard_batch({k: v[rows] for k, v in batch.items()}, mesh)


def eval_batch_size(batch_size: int, num_examples: int, mesh: Mesh) -> int:
    """The batch ``eval_batches`` feeds: at most the split (a larger batch would be padding only, allocated
    for nothing), rounded up to a multiple of the device count. The extra rows are padding, masked and dropped
    like the last batch's, so an evaluation batch size never has to match the machine."""
    batch_size = min(batch_size, num_examples)
    return -(-batch_size // mesh.size) * mesh.size


def num_eval_batches(num_examples: int, batch_size: int, mesh: Mesh) -> int:
    """How many batches ``eval_batches`` yields for a split of ``num_examples``."""
    return data.num_batches(num_examples, eval_batch_size(batch_size, num_examples, mesh), drop_remainder=False)
