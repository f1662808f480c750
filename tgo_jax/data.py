"""Datasets, batching and augmentation: Fashion-MNIST (IDX files), CIFAR-10/100 (tfds), numpy batches.

Every loader returns ``{'train': (images, labels), 'test': (images, labels)}`` with images float32
``[N, H, W, C]`` pixels in [0, 1] and labels int32 ``[N]``. Normalisation is not applied here: it is
inside the models (docs/FORMULAS.md §2, direct encoding), so attacks work on [0, 1] pixels; the constants
are in ``DATASETS[name].mean/std`` for building a model.

Where the data comes from:

* Fashion-MNIST: the four gzipped IDX files of Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``), or a folder given as ``data_dir`` / ``$TGO_FASHION_MNIST_DIR``;
  without local files, tfds ``fashion_mnist`` if it is prepared or can be downloaded.
* CIFAR-10/100: ``tfds.data_source`` (ArrayRecord, no TensorFlow needed) from ``data_dir`` /
  ``$TGO_TFDS_DIR`` / the tfds default. A dataset that is neither prepared nor downloadable fails within
  seconds (a plain offline tfds call retries for minutes) with a ``DataUnavailableError`` that says how to
  provide it.

Decoded arrays are cached per process and returned read-only (copy before writing in place).
"""
from __future__ import annotations

import functools
import gzip
import os
import socket
import threading
import zlib
from typing import Any, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tgo_jax.models import layers

Split = tuple[np.ndarray, np.ndarray]  # (images [N, H, W, C] float32 in [0, 1], labels [N] int32)

FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "TGO_FASHION_MNIST_DIR"
TFDS_DIR_ENV = "TGO_TFDS_DIR"
_PROBE_TIMEOUT_S = 3.0  # socket timeout of the download-host check


class DatasetInfo(NamedTuple):
    """Static facts about a dataset (the mean/std are the model's input normalisation, docs/FORMULAS.md §2)."""

    name: str
    num_classes: int
    shape: tuple[int, int, int]  # one image, (H, W, C)
    mean: tuple[float, ...]  # per channel, of [0, 1] pixels
    std: tuple[float, ...]
    num_train: int
    num_test: int


DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 10, (28, 28, 1), layers.FMNIST_MEAN, layers.FMNIST_STD, 60000, 10000),
    "cifar10": DatasetInfo(
        "cifar10", 10, (32, 32, 3), layers.CIFAR10_MEAN, layers.CIFAR10_STD, 50000, 10000),
    "cifar100": DatasetInfo(
        "cifar100", 100, (32, 32, 3), layers.CIFAR100_MEAN, layers.CIFAR100_STD, 50000, 10000),
}

# Hosts a tfds download of each dataset contacts: the tfds GCS mirror first, then the original source.
_DOWNLOAD_HOSTS = {
    "fashion_mnist": (("storage.googleapis.com", 443),
                      ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)),
    "cifar10": (("storage.googleapis.com", 443), ("www.cs.toronto.edu", 443)),
    "cifar100": (("storage.googleapis.com", 443), ("www.cs.toronto.edu", 443)),
}


class DataUnavailableError(RuntimeError):
    """The dataset is not on this machine and cannot be downloaded; the message says how to provide it."""


def dataset_info(name: str) -> DatasetInfo:
    """Returns the ``DatasetInfo`` of 'fashion_mnist', 'cifar10' or 'cifar100'."""
    if name not in DATASETS:
        raise ValueError(f"dataset name {name!r} is unknown; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


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
    _read_fashion_mnist_files.cache_clear()
    _load_tfds_cached.cache_clear()


# ----------------------------------------------------------------------------------------------------
# IDX files (Fashion-MNIST)
# ----------------------------------------------------------------------------------------------------

IDX_IMAGES_MAGIC = 0x00000803  # 2051: unsigned bytes, 3 dims [N, rows, cols]
IDX_LABELS_MAGIC = 0x00000801  # 2049: unsigned bytes, 1 dim [N]
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FASHION_MNIST_FILES = {  # (split, field) -> file stem; read as '<stem>.gz' or, failing that, '<stem>'
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None) -> np.ndarray:
    """Reads one IDX file (gzipped when the name ends in '.gz') into a native-endian numpy array.

    IDX layout: magic ``0x00 0x00 <dtype code> <ndim>``, then ndim big-endian uint32 dims, then the
    big-endian data, ``prod(dims) * itemsize`` bytes.

    Raises:
      ValueError: naming the file and the field, when the file is missing, is not valid gzip, has a
        header or magic number that is wrong, or holds fewer or more data bytes than its dims say.
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"IDX file {path}: header truncated ({len(raw)} bytes, need 4 for the magic number)")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"IDX file {path}: magic number is {magic} (0x{magic:08x}), "
                         f"expected {expected_magic} (0x{expected_magic:08x})")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"IDX file {path}: magic number 0x{magic:08x} is not an IDX magic "
                         f"(expected 0x0000 then a dtype code in {sorted(_IDX_DTYPES)})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"IDX file {path}: dims truncated ({len(raw)} bytes, header needs {header_len})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header_len
    if got != want:
        kind = "truncated" if got < want else "has trailing bytes"
        raise ValueError(f"IDX file {path}: data {kind}: {got} bytes, dims {dims} need {want}")
    return np.frombuffer(raw, dtype, offset=header_len).reshape(dims).astype(dtype.newbyteorder("="))


def _read_bytes(path: str) -> bytes:
    """File contents, gunzipped for '.gz'; errors name the file."""
    if not os.path.isfile(path):
        raise ValueError(f"IDX file {path} is missing")
    if not path.endswith(".gz"):
        with open(path, "rb") as f:
            return f.read()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a cut stream is EOFError
        raise ValueError(f"IDX file {path}: corrupt gzip stream ({e})") from e


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *,
                       tfds_data_dir: str | os.PathLike | None = None) -> dict[str, Split]:
    """Loads Fashion-MNIST: images float32 [N, 28, 28, 1] in [0, 1] (pixel / 255), labels int32 [N] in 0..9.

    The IDX folder is ``data_dir``, else ``$TGO_FASHION_MNIST_DIR``, else Debian's
    ``/usr/share/datasets/fashion-mnist`` when it exists. With none of these, the data comes from tfds
    ``fashion_mnist`` in ``tfds_data_dir`` / ``$TGO_TFDS_DIR`` (prepared, or downloadable).

    Raises:
      ValueError: a file of the chosen folder is missing or bad (naming the file and field), or image and
        label counts differ, or a label is outside 0..9.
      DataUnavailableError: no local files and tfds cannot provide the data.
    """
    folder = _fashion_mnist_dir(data_dir)
    if folder is None:
        return _fashion_mnist_from_tfds(tfds_data_dir)
    paths = tuple(_idx_path(folder, stem) for stem in _FASHION_MNIST_FILES.values())
    return _read_fashion_mnist_files(tuple((p, *_stat_key(p)) for p in paths))


def _fashion_mnist_dir(data_dir) -> str | None:
    """The IDX folder to read: the argument, the env var, or the Debian folder if present; else None."""
    if data_dir is not None:
        return os.fspath(data_dir)
    if os.environ.get(FASHION_MNIST_ENV):
        return os.environ[FASHION_MNIST_ENV]
    if os.path.isdir(FASHION_MNIST_DEBIAN_DIR):
        return FASHION_MNIST_DEBIAN_DIR
    return None


def _idx_path(folder: str, stem: str) -> str:
    """'<folder>/<stem>.gz' or, when only that exists, the uncompressed '<folder>/<stem>'."""
    gz, plain = os.path.join(folder, stem + ".gz"), os.path.join(folder, stem)
    return plain if not os.path.exists(gz) and os.path.exists(plain) else gz


def _stat_key(path: str) -> tuple[int, int]:
    """(mtime_ns, size) so that a rewritten file is read again, not served from the cache."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _read_fashion_mnist_files(keyed_paths: tuple[tuple[str, int, int], ...]) -> dict[str, Split]:
    """Decodes and checks the four files, keyed by (path, mtime_ns, size) for the per-process cache."""
    paths = dict(zip(_FASHION_MNIST_FILES, (k[0] for k in keyed_paths)))
    out = {}
    for split in ("train", "test"):
        images_path, labels_path = paths[(split, "images")], paths[(split, "labels")]
        images = _read_field(images_path, f"{split} images", IDX_IMAGES_MAGIC)
        labels = _read_field(labels_path, f"{split} labels", IDX_LABELS_MAGIC)
        if images.shape[1:] != (28, 28):
            raise ValueError(f"Fashion-MNIST {split} images: IDX file {images_path} has image dims "
                             f"{images.shape[1:]}, expected (28, 28)")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"Fashion-MNIST {split} split: {images_path} holds {images.shape[0]} images but "
                             f"{labels_path} holds {labels.shape[0]} labels; the counts must match")
        _check_labels(labels, 10, f"Fashion-MNIST {split} labels: IDX file {labels_path}")
        out[split] = _freeze(_to_unit_float(images[..., None]), labels.astype(np.int32))
    return out


def _read_field(path: str, field: str, magic: int) -> np.ndarray:
    """``read_idx`` with the Fashion-MNIST field ('train images', ...) added to its errors."""
    try:
        return read_idx(path, expected_magic=magic)
    except ValueError as e:
        raise ValueError(f"Fashion-MNIST {field}: {e}") from e


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(f"{where}: label {int(bad)} is out of range, expected 0..{num_classes - 1}")


def _to_unit_float(images_u8: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] as pixel / 255."""
    return images_u8.astype(np.float32) / np.float32(255.0)


def _freeze(images: np.ndarray, labels: np.ndarray) -> Split:
    """Marks cached arrays read-only so one caller cannot change another's data."""
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _fashion_mnist_from_tfds(tfds_data_dir) -> dict[str, Split]:
    try:
        return _load_tfds("fashion_mnist", tfds_data_dir)
    except DataUnavailableError as e:
        raise DataUnavailableError(
            f"Fashion-MNIST not found: no IDX folder ({FASHION_MNIST_DEBIAN_DIR} is absent and "
            f"${FASHION_MNIST_ENV} is unset) and tfds cannot provide it. Install the Debian package "
            f"(`sudo apt-get install dataset-fashion-mnist`), or pass data_dir= / set ${FASHION_MNIST_ENV} "
            f"to a folder holding {', '.join(s + '.gz' for s in _FASHION_MNIST_FILES.values())}. "
            f"tfds said: {e}") from e


# ----------------------------------------------------------------------------------------------------
# tfds (CIFAR-10/100, and the Fashion-MNIST fallback)
# ----------------------------------------------------------------------------------------------------

def load_cifar(name: str = "cifar10", data_dir: str | os.PathLike | None = None) -> dict[str, Split]:
    """Loads CIFAR-10 or CIFAR-100 via ``tfds.data_source``: images float32 [N, 32, 32, 3] in [0, 1],
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
    return _load_tfds(name, data_dir)


def _load_tfds(name: str, data_dir) -> dict[str, Split]:
    if data_dir is None:
        data_dir = os.environ.get(TFDS_DIR_ENV) or None
    return _load_tfds_cached(name, None if data_dir is None else os.fspath(data_dir))


@functools.lru_cache(maxsize=4)
def _load_tfds_cached(name: str, data_dir: str | None) -> dict[str, Split]:
    sources = _tfds_sources(name, data_dir)
    info = DATASETS[name]
    return {split: _decode_records(src, info, f"tfds {name}/{split}") for split, src in sources.items()}


def _tfds_sources(name: str, data_dir: str | None) -> dict[str, Any]:
    """The tgo_train/test ``tfds.data_source``s, or a fast ``DataUnavailableError`` when none can be had.

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
        raise DataUnavailableError(_not_prepared_message(name, data_dir, builder.data_dir))
    train, test = tfds.data_source(name, split=["train", "test"], data_dir=data_dir, download=download,
                                   builder_kwargs=builder_kwargs)
    return {"train": train, "test": test}


def _import_tfds(name: str):
    try:
        import tensorflow_datasets as tfds  # imported lazily: it is slow and only the tfds path needs it
    except ImportError as e:
        raise DataUnavailableError(
            f"tfds dataset {name!r} needs tensorflow-datasets, which failed to import ({e}); "
            "`pip install tensorflow-datasets importlib_resources`") from e
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


def _decode_records(source, info: DatasetInfo, where: str) -> Split:
    """Reads every record of a data source into (float32 [N, H, W, C] in [0, 1], int32 [N])."""
    n = len(source)
    images = np.empty((n, *info.shape), np.uint8)
    labels = np.empty((n,), np.int32)
    for i in range(n):  # one record at a time: random access per index is the data-source contract
        record = source[i]
        image = np.asarray(record["image"])
        if image.shape != info.shape:
            raise ValueError(f"{where}: record {i} has image shape {image.shape}, expected {info.shape}")
        images[i], labels[i] = image, record["label"]
    _check_labels(labels, info.num_classes, where)
    return _freeze(_to_unit_float(images), labels)


# ----------------------------------------------------------------------------------------------------
# Batching (numpy, host side)
# ----------------------------------------------------------------------------------------------------

def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Batches in an epoch of n examples: ``floor(n / B)`` dropping the remainder, else ``ceil(n / B)``."""
    _check_count("n", n, minimum=0)
    _check_count("batch_size", batch_size, minimum=1)
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_permutation(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a permutation of 0..n-1 that depends only on (seed, epoch)."""
    _check_count("n", n, minimum=0)
    _check_count("seed", seed, minimum=0)
    _check_count("epoch", epoch, minimum=0)
    return np.random.default_rng((seed, epoch)).permutation(n)


def epoch_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, *, seed: int, epoch: int,
                  start_step: int = 0, drop_remainder: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Yields the shuffled batches ``{'image': [B, ...], 'label': [B]}`` of one epoch.

    Batch k holds examples ``perm[k·B:(k+1)·B]`` with ``perm = epoch_permutation(N, seed, epoch)``, so the
    order is fixed by (seed, epoch) and a run resumed at step k of the epoch (``start_step=k``) yields
    exactly the batches k, k+1, ... it would have seen. With ``drop_remainder`` the last ``N mod B``
    examples of the permutation are skipped (a different set each epoch); otherwise the last batch is short.
    """
    n = _check_pair(images, labels)
    steps = num_batches(n, batch_size, drop_remainder)
    _check_count("start_step", start_step, minimum=0)
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
    n = _check_pair(images, labels)
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


def _check_count(field: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{field} must be an int >= {minimum}, got {value!r}")


def _check_pair(images: np.ndarray, labels: np.ndarray) -> int:
    if np.ndim(labels) != 1:
        raise ValueError(f"labels must be [N] (rank 1), got shape {np.shape(labels)}")
    if np.ndim(images) < 1 or np.shape(images)[0] != np.shape(labels)[0]:
        raise ValueError(f"images and labels must have the same leading size N, got shapes "
                         f"{np.shape(images)} and {np.shape(labels)}")
    return int(np.shape(labels)[0])


# ----------------------------------------------------------------------------------------------------
# Augmentation (jax, runs inside the jitted train step)
# ----------------------------------------------------------------------------------------------------

def augment(key: jax.Array, images: jax.Array, *, crop_padding: int = 4, flip: bool = True) -> jax.Array:
    """Standard CIFAR augmentation: random crop after zero padding, then random horizontal flip.

    Per example b, with offsets ``(dy, dx) ~ U{0..2p}²`` and ``f ~ Bernoulli(½)`` drawn from ``key``:
    ``crop[b, i, j] = pad_p(x)[b, i + dy, j + dx]`` and ``out[b, i, j] = crop[b, i, W-1-j]`` if f else
    ``crop[b, i, j]``. Padding is with 0 (black, in pixel space: the models normalise inside). Shapes,
    dtype and the [0, 1] range are kept. Pure and jittable (``crop_padding`` and ``flip`` are static).

    Args:
      key: PRNG key.
      images: [B, H, W, C] float pixels.
      crop_padding: p, pixels of zero padding on each side before the crop; 0 turns cropping off.
      flip: whether to flip each image left-right with probability ½.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C] (rank 4), got shape {images.shape}")
    _check_count("crop_padding", crop_padding, minimum=0)
    crop_key, flip_key = jax.random.split(key)
    if crop_padding:
        images = random_crop(crop_key, images, crop_padding)
    if flip:
        images = random_flip(flip_key, images)
    return images


def random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    """Zero-pads H and W by ``padding`` and crops each image back to [H, W] at a uniform random offset."""
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)  # [B, (dy, dx)]

    def crop_one(image, offset):
        return lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop_one)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Flips each image left-right (along W) with probability ½."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


__all__ = [
    "DATASETS", "DataUnavailableError", "DatasetInfo", "FASHION_MNIST_DEBIAN_DIR", "FASHION_MNIST_ENV",
    "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "TFDS_DIR_ENV", "augment", "clear_cache", "dataset_info",
    "epoch_batches", "epoch_permutation", "eval_batches", "load", "load_cifar", "load_fashion_mnist",
    "num_batches", "random_crop", "random_flip", "read_idx",
]
