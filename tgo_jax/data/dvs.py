"""DVS-CIFAR10 (Li et al. 2017, "CIFAR10-DVS: an event-stream dataset for object classification",
Frontiers in Neuroscience 11:309): the released AEDAT recordings integrated into event frames.

Expected layout, as released (one archive per class, each unpacked into its folder)::

    <data_dir>/airplane/cifar10_airplane_0.aedat ... cifar10_airplane_999.aedat
    <data_dir>/automobile/...   bird/  cat/  deer/  dog/  frog/  horse/  ship/  truck/

``data_dir`` is the argument, else ``$TGO_DVS_CIFAR10_DIR``, else ``~/data/cifar10_dvs``. Each recording
becomes T frames by counting its events in T equal time bins on a coarser pixel grid (docs/FORMULAS.md §10);
the integrated counts are cached as one ``.npz`` per (T, size, file set) in ``cache_dir`` (argument, else
``$TGO_DVS_CACHE_DIR``, else ``~/.cache/tgo_jax``), so later runs and epochs never re-read the events.
The train/test split is per class, 9:1 in recording order (the usual practice; the release has none).

Examples come out example-major, ``[N, T, H, W, 2]`` in [0, 1] (channel 0 = OFF, 1 = ON; held as uint8 and read
as float32, ``registry.Pixels``), labels
int32 ``[N]``; the models take such a batch and feed it step by step (``tgo_jax.models.layers``).
"""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import os
import re
import sys
import tempfile

import numpy as np

from tgo_jax import validation
from tgo_jax.data import aedat, registry

NAME = "dvs_cifar10"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATA_DIR_ENV = "TGO_DVS_CIFAR10_DIR"
CACHE_DIR_ENV = "TGO_DVS_CACHE_DIR"
DEFAULT_DATA_DIR = os.path.join("~", "data", "cifar10_dvs")
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "tgo_jax")
MODES = ("counts", "binary")
EXTENSIONS = (".aedat", ".aedat2", ".aedat3", ".aedat4")
RECORDINGS_PER_CLASS = 1000  # in the release
_CACHE_VERSION = 1  # bump when the integration changes, so old caches are not read


def dataset_info(frames: int = 10, size: int = 48) -> registry.DatasetInfo:
    """The ``DatasetInfo`` of DVS-CIFAR10 as ``frames`` frames of ``size`` × ``size`` × 2 per example."""
    validation.count("frames", frames, 1)
    validation.count("size", size, 1)
    return registry.DATASETS[NAME]._replace(shape=(frames, size, size, 2))


def events_to_counts(events: aedat.Events, *, frames: int, size: int,
                     sensor_size: int = aedat.SENSOR_SIZE) -> np.ndarray:
    """Event counts [T, size, size, 2] (int32) in T equal time bins (docs/FORMULAS.md §10).

    Event i goes to bin ``k = floor(T·(t_i - t_0) / (t_1 - t_0 + 1))`` (t_0, t_1 the first and last time),
    cell ``(floor(y_i·size/S), floor(x_i·size/S))`` of the S × S sensor, channel ``p_i``: resizing by
    counting on the coarser grid keeps every event (a sum pool, exact when S/size is an integer).
    """
    validation.count("frames", frames, 1)
    validation.count("size", size, 1)
    counts = np.zeros((frames, size, size, 2), np.int32)
    if len(events.t) == 0:
        return counts
    x, y = np.asarray(events.x, np.int64), np.asarray(events.y, np.int64)
    if x.min() < 0 or y.min() < 0 or x.max() >= sensor_size or y.max() >= sensor_size:
        raise ValueError(f"events lie outside the {sensor_size}×{sensor_size} sensor: x in [{x.min()}, "
                         f"{x.max()}], y in [{y.min()}, {y.max()}]")
    t = np.asarray(events.t, np.int64)
    t0, t1 = t.min(), t.max()
    k = (frames * (t - t0)) // (t1 - t0 + 1)
    flat = ((k * size + y * size // sensor_size) * size + x * size // sensor_size) * 2 + np.asarray(events.p)
    counts.reshape(-1)[:] = np.bincount(flat, minlength=counts.size)
    return counts


def counts_to_frames(counts: np.ndarray, mode: str = "counts", count_cap: int = 8) -> registry.Pixels:
    """Event counts -> frames in [0, 1] (docs/FORMULAS.md §10), held as uint8 and read as float32.

    ``mode="counts"``: ``min(c, cap) / cap``, so one event is 1/cap of the range; ``"binary"``: 1 where at
    least one event fell, else 0.
    """
    validation.choice("mode", mode, MODES)
    validation.count("count_cap", count_cap, 1)
    if mode == "binary":
        return registry.Pixels((counts > 0).astype(np.uint8), scale=1.0)
    return registry.Pixels(np.minimum(counts, count_cap).astype(np.uint8), scale=count_cap)


def event_unit(mode: str = "counts", count_cap: int = 8) -> float:
    """The frame value of one event: ``1 / count_cap`` in 'counts' mode, 1 in 'binary' mode."""
    validation.choice("mode", mode, MODES)
    return 1.0 if mode == "binary" else 1.0 / validation.count("count_cap", count_cap, 1)


def load_dvs_cifar10(data_dir: str | os.PathLike | None = None, *, frames: int = 10, size: int = 48,
                     mode: str = "counts", count_cap: int = 8, cache_dir: str | os.PathLike | None = None,
                     classes: tuple[str, ...] = CLASSES, train_fraction: float = 0.9,
                     progress: bool = True) -> dict[str, registry.Split]:
    """Loads DVS-CIFAR10 as ``{'train': (frames, labels), 'test': (frames, labels)}``.

    Args:
      data_dir: the folder of the class folders (see the module docstring for the default).
      frames: T, the time bins per recording.
      size: frames are ``size × size`` (the sensor is 128 × 128).
      mode: 'counts' (``min(c, count_cap) / count_cap``) or 'binary' (any event).
      count_cap: the count that maps to 1.0 in 'counts' mode.
      cache_dir: where the integrated counts are kept (see the module docstring for the default).
      classes: the class folders to read (labels stay the CIFAR-10 indices); all ten by default.
      train_fraction: per class, the first ``floor(fraction · n)`` recordings (in recording-number
        order) train, the rest test.
      progress: a progress bar on stderr while integrating many recordings.

    Raises:
      DataUnavailableError: the folder or a class folder is missing or empty (within seconds, naming the
        path and what to place there).
      ValueError: a bad argument, or a recording that is not a valid AEDAT file (naming it).
    """
    validation.choice("mode", mode, MODES)
    if validation.count("count_cap", count_cap, 1) > 255:  # the cache keeps counts as uint8
        raise ValueError(f"count_cap must be an int in [1, 255], got {count_cap!r}")
    validation.in_range("train_fraction", train_fraction, 0.0, 1.0)
    folder = _data_dir(data_dir)
    recordings = find_recordings(folder, classes)
    counts, labels = _cached_counts(recordings, frames, size, _cache_dir(cache_dir), progress)
    train = split_per_class(labels, train_fraction)
    out = {}
    for split, mask in (("train", train), ("test", ~train)):
        rows = interleave_classes(labels, mask)
        out[split] = registry.freeze(counts_to_frames(counts[rows], mode, count_cap), labels[rows].copy())
    return out


def _data_dir(data_dir) -> str:
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return os.path.expanduser(os.fspath(data_dir))


def _cache_dir(cache_dir) -> str:
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
    return os.path.expanduser(os.fspath(cache_dir))


def _recording_number(name: str) -> tuple[int, str]:
    """Sort key: the last number in the file name (cifar10_cat_12 before cifar10_cat_100), then the name."""
    numbers = re.findall(r"\d+", name)
    return (int(numbers[-1]) if numbers else -1, name)


def find_recordings(folder: str, classes: tuple[str, ...] = CLASSES) -> list[tuple[str, int]]:
    """``(path, label)`` of every recording, class by class, in recording-number order.

    Raises:
      DataUnavailableError: the folder, a class folder, or the recordings of a class are missing.
    """
    for name in classes:
        validation.choice("class", name, CLASSES)
    how = (f"Place the released CIFAR10-DVS recordings there (Li et al. 2017; one archive per class, "
           f"unpacked into the folders {', '.join(c + '/' for c in CLASSES)} each holding its "
           f"{RECORDINGS_PER_CLASS} *.aedat files), or pass data_dir= / set ${DATA_DIR_ENV}.")
    if not os.path.isdir(folder):
        raise registry.DataUnavailableError(f"DVS-CIFAR10 not found: {folder} is not a folder. {how}")
    out = []
    for name in classes:
        class_dir = os.path.join(folder, name)
        files = sorted((f for f in os.listdir(class_dir) if f.lower().endswith(EXTENSIONS)),
                       key=_recording_number) if os.path.isdir(class_dir) else []
        if not files:
            zipped = os.path.exists(class_dir + ".zip")
            what = (f"{class_dir}.zip is there but not unpacked" if zipped
                    else f"{class_dir} has no *.aedat recordings")
            raise registry.DataUnavailableError(f"DVS-CIFAR10 incomplete in {folder}: {what}. {how}")
        out += [(os.path.join(class_dir, f), CLASSES.index(name)) for f in files]
    return out


def split_per_class(labels: np.ndarray, train_fraction: float = 0.9) -> np.ndarray:
    """Train mask [N]: within each class, its first ``floor(fraction · n_class)`` examples (in order)."""
    train = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        train[rows[:int(np.floor(train_fraction * len(rows)))]] = True
    return train


def interleave_classes(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rows of ``mask`` ordered as the first example of each class, then the second of each, ...: every
    prefix is close to class-balanced (``train_subset`` / ``eval_subset`` take prefixes)."""
    rows = np.flatnonzero(mask)
    rank = np.zeros(len(rows), np.int64)
    for label in np.unique(labels[rows]):
        same = labels[rows] == label
        rank[same] = np.arange(int(same.sum()))
    return rows[np.lexsort((labels[rows], rank))]


def _fingerprint(recordings: list[tuple[str, int]], frames: int, size: int) -> str:
    """Names the cache: the integration settings and every file's path, label, size and mtime."""
    h = hashlib.sha256(f"v{_CACHE_VERSION} T={frames} size={size}".encode())
    for path, label in recordings:
        h.update(f"{os.path.abspath(path)}|{label}|{registry.stat_key(path)}\n".encode())
    return h.hexdigest()[:20]


@functools.lru_cache(maxsize=2)
def _cached_counts_by_key(cache_path: str, key: str, recordings: tuple, frames: int, size: int,
                          progress: bool) -> tuple[np.ndarray, np.ndarray]:
    if os.path.isfile(cache_path):
        with np.load(cache_path) as z:
            if str(z["key"]) == key:
                return z["counts"], z["labels"]
    counts, labels = _integrate_all(list(recordings), frames, size, progress)
    _write_atomic(cache_path, key=np.array(key), counts=counts, labels=labels)
    return counts, labels


def _cached_counts(recordings, frames, size, cache_dir, progress) -> tuple[np.ndarray, np.ndarray]:
    """(counts uint8 [N, T, size, size, 2] clipped at 255, labels int32 [N]), from the cache if it holds them."""
    validation.count("frames", frames, 1)
    validation.count("size", size, 1)
    key = _fingerprint(recordings, frames, size)
    cache_path = os.path.join(cache_dir, f"{NAME}_T{frames}_{size}x{size}_{key}.npz")
    return _cached_counts_by_key(cache_path, key, tuple(recordings), frames, size, progress)


def _integrate_one(path: str, frames: int, size: int) -> np.ndarray:
    counts = events_to_counts(aedat.read_aedat(path), frames=frames, size=size)
    return np.minimum(counts, 255).astype(np.uint8)


def _integrate_all(recordings, frames, size, progress) -> tuple[np.ndarray, np.ndarray]:
    """Reads and integrates every recording (threads: numpy decoding releases the GIL)."""
    counts = np.empty((len(recordings), frames, size, size, 2), np.uint8)
    labels = np.array([label for _, label in recordings], np.int32)
    report = _progress(len(recordings)) if progress and len(recordings) >= 100 else None
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        jobs = pool.map(lambda rec: _integrate_one(rec[0], frames, size), recordings)
        for i, c in enumerate(jobs):
            counts[i] = c
            if report is not None:
                report(i + 1)
    return counts, labels


def _progress(total: int):
    """``report(done)``: a bar on a terminal, else a line on stderr at every tenth of the work (logs)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, desc="DVS-CIFAR10 events -> frames", unit="rec", file=sys.stderr)

        def report(done):
            bar.update(done - bar.n)
            if done == total:
                bar.close()
        return report

    def report(done):
        if done * 10 // total > (done - 1) * 10 // total:
            print(f"DVS-CIFAR10 events -> frames: {done}/{total} recordings", file=sys.stderr, flush=True)
    return report


def _write_atomic(path: str, **arrays) -> None:
    """np.savez_compressed to a temporary file renamed into place: a crash leaves no half-written cache."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def clear_cache() -> None:
    """Forgets the integrated counts kept in memory (the files in ``cache_dir`` stay)."""
    _cached_counts_by_key.cache_clear()
