"""What the loaders share: the dataset facts (``DatasetInfo``), the unavailable-data error, the compact image
array (``Pixels``) and array helpers."""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from tgo_jax import normalization, validation

Split = tuple["Pixels", np.ndarray]  # (images [N, H, W, C], read as float32 in [0, 1]; labels [N] int32)


class DatasetInfo(NamedTuple):
    """Static facts about a dataset (the mean/std are the model's input normalisation, docs/FORMULAS.md §2)."""

    name: str
    num_classes: int
    shape: tuple[int, ...]  # one example: an image (H, W, C), or event frames (T, H, W, C)
    mean: tuple[float, ...]  # per channel, of [0, 1] pixels
    std: tuple[float, ...]
    num_train: int
    num_test: int


DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, (28, 28, 1), normalization.FMNIST_MEAN,
                                 normalization.FMNIST_STD, 60000, 10000),
    "cifar10": DatasetInfo("cifar10", 10, (32, 32, 3), normalization.CIFAR10_MEAN,
                           normalization.CIFAR10_STD, 50000, 10000),
    "cifar100": DatasetInfo("cifar100", 100, (32, 32, 3), normalization.CIFAR100_MEAN,
                            normalization.CIFAR100_STD, 50000, 10000),
    # 1000 recordings per class, split 9:1 per class; shape (T, H, W, 2) at the default T = 10, 48 × 48.
    "dvs_cifar10": DatasetInfo("dvs_cifar10", 10, (10, 48, 48, 2), normalization.EVENTS_MEAN,
                               normalization.EVENTS_STD, 9000, 1000),
}


class DataUnavailableError(RuntimeError):
    """The dataset is not on this machine and cannot be downloaded; the message says how to provide it."""


def dataset_info(name: str) -> DatasetInfo:
    """Returns the ``DatasetInfo`` of a dataset named in ``DATASETS``."""
    if name not in DATASETS:
        raise ValueError(f"dataset name {name!r} is unknown; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """``validation.labels`` with ``where`` (file, split) put in front of its message."""
    try:
        validation.labels("labels", labels, num_classes)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def to_unit_float(stored: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """Stored integers -> float32 in [0, 1] as ``stored / scale`` (uint8 pixels: pixel / 255)."""
    return stored.astype(np.float32) / np.float32(scale)


class Pixels:
    """Images held as their stored integers (uint8: a quarter of float32) and read as float32 in [0, 1].

    Indexing converts only what it picks: ``images[idx]`` / ``images[a:b]`` is the float32 array
    ``to_unit_float(stored[idx], scale)``, bit-identical to converting the whole array first (the
    conversion is elementwise), so a batch is converted when it is drawn. ``np.asarray(images)`` converts
    everything. ``shape``, ``dtype`` (float32), ``ndim`` and ``len`` are those of the float array; ``stored``
    is the integer array itself (read-only).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, stored: np.ndarray, scale: float = 255.0):
        if not np.issubdtype(stored.dtype, np.integer):
            raise TypeError(f"Pixels holds integers, got {stored.dtype}")
        self.stored, self.scale = stored, float(scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.stored.shape

    @property
    def ndim(self) -> int:
        return self.stored.ndim

    def __len__(self) -> int:
        return len(self.stored)

    def __getitem__(self, index) -> np.ndarray:
        return to_unit_float(np.asarray(self.stored[index]), self.scale)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        images = self[...]
        return images if dtype is None else images.astype(dtype)

    def __repr__(self) -> str:
        return f"Pixels(shape={self.shape}, stored={self.stored.dtype}, scale={self.scale:g})"


def freeze(images: np.ndarray | Pixels, labels: np.ndarray) -> Split:
    """Marks cached arrays read-only so one caller cannot change another's data; integer images become
    ``Pixels`` read as ``pixel / 255``."""
    if not isinstance(images, Pixels):
        images = Pixels(images)
    images.stored.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def stat_key(path: str) -> tuple[int, int]:
    """(mtime_ns, size) so that a rewritten file is read again, not served from a cache."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)
