"""Fashion-MNIST from four gzipped IDX files (Debian's ``dataset-fashion-mnist``); tfds as the fallback.

Images come out ``[N, 28, 28, 1]`` read as float32 in [0, 1] (pixel / 255; held as uint8, ``registry.Pixels``),
labels int32 ``[N]``; decoded arrays are cached per process (keyed by each file's path, mtime and size) and
returned read-only.
"""
from __future__ import annotations

import functools
import gzip
import os
import zlib

import numpy as np

from tgo_jax.data import registry, tfds

FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "TGO_FASHION_MNIST_DIR"

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
                       tfds_data_dir: str | os.PathLike | None = None) -> dict[str, registry.Split]:
    """Loads Fashion-MNIST: images [N, 28, 28, 1] in [0, 1] (pixel / 255, ``registry.Pixels``), labels int32 [N]
    in 0..9.

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
    return _read_fashion_mnist_files(tuple((p, *registry.stat_key(p)) for p in paths))


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


@functools.lru_cache(maxsize=4)
def _read_fashion_mnist_files(keyed_paths: tuple[tuple[str, int, int], ...]) -> dict[str, registry.Split]:
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
        registry.check_labels(labels, 10, f"Fashion-MNIST {split} labels: IDX file {labels_path}")
        out[split] = registry.freeze(images[..., None], labels.astype(np.int32))
    return out


def _read_field(path: str, field: str, magic: int) -> np.ndarray:
    """``read_idx`` with the Fashion-MNIST field ('train images', ...) added to its errors."""
    try:
        return read_idx(path, expected_magic=magic)
    except ValueError as e:
        raise ValueError(f"Fashion-MNIST {field}: {e}") from e


def _fashion_mnist_from_tfds(tfds_data_dir) -> dict[str, registry.Split]:
    try:
        return tfds.load_tfds("fashion_mnist", tfds_data_dir)
    except registry.DataUnavailableError as e:
        raise registry.DataUnavailableError(
            f"Fashion-MNIST not found: no IDX folder ({FASHION_MNIST_DEBIAN_DIR} is absent and "
            f"${FASHION_MNIST_ENV} is unset) and tfds cannot provide it. Install the Debian package "
            f"(`sudo apt-get install dataset-fashion-mnist`), or pass data_dir= / set ${FASHION_MNIST_ENV} "
            f"to a folder holding {', '.join(s + '.gz' for s in _FASHION_MNIST_FILES.values())}. "
            f"tfds said: {e}") from e


def clear_cache() -> None:
    """Forgets the decoded IDX arrays."""
    _read_fashion_mnist_files.cache_clear()
