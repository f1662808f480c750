"""Datasets and batching: Fashion-MNIST (IDX files), CIFAR-10/100 (tfds), numpy batches.

Every loader returns ``{'train': (images, labels), 'test': (images, labels)}`` with images float32
``[N, H, W, C]`` pixels in [0, 1] and labels int32 ``[N]``. Normalisation is not applied here: it is
inside the models (docs/FORMULAS.md §2, direct encoding), so attacks work on [0, 1] pixels; the constants
are in ``DATASETS[name].mean/std`` (from ``tgo_jax.normalization``) for building a model. Augmentation runs
on the device, in ``tgo_jax.augment``.

Modules:

* ``fashion_mnist``: the four gzipped IDX files of Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``), or a folder given as ``data_dir`` / ``$TGO_FASHION_MNIST_DIR``;
  without local files, tfds ``fashion_mnist`` if it is prepared or can be downloaded.
* ``tfds``: CIFAR-10/100 via ``tfds.data_source`` (ArrayRecord, no TensorFlow needed) from ``data_dir`` /
  ``$TGO_TFDS_DIR`` / the tfds default; fails within seconds offline with a ``DataUnavailableError``.
* ``batching``: shuffled epochs fixed by (seed, epoch), resumable mid-epoch; ordered evaluation batches.
* ``registry``: ``DatasetInfo`` / ``DATASETS`` and the helpers the loaders share.

Decoded arrays are cached per process and returned read-only (copy before writing in place).
"""
from __future__ import annotations

import os

from tgo_jax.data import batching, fashion_mnist, registry, tfds
from tgo_jax.data.batching import epoch_batches, epoch_permutation, eval_batches, num_batches
from tgo_jax.data.fashion_mnist import (FASHION_MNIST_DEBIAN_DIR, FASHION_MNIST_ENV, IDX_IMAGES_MAGIC,
                                        IDX_LABELS_MAGIC, load_fashion_mnist, read_idx)
from tgo_jax.data.registry import DATASETS, DataUnavailableError, DatasetInfo, Split, dataset_info
from tgo_jax.data.tfds import TFDS_DIR_ENV, load_cifar



def load(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Split]:
    """Loads a dataset by name as ``{'train': (images, labels), 'test': (images, labels)}``.

    Args:
      name: 'fashion_mnist', 'cifar10' or 'cifar100'.
      data_dir: for 'fashion_mnist' the folder of the IDX files (see ``load_fashion_mnist``); for CIFAR the
        tfds data dir (see ``load_cifar``).
    """
    dataset_info(name)
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir)
    return load_cifar(name, data_dir)


def clear_cache() -> None:
    """Forgets the decoded arrays kept by the loaders."""
    fashion_mnist.clear_cache()
    tfds.clear_cache()


__all__ = [
    "DATASETS", "DataUnavailableError", "DatasetInfo", "FASHION_MNIST_DEBIAN_DIR", "FASHION_MNIST_ENV",
    "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "Split", "TFDS_DIR_ENV", "batching", "clear_cache", "dataset_info",
    "epoch_batches", "epoch_permutation", "eval_batches", "fashion_mnist", "load", "load_cifar",
    "load_fashion_mnist", "num_batches", "read_idx", "registry", "tfds",
]
