"""Host-side numpy batching: shuffled training epochs that resume mid-epoch, ordered evaluation batches."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from tgo_jax import validation


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Batches in an epoch of n examples: ``floor(n / B)`` dropping the remainder, else ``ceil(n / B)``."""
    validation.count("n", n, 0)
    validation.count("batch_size", batch_size, 1)
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_permutation(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a permutation of 0..n-1 that depends only on (seed, epoch)."""
    validation.count("n", n, 0)
    validation.count("seed", seed, 0)
    validation.count("epoch", epoch, 0)
    return np.random.default_rng((seed, epoch)).permutation(n)


def epoch_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, *, seed: int, epoch: int,
                  start_step: int = 0, drop_remainder: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Yields the shuffled batches ``{'image': [B, ...], 'label': [B]}`` of one epoch.

    Batch k holds examples ``perm[k·B:(k+1)·B]`` with ``perm = epoch_permutation(N, seed, epoch)``, so the
    order is fixed by (seed, epoch) and a run resumed at step k of the epoch (``start_step=k``) yields
    exactly the batches k, k+1, ... it would have seen. With ``drop_remainder`` the last ``N mod B``
    examples of the permutation are skipped (a different set each epoch); otherwise the last batch is short.
    """
    n = validation.paired("images", images, "labels", labels)
    steps = num_batches(n, batch_size, drop_remainder)
    validation.count("start_step", start_step, 0)
    if start_step > steps:
        raise ValueError(f"start_step={start_step} is past the end of the epoch, expected 0..{steps}")
    perm = epoch_permutation(n, seed=seed, epoch=epoch)
    for k in range(start_step, steps):
        idx = perm[k * batch_size:(k + 1) * batch_size]
        yield {"image": images[idx], "label": labels[idx]}


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, *,
                 pad: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Yields ``{'image', 'label', 'mask'}`` batches in dataset order, covering every example once.

    The last batch keeps the ``N mod B`` leftover examples: short by default, or with ``pad=True`` filled
    up to B with zero images and label 0 so that every batch has one shape (one compilation, evenly
    shardable). ``mask`` [B] bool is True for real examples; weight per-example metrics by it.
    """
    n = validation.paired("images", images, "labels", labels)
    for k in range(num_batches(n, batch_size, drop_remainder=False)):
        rows = slice(k * batch_size, (k + 1) * batch_size)
        image, label = images[rows], labels[rows]
        real = len(label)
        mask = np.ones((real,), bool)
        if pad and real < batch_size:
            fill = batch_size - real
            image = np.concatenate([image, np.zeros((fill, *image.shape[1:]), image.dtype)])
            label = np.concatenate([label, np.zeros((fill,), label.dtype)])
            mask = np.concatenate([mask, np.zeros((fill,), bool)])
        yield {"image": image, "label": label, "mask": mask}
