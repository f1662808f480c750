"""CIFAR-10/100 (and the Fashion-MNIST fallback) through ``tfds.data_source``: ArrayRecord, no TensorFlow.

The tfds data dir is the ``data_dir`` argument, else ``$TGO_TFDS_DIR``, else the tfds default. A dataset that
is neither prepared nor downloadable fails within seconds (a plain offline tfds call retries for minutes) with
a ``DataUnavailableError`` that says how to provide it.
"""
from __future__ import annotations

import functools
import os
import socket
import threading
from typing import Any

import numpy as np

from tgo_jax.data import registry

TFDS_DIR_ENV = "TGO_TFDS_DIR"
_PROBE_TIMEOUT_S = 3.0  # socket timeout of the download-host check

# Hosts a tfds download of each dataset contacts: the tfds GCS mirror first, then the original source.
_DOWNLOAD_HOSTS = {
    "fashion_mnist": (("storage.googleapis.com", 443),
                      ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)),
    "cifar10": (("storage.googleapis.com", 443), ("www.cs.toronto.edu", 443)),
    "cifar100": (("storage.googleapis.com", 443), ("www.cs.toronto.edu", 443)),
}


def load_cifar(name: str = "cifar10", data_dir: str | os.PathLike | None = None) -> dict[str, registry.Split]:
    """Loads CIFAR-10 or CIFAR-100 via ``tfds.data_source``: images [N, 32, 32, 3] read as float32 in [0, 1],
    labels int32 [N] (CIFAR-100: the 100 fine labels).

    The tfds data dir is ``data_dir``, else ``$TGO_TFDS_DIR``, else the tfds default (``$TFDS_DATA_DIR`` or
    ``~/tensorflow_datasets``). A dataset prepared there (ArrayRecord format) is read without network; one
    that is not is downloaded only when a download host answers within a few seconds.

    Raises:
      ValueError: ``name`` is not 'cifar10'/'cifar100', or the prepared data is not random-access.
      DataUnavailableError: not prepared and no download host reachable (raised within seconds).
    """
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"CIFAR name {name!r} is unknown; expected 'cifar10' or 'cifar100'")
    return load_tfds(name, data_dir)


def load_tfds(name: str, data_dir) -> dict[str, registry.Split]:
    """Both splits of a tfds dataset named in ``registry.DATASETS``, decoded once per process."""
    if data_dir is None:
        data_dir = os.environ.get(TFDS_DIR_ENV) or None
    return _load_tfds_cached(name, None if data_dir is None else os.fspath(data_dir))


@functools.lru_cache(maxsize=4)
def _load_tfds_cached(name: str, data_dir: str | None) -> dict[str, registry.Split]:
    sources = _tfds_sources(name, data_dir)
    info = registry.DATASETS[name]
    return {split: _decode_records(src, info, f"tfds {name}/{split}") for split, src in sources.items()}


def _tfds_sources(name: str, data_dir: str | None) -> dict[str, Any]:
    """The tgo_train/test ``tfds.data_source``s, or a fast ``registry.DataUnavailableError`` when none can be had.

    Why the checks: offline, a plain ``tfds.data_source`` retries its download for minutes before failing.
    """
    tfds = _import_tfds(name)
    builder = tfds.builder(name, data_dir=data_dir)  # no file_format: a prepared one keeps its own
    if builder.is_prepared():
        _check_random_access(builder, tfds)
        download, builder_kwargs = False, None
    elif _download_reachable(name):
        download, builder_kwargs = True, {"file_format": "array_record"}  # random access needs ArrayRecord
    else:
        raise registry.DataUnavailableError(_not_prepared_message(name, data_dir, builder.data_dir))
    train, test = tfds.data_source(name, split=["train", "test"], data_dir=data_dir, download=download,
                                   builder_kwargs=builder_kwargs)
    return {"train": train, "test": test}


CIFAR_EXTRA_HINT = "pip install 'tgo_jax[cifar]'"


def _import_tfds(name: str):
    try:
        import tensorflow_datasets as tfds  # imported lazily: it is slow and only the tfds path needs it
    except ImportError as e:
        raise registry.DataUnavailableError(
            f"tfds dataset {name!r} needs tensorflow-datasets, which is not installed ({e}): "
            f"`{CIFAR_EXTRA_HINT}`") from e
    return tfds


def _check_random_access(builder, tfds) -> None:
    file_format = builder.info.file_format
    if file_format not in tfds.core.file_adapters.FileFormat.with_random_access():
        raise ValueError(
            f"tfds dataset {builder.name} at {builder.data_dir} is prepared as {file_format.value}, which "
            "tfds.data_source cannot read (it needs random access); rebuild it with "
            f"`tfds build {builder.name} --data_dir=DIR --file_format=array_record`")


def _not_prepared_message(name: str, data_dir: str | None, variant_dir: str) -> str:
    where = (f"data_dir={data_dir}" if data_dir is not None
             else f"data_dir=None (the tfds default; ${TFDS_DIR_ENV} unset)")
    hosts = ", ".join(h for h, _ in _DOWNLOAD_HOSTS[name])
    return (f"tfds dataset {name!r} is not prepared in {where}: nothing at {variant_dir}; and it "
            f"cannot be downloaded (no answer from {hosts}). On a machine with internet run "
            f"`tfds build {name} --data_dir=DIR --file_format=array_record`, copy DIR here, and pass "
            f"data_dir=DIR or set {TFDS_DIR_ENV}=DIR.")


def _download_reachable(name: str) -> bool:
    """Whether any host a tfds download of ``name`` would use accepts a TCP connection within seconds."""
    return any(_host_reachable(host, port, _PROBE_TIMEOUT_S) for host, port in _DOWNLOAD_HOSTS[name])


def _host_reachable(host: str, port: int, timeout: float) -> bool:
    """TCP connect to host:port; in a daemon thread because name lookup ignores socket timeouts."""
    answered = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def _decode_records(source, info: registry.DatasetInfo, where: str) -> registry.Split:
    """Reads every record of a data source into (images [N, H, W, C] as ``registry.Pixels``, int32 [N])."""
    n = len(source)
    images = np.empty((n, *info.shape), np.uint8)
    labels = np.empty((n,), np.int32)
    for i in range(n):  # one record at a time: random access per index is the data-source contract
        record = source[i]
        image = np.asarray(record["image"])
        if image.shape != info.shape:
            raise ValueError(f"{where}: record {i} has image shape {image.shape}, expected {info.shape}")
        images[i], labels[i] = image, record["label"]
    registry.check_labels(labels, info.num_classes, where)
    return registry.freeze(images, labels)




def clear_cache() -> None:
    """Forgets the decoded tfds arrays."""
    _load_tfds_cached.cache_clear()
