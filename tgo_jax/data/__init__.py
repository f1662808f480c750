"""Datasets and batching: Fashion-MNIST (IDX files), CIFAR-10/100 (tfds), DVS-CIFAR10 (AEDAT), numpy batches.

Every loader returns ``{'train': (images, labels), 'test': (images, labels)}`` with images ``[N, H, W, C]``
pixels in [0, 1] and labels int32 ``[N]``. Images are held as uint8 (a quarter of float32) in a
``Pixels`` array whose indexing returns float32: ``images[idx]`` is ``stored[idx] / 255`` (event frames:
``/ count_cap``), bit-identical to converting the whole split, so each batch is converted when it is drawn;
``np.asarray(images)`` converts all of it. Normalisation is not applied here: it is
inside the models (docs/FORMULAS.md §2, direct encoding), so attacks work on [0, 1] pixels; the constants
are in ``DATASETS[name].mean/std`` (from ``tgo_jax.normalization``) for building a model. Augmentation runs
on the device, in ``tgo_jax.augment``.

Modules:

* ``fashion_mnist``: the four gzipped IDX files of Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``), or a folder given as ``data_dir`` / ``$TGO_FASHION_MNIST_DIR``;
  without local files, tfds ``fashion_mnist`` if it is prepared or can be downloaded.
* ``tfds``: CIFAR-10/100 via ``tfds.data_source`` (ArrayRecord, no TensorFlow needed) from ``data_dir`` /
  ``$TGO_TFDS_DIR`` / the tfds default; fails within seconds offline with a ``DataUnavailableError``.
* ``dvs`` (with the ``aedat`` reader): DVS-CIFAR10 recordings integrated into event frames
  ``[N, T, H, W, 2]`` in [0, 1], cached as npz; a missing folder fails at once, naming it.
* ``batching``: shuffled epochs fixed by (seed, epoch), resumable mid-epoch; ordered evaluation batches.
* ``registry``: ``DatasetInfo`` / ``DATASETS`` and the helpers the loaders share.

Decoded arrays are cached per process and returned read-only (copy before writing in place).
"""
from __future__ import annotations

import os

from tgo_jax.data import aedat, batching, dvs, fashion_mnist, registry, tfds
from tgo_jax.data.batching import epoch_batches, epoch_permutation, eval_batches, num_batches
from tgo_jax.data.fashion_mnist import (FASHION_MNIST_DEBIAN_DIR, FASHION_MNIST_ENV, IDX_IMAGES_MAGIC,
                                        IDX_LABELS_MAGIC, load_fashion_mnist, read_idx)
from tgo_jax.data.dvs import load_dvs_cifar10
from tgo_jax.data.registry import DATASETS, DataUnavailableError, DatasetInfo, Pixels, Split
from tgo_jax.data.tfds import TFDS_DIR_ENV, load_cifar


def dataset_info(name: str, **options) -> DatasetInfo:
    """The ``DatasetInfo`` of a dataset in ``DATASETS``; for 'dvs_cifar10' ``frames``/``size`` set its shape."""
    info = registry.dataset_info(name)
    if name == dvs.NAME:
        return dvs.dataset_info(**{k: v for k, v in options.items() if k in ("frames", "size")})
    return info


def load(name: str, data_dir: str | os.PathLike | None = None, **options) -> dict[str, Split]:
    """Loads a dataset by name as ``{'train': (images, labels), 'test': (images, labels)}``.

    Args:
      name: 'fashion_mnist', 'cifar10', 'cifar100' or 'dvs_cifar10'.
      data_dir: for 'fashion_mnist' the folder of the IDX files (see ``load_fashion_mnist``); for CIFAR the
        tfds data dir (see ``load_cifar``); for 'dvs_cifar10' the folder of the class folders.
      **options: for 'dvs_cifar10', the keyword arguments of ``load_dvs_cifar10`` (frames, size, mode,
        count_cap, cache_dir, ...); other datasets take none.
    """
    registry.dataset_info(name)
    if name == dvs.NAME:
        return load_dvs_cifar10(data_dir, **options)
    if options:
        raise ValueError(f"dataset {name!r} takes no loader options, got {sorted(options)}")
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir)
    return load_cifar(name, data_dir)


def clear_cache() -> None:
    """Forgets the decoded arrays kept by the loaders."""
    fashion_mnist.clear_cache()
    tfds.clear_cache()
    dvs.clear_cache()


__all__ = [
    "DATASETS", "DataUnavailableError", "DatasetInfo", "FASHION_MNIST_DEBIAN_DIR", "FASHION_MNIST_ENV",
    "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "Pixels", "Split", "TFDS_DIR_ENV", "aedat", "batching", "clear_cache",
    "dataset_info", "dvs", "epoch_batches", "epoch_permutation", "eval_batches", "fashion_mnist", "load", "load_cifar",
    "load_dvs_cifar10", "load_fashion_mnist", "num_batches", "read_idx", "registry", "tfds",
]
