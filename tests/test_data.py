"""Tests for tgo_jax.data: IDX reading, the Fashion-MNIST/CIFAR loaders and batching."""
from __future__ import annotations

import gzip
import json
import math
import os
import sys
import time

import numpy as np
import pytest

from tgo_jax import data
from tgo_jax import normalization

FMNIST_STEMS = {
    "train images": "train-images-idx3-ubyte",
    "train labels": "train-labels-idx1-ubyte",
    "test images": "t10k-images-idx3-ubyte",
    "test labels": "t10k-labels-idx1-ubyte",
}
# Hosts that cannot answer: a reserved TLD (fails at name lookup) and a TEST-NET address (times out).
UNREACHABLE_HOSTS = (("tgo-offline-test.invalid", 443), ("192.0.2.1", 443))


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """IDX encoding: 0x00 0x00 <dtype code> <ndim>, big-endian uint32 dims, big-endian data."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}
    if magic is None:
        magic = (codes[array.dtype] << 8) | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_gz(path, payload: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(payload)


def tiny_fmnist(folder, n_train=6, n_test=4, seed=0):
    """Writes the four gzipped IDX files of a tiny Fashion-MNIST; returns the raw uint8 arrays."""
    rng = np.random.default_rng(seed)
    raw = {
        "train images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train labels": rng.integers(0, 10, (n_train,), dtype=np.uint8),
        "test images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test labels": rng.integers(0, 10, (n_test,), dtype=np.uint8),
    }
    os.makedirs(folder, exist_ok=True)
    for field, stem in FMNIST_STEMS.items():
        write_gz(os.path.join(folder, stem + ".gz"), idx_bytes(raw[field]))
    return raw


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


# ----------------------------------------------------------------------------------------------------
# IDX reader and Fashion-MNIST
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([7, 0, 9, 3], np.uint8),
    np.array([[-300, 2], [1000, -1]], np.int16),
    np.array([1.5, -2.25], np.float32),
])
def test_read_idx_round_trip(tmp_path, array, gz):
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    payload = idx_bytes(array)
    if gz:
        write_gz(path, payload)
    else:
        path.write_bytes(payload)
    out = data.read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_load_fashion_mnist_tiny(tmp_path):
    raw = tiny_fmnist(tmp_path)
    out = data.load_fashion_mnist(tmp_path)
    assert set(out) == {"train", "test"}
    for split in ("train", "test"):
        images, labels = out[split]
        n = raw[f"{split} images"].shape[0]
        assert images.shape == (n, 28, 28, 1) and images.dtype == np.float32
        assert images.stored.dtype == np.uint8  # held as bytes, read as float32
        assert labels.shape == (n,) and labels.dtype == np.int32
        np.testing.assert_array_equal(images[..., 0], (raw[f"{split} images"] / 255.0).astype(np.float32))
        np.testing.assert_array_equal(labels, raw[f"{split} labels"])
        assert not images.stored.flags.writeable and not labels.flags.writeable  # shared cache is protected
    assert data.load_fashion_mnist(tmp_path) is out  # decoded once per process


def test_load_fashion_mnist_rereads_rewritten_files(tmp_path):
    tiny_fmnist(tmp_path, seed=0)
    first = data.load_fashion_mnist(tmp_path)["train"][1].copy()
    raw = tiny_fmnist(tmp_path, n_train=5, seed=1)
    os.utime(tmp_path / (FMNIST_STEMS["train labels"] + ".gz"), ns=(1, 1))  # mtime surely changes
    second = data.load_fashion_mnist(tmp_path)["train"][1]
    assert second.shape == (5,) != first.shape
    np.testing.assert_array_equal(second, raw["train labels"])


def test_fashion_mnist_dir_from_env(tmp_path, monkeypatch):
    raw = tiny_fmnist(tmp_path)
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path))
    _, labels = data.load("fashion_mnist")["test"]
    np.testing.assert_array_equal(labels, raw["test labels"])


def _corrupt(folder, raw, case):
    """Damages a tiny Fashion-MNIST folder; returns (file stem, field, what is wrong) the error must name."""
    path = lambda field: os.path.join(folder, FMNIST_STEMS[field] + ".gz")  # noqa: E731
    if case == "missing file":
        os.remove(path("test labels"))
        return FMNIST_STEMS["test labels"], "test labels", "missing"
    if case == "not gzip":
        with open(path("train images"), "wb") as f:
            f.write(b"this is not a gzip stream at all")
        return FMNIST_STEMS["train images"], "train images", "gzip"
    if case == "cut gzip stream":
        with open(path("train images"), "rb") as f:
            blob = f.read()
        with open(path("train images"), "wb") as f:
            f.write(blob[: len(blob) // 2])
        return FMNIST_STEMS["train images"], "train images", "gzip"
    if case == "truncated data":
        write_gz(path("test images"), idx_bytes(raw["test images"])[:-10])
        return FMNIST_STEMS["test images"], "test images", "truncated"
    if case == "trailing bytes":
        write_gz(path("train labels"), idx_bytes(raw["train labels"]) + b"\x00")
        return FMNIST_STEMS["train labels"], "train labels", "trailing"
    if case == "truncated header":
        write_gz(path("train labels"), idx_bytes(raw["train labels"])[:6])
        return FMNIST_STEMS["train labels"], "train labels", "truncated"
    if case == "wrong magic":  # a labels file where the images belong
        write_gz(path("train images"), idx_bytes(raw["train labels"]))
        return FMNIST_STEMS["train images"], "train images", "magic number"
    if case == "count mismatch":
        write_gz(path("test labels"), idx_bytes(raw["test labels"][:-1]))
        return FMNIST_STEMS["test labels"], "test", "counts must match"
    if case == "label out of range":
        bad = raw["train labels"].copy()
        bad[1] = 10
        write_gz(path("train labels"), idx_bytes(bad))
        return FMNIST_STEMS["train labels"], "train labels", "labels in [0, 10), got values in [0, 10]"
    if case == "wrong image size":
        write_gz(path("test images"), idx_bytes(np.zeros((4, 27, 28), np.uint8)))
        return FMNIST_STEMS["test images"], "test images", "(28, 28)"
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "missing file", "not gzip", "cut gzip stream", "truncated data", "trailing bytes", "truncated header",
    "wrong magic", "count mismatch", "label out of range", "wrong image size",
])
def test_fashion_mnist_errors_name_file_and_field(tmp_path, case):
    raw = tiny_fmnist(tmp_path)
    stem, field, what = _corrupt(tmp_path, raw, case)
    with pytest.raises(ValueError) as err:
        data.load_fashion_mnist(tmp_path)
    message = str(err.value)
    assert stem in message and field in message and what in message, message


def test_read_idx_expected_magic(tmp_path):
    path = tmp_path / "labels.gz"
    write_gz(path, idx_bytes(np.array([1, 2], np.uint8)))
    assert data.read_idx(path, expected_magic=data.IDX_LABELS_MAGIC).tolist() == [1, 2]
    with pytest.raises(ValueError, match="magic number is 2049.*expected 2051"):
        data.read_idx(path, expected_magic=data.IDX_IMAGES_MAGIC)


@pytest.mark.skipif(not os.path.isdir(data.FASHION_MNIST_DEBIAN_DIR),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    out = data.load_fashion_mnist()
    info = data.dataset_info("fashion_mnist")
    for split, n in (("train", info.num_train), ("test", info.num_test)):
        images, labels = out[split]
        assert images.shape == (n, *info.shape) and images.dtype == np.float32
        assert labels.shape == (n,) and labels.dtype == np.int32
        assert np.asarray(images).min() == 0.0 and np.asarray(images).max() == 1.0
        np.testing.assert_array_equal(np.unique(labels), np.arange(10))
    # The model's normalisation constant is the train-set pixel mean.
    assert abs(float(np.asarray(out["train"][0]).mean(dtype=np.float64)) - info.mean[0]) < 1e-3


# ----------------------------------------------------------------------------------------------------
# tfds: CIFAR-10/100 and the Fashion-MNIST fallback
# ----------------------------------------------------------------------------------------------------

def test_dataset_info_and_dispatch():
    assert data.dataset_info("cifar10") == data.DatasetInfo(
        "cifar10", 10, (32, 32, 3), normalization.CIFAR10_MEAN, normalization.CIFAR10_STD, 50000, 10000)
    assert data.dataset_info("cifar100").mean == normalization.CIFAR100_MEAN
    assert data.dataset_info("cifar100").num_classes == 100
    assert data.dataset_info("fashion_mnist").std == normalization.FMNIST_STD
    with pytest.raises(ValueError, match="'mnist'"):
        data.dataset_info("mnist")
    with pytest.raises(ValueError, match="'mnist'"):
        data.load("mnist")
    with pytest.raises(ValueError, match="'cifar1000'"):
        data.load_cifar("cifar1000")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_mock_data(tmp_path, monkeypatch, name):
    tfds = pytest.importorskip("tensorflow_datasets")
    # Online as far as the loader can tell; mock_data turns the download into a no-op.
    monkeypatch.setattr(data.tfds, "_download_reachable", lambda name: True)
    with tfds.testing.mock_data(num_examples=5):
        out = data.load(name, data_dir=tmp_path)
    info = data.dataset_info(name)
    for split in ("train", "test"):
        images, labels = out[split]
        assert images.shape == (5, 32, 32, 3) and images.dtype == np.float32
        assert labels.shape == (5,) and labels.dtype == np.int32
        assert labels.min() >= 0 and labels.max() < info.num_classes
        assert images.stored.dtype == np.uint8 and images.scale == 255.0  # whole uint8 levels


def _prepare_fake_cifar10(data_dir, n_train=6, n_test=3):
    """Prepares a real ArrayRecord 'cifar10' dataset with random images, without network or TensorFlow."""
    tfds = pytest.importorskip("tensorflow_datasets")
    pil = pytest.importorskip("PIL.Image")
    from tensorflow_datasets.image_classification import cifar

    rng = np.random.default_rng(0)
    raw = {"train": (rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8), np.arange(n_train) % 10),
           "test": (rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8), (np.arange(n_test) * 3) % 10)}

    class FakeCifar10(cifar.Cifar10, skip_registration=True):
        name = "cifar10"

        def _split_generators(self, dl_manager):
            return {split: self._fake_examples(*raw[split]) for split in raw}

        def _fake_examples(self, images, labels):
            for i, (image, label) in enumerate(zip(images, labels)):
                # A PIL image is PNG-encoded by PIL; a numpy image would need TensorFlow.
                yield i, {"id": str(i), "image": pil.fromarray(image), "label": int(label)}

    FakeCifar10(data_dir=os.fspath(data_dir), file_format="array_record").download_and_prepare()
    del tfds
    return raw


def test_cifar_prepared_data_dir_reads_without_network(tmp_path, monkeypatch):
    raw = _prepare_fake_cifar10(tmp_path)

    def no_network(name):
        raise AssertionError("a prepared dataset must not probe the network")

    monkeypatch.setattr(data.tfds, "_download_reachable", no_network)
    monkeypatch.setenv(data.TFDS_DIR_ENV, str(tmp_path))  # found through the env var
    out = data.load_cifar("cifar10")
    for split in ("train", "test"):
        images, labels = out[split]
        assert images.dtype == np.float32 and labels.dtype == np.int32
        # tfds shuffles records while preparing: match each record to its source image.
        want = {(img / 255.0).astype(np.float32).tobytes(): int(lab) for img, lab in zip(*raw[split])}
        got = {img.tobytes(): int(lab) for img, lab in zip(images, labels)}
        assert len(images) == len(raw[split][0]) and got == want


def test_cifar_prepared_without_random_access_is_a_clear_error(tmp_path, monkeypatch):
    _prepare_fake_cifar10(tmp_path)
    # Mark the prepared dataset as TFRecord (what `tfds build` writes by default), which has no random access.
    (info_path,) = tmp_path.glob("cifar10/*/dataset_info.json")
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"
    info_path.write_text(json.dumps(info))
    monkeypatch.setattr(data.tfds, "_download_reachable", lambda name: pytest.fail("must not probe the network"))
    with pytest.raises(ValueError, match="prepared as .*tfrecord.*--file_format=array_record") as err:
        data.load_cifar("cifar10", data_dir=tmp_path)
    assert str(tmp_path) in str(err.value)


def test_cifar_offline_fails_fast_and_names_data_dir(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setitem(data.tfds._DOWNLOAD_HOSTS, "cifar10", UNREACHABLE_HOSTS)
    start = time.monotonic()
    with pytest.raises(data.DataUnavailableError) as err:
        data.load_cifar("cifar10", data_dir=tmp_path)
    elapsed = time.monotonic() - start
    assert elapsed < 15.0, f"offline failure took {elapsed:.1f} s; a plain tfds call retries for minutes"
    message = str(err.value)
    assert f"data_dir={tmp_path}" in message
    assert "tfds build cifar10" in message and data.TFDS_DIR_ENV in message


def test_fashion_mnist_falls_back_to_tfds(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data.fashion_mnist, "FASHION_MNIST_DEBIAN_DIR", str(tmp_path / "absent"))
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(data.tfds, "_download_reachable", lambda name: True)
    with tfds.testing.mock_data(num_examples=3):
        out = data.load_fashion_mnist(tfds_data_dir=tmp_path)
    images, labels = out["train"]
    assert images.shape == (3, 28, 28, 1) and images.dtype == np.float32
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 10


def test_fashion_mnist_missing_everywhere_says_how_to_install(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data.fashion_mnist, "FASHION_MNIST_DEBIAN_DIR", str(tmp_path / "absent"))
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setitem(data.tfds._DOWNLOAD_HOSTS, "fashion_mnist", UNREACHABLE_HOSTS)
    start = time.monotonic()
    with pytest.raises(data.DataUnavailableError) as err:
        data.load_fashion_mnist(tfds_data_dir=tmp_path)
    assert time.monotonic() - start < 15.0
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message and data.FASHION_MNIST_ENV in message


# ----------------------------------------------------------------------------------------------------
# batching
# ----------------------------------------------------------------------------------------------------

def numbered(n):
    """images whose pixels all equal the example index, so pairing with labels can be checked."""
    labels = np.arange(n, dtype=np.int32)
    images = np.broadcast_to(labels[:, None, None, None], (n, 2, 2, 1)).astype(np.float32)
    return images, labels


@pytest.mark.parametrize("n", [0, 1, 7, 8, 50])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_num_batches(n, batch_size):
    assert data.num_batches(n, batch_size, drop_remainder=True) == math.floor(n / batch_size)
    assert data.num_batches(n, batch_size, drop_remainder=False) == math.ceil(n / batch_size)


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_epoch_batches_cover_each_example_once(drop_remainder):
    images, labels = numbered(50)
    batches = list(data.epoch_batches(images, labels, 8, seed=3, epoch=0, drop_remainder=drop_remainder))
    assert len(batches) == data.num_batches(50, 8, drop_remainder)
    seen = np.concatenate([b["label"] for b in batches])
    for b in batches:
        np.testing.assert_array_equal(b["image"][:, 0, 0, 0], b["label"])  # image stays with its label
        assert b["label"].shape[0] == 8 or (not drop_remainder and b is batches[-1])
    assert len(np.unique(seen)) == len(seen)  # no example twice
    if drop_remainder:
        assert len(seen) == 48
    else:
        np.testing.assert_array_equal(np.sort(seen), labels)


def test_epoch_order_depends_only_on_seed_and_epoch():
    images, labels = numbered(64)
    order = lambda seed, epoch: np.concatenate(  # noqa: E731
        [b["label"] for b in data.epoch_batches(images, labels, 16, seed=seed, epoch=epoch)])
    np.testing.assert_array_equal(order(0, 5), order(0, 5))
    assert not np.array_equal(order(0, 5), order(0, 6))
    assert not np.array_equal(order(0, 5), order(1, 5))
    assert not np.array_equal(order(0, 0), labels)  # shuffled at all


def test_start_step_resumes_the_tail():
    images, labels = numbered(45)
    full = list(data.epoch_batches(images, labels, 6, seed=7, epoch=2, drop_remainder=False))
    for k in range(len(full) + 1):
        tail = list(data.epoch_batches(images, labels, 6, seed=7, epoch=2, start_step=k,
                                       drop_remainder=False))
        assert len(tail) == len(full) - k
        for got, want in zip(tail, full[k:]):
            np.testing.assert_array_equal(got["label"], want["label"])
            np.testing.assert_array_equal(got["image"], want["image"])


def test_batching_rejects_bad_arguments():
    images, labels = numbered(10)
    with pytest.raises(ValueError, match="start_step=5"):
        list(data.epoch_batches(images, labels, 4, seed=0, epoch=0, start_step=5))
    with pytest.raises(ValueError, match="batch_size"):
        list(data.epoch_batches(images, labels, 0, seed=0, epoch=0))
    with pytest.raises(ValueError, match="seed"):
        list(data.epoch_batches(images, labels, 2, seed=-1, epoch=0))
    with pytest.raises(ValueError, match="same leading size"):
        list(data.epoch_batches(images, labels[:9], 2, seed=0, epoch=0))
    with pytest.raises(ValueError, match="batch_size"):
        list(data.eval_batches(images, labels, -2))


@pytest.mark.parametrize("pad", [False, True])
def test_eval_batches_in_order_with_last_partial(pad):
    images, labels = numbered(10)
    batches = list(data.eval_batches(images, labels, 4, pad=pad))
    assert len(batches) == 3
    real = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(real, labels)  # dataset order, every example once
    last = batches[-1]
    if pad:
        assert all(b["image"].shape == (4, 2, 2, 1) for b in batches)
        np.testing.assert_array_equal(last["mask"], [True, True, False, False])
        assert np.all(last["image"][2:] == 0.0)
    else:
        assert last["image"].shape == (2, 2, 2, 1) and last["mask"].all()


def test_pixels_convert_per_batch_as_the_whole_array_would():
    stored = np.random.default_rng(0).integers(0, 256, (7, 3, 3, 1), dtype=np.uint8)
    images = data.Pixels(stored)
    whole = stored.astype(np.float32) / np.float32(255.0)  # the loaders' conversion before Pixels
    assert images.shape == whole.shape and images.dtype == whole.dtype and len(images) == 7 and images.ndim == 4
    for index in (np.array([4, 0, 6]), slice(2, 5), 3, (1, 2)):
        got = images[index]
        assert got.dtype == np.float32 and got.tobytes() == whole[index].tobytes()
    assert np.asarray(images).tobytes() == whole.tobytes()
    batch = next(data.eval_batches(images, np.arange(7, dtype=np.int32), 4))
    assert batch["image"].tobytes() == whole[:4].tobytes()
    frames = data.Pixels(np.array([0, 1, 2, 3], np.uint8), scale=3)  # event counts capped at 3
    np.testing.assert_array_equal(frames[:], np.array([0, 1, 2, 3], np.float32) / np.float32(3))
    with pytest.raises(TypeError, match="integers"):
        data.Pixels(whole)


def test_cifar_without_tensorflow_datasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # importing it raises ImportError
    with pytest.raises(data.DataUnavailableError, match=r"pip install 'tgo_jax\[cifar\]'"):
        data.load_cifar("cifar10")
