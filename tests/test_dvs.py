"""DVS-CIFAR10 path end to end: AEDAT files -> event frames -> models -> frame and event attacks -> programs.

Synthetic recordings in the released layout (class folders of AEDAT 2.0 files) stand in for the data set:
2 classes × 3 recordings, 16 × 16 frames, T = 2, the small net.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tgo_jax import attacks, augment, data, models
from tgo_jax.data import aedat, dvs
from tgo_train import config_check, robustness, train
from tgo_train.configs import dvs as dvs_config
from tests.conftest import tiny_model

CLASSES = ("airplane", "automobile")
T, SIZE = 2, 16


def synthetic_events(label: int, seed: int, n: int = 600) -> aedat.Events:
    """Events of one recording: class 0 fires in the left half of the sensor, class 1 in the right half."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 64, n) + 64 * label
    return aedat.Events(np.sort(rng.integers(0, 2_000_000, n)), x, rng.integers(0, 128, n), rng.integers(0, 2, n))


def write_dataset(folder, per_class: int = 3, version: str = "2.0") -> str:
    """Class folders of AEDAT recordings named as in the release (cifar10_<class>_<i>.aedat)."""
    for label, name in enumerate(CLASSES):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i in range(per_class):
            aedat.write_aedat(os.path.join(folder, name, f"cifar10_{name}_{i}.aedat"),
                              synthetic_events(label, 10 * label + i), version)
    return str(folder)


def load_tiny(folder, cache, **kw):
    return data.load("dvs_cifar10", str(folder), frames=T, size=SIZE, classes=CLASSES, cache_dir=str(cache), **kw)


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


# ----------------------------------------------------------------------------------------------------
# AEDAT files
# ----------------------------------------------------------------------------------------------------

def test_aedat2_bit_layout_by_hand(tmp_path):
    # DVS128 address: polarity bit 0, column bits 1-7, row bits 8-14; bit 15 marks an external event.
    words = [(5 << 8) | (9 << 1) | 1, 100, (0 << 8) | (127 << 1) | 0, 250, 0x8000 | 3, 300]
    path = tmp_path / "hand.aedat"
    path.write_bytes(b"#!AER-DAT2.0\r\n# created by hand\r\n" + np.array(words, ">u4").tobytes())
    ev = aedat.read_aedat(path)
    np.testing.assert_array_equal(ev.t, [100, 250])  # the external event is dropped
    np.testing.assert_array_equal(ev.x, [127 - 5, 127 - 0])  # upright: x = 127 - row
    np.testing.assert_array_equal(ev.y, [127 - 9, 127 - 127])  # y = 127 - column
    np.testing.assert_array_equal(ev.p, [0, 1])  # p = 1 - bit 0


def test_aedat31_packets_by_hand(tmp_path):
    header = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                       ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
    special = np.array([(0, 1, 8, 4, 0, 1, 1, 1)], header).tobytes() + np.zeros(2, "<u4").tobytes()
    polarity = np.array([(1, 1, 8, 4, 1, 2, 2, 1)], header).tobytes() + np.array(
        [(7 << 17) | (3 << 2) | (1 << 1) | 1, 40, (2 << 17) | (1 << 2) | 0, 50], "<u4").tobytes()  # 2nd invalid
    path = tmp_path / "v3.aedat"
    path.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n" + special + polarity)
    ev = aedat.read_aedat(path)
    assert ev.t.tolist() == [(1 << 31) | 40] and ev.x.tolist() == [7] and ev.y.tolist() == [3]
    assert ev.p.tolist() == [1]


@pytest.mark.parametrize("version", ["2.0", "3.1"])
def test_aedat_round_trip(tmp_path, version):
    ev = synthetic_events(1, 0)
    aedat.write_aedat(tmp_path / "r.aedat", ev, version)
    for want, got in zip(ev, aedat.read_aedat(tmp_path / "r.aedat")):
        np.testing.assert_array_equal(got, want)


def test_aedat_errors_name_the_file(tmp_path):
    bad = tmp_path / "cut.aedat"
    bad.write_bytes(b"#!AER-DAT2.0\r\n" + b"\x00" * 13)
    with pytest.raises(ValueError, match=f"{bad}.*truncated"):
        aedat.read_aedat(bad)
    other = tmp_path / "text.aedat"
    other.write_bytes(b"hello")
    with pytest.raises(ValueError, match=f"{other}.*not an AEDAT file"):
        aedat.read_aedat(other)
    v4 = tmp_path / "v4.aedat"
    v4.write_bytes(b"#!AER-DAT4.0\r\n")
    with pytest.raises(ValueError, match=f"{v4}.*truncated"):
        aedat.read_aedat(v4)
    v5 = tmp_path / "v5.aedat"
    v5.write_bytes(b"#!AER-DAT5.0\r\n")
    with pytest.raises(ValueError, match="version 5.0 is not supported"):
        aedat.read_aedat(v5)


# AEDAT 4.0, written by hand: FlatBuffers are little-endian tables reached through offsets, each table
# starting with an int32 back-offset to its vtable (uint16 vtable size, uint16 table size, uint16 per field).

def v4_event_packet(events: aedat.Events) -> bytes:
    """A size-prefixed ``EventPacket`` FlatBuffer (identifier EVTS): root offset, identifier, vtable, table,
    then the vector of 16-byte events (int64 t, int16 x, int16 y, bool on, 3 bytes padding)."""
    elements = np.zeros(len(events.t), aedat.V4_EVENT)
    for name, field in zip(("t", "x", "y", "on"), events):
        elements[name] = field
    root, vtable = (16).to_bytes(4, "little") + b"EVTS", np.array([6, 8, 4], "<u2").tobytes() + b"\0\0"
    table = (16 - 8).to_bytes(4, "little", signed=True) + (8).to_bytes(4, "little")  # vector at 20 + 8
    body = root + vtable + table + b"\0" * 4 + len(elements).to_bytes(4, "little") + elements.tobytes()
    return len(body).to_bytes(4, "little") + body


def v4_io_header(compression: int, data_table: int = -1) -> bytes:
    """An ``IOHeader`` FlatBuffer: compression (int32), data-table offset (int64), XML description."""
    text = b'<dv version="2.0"><node name="outInfo" path="/mainloop/output/outInfo/"/></dv>'
    vtable = np.array([10, 20, 4, 8, 16], "<u2").tobytes() + b"\0" * 6  # fields at table + 4, 8, 16
    table = ((24 - 8).to_bytes(4, "little", signed=True) + compression.to_bytes(4, "little")
             + data_table.to_bytes(8, "little", signed=True) + (4).to_bytes(4, "little"))
    return (24).to_bytes(4, "little") + b"IOHE" + vtable + table + len(text).to_bytes(4, "little") + text + b"\0"


def v4_file(packets: list[tuple[int, bytes]], compression: int = 0, data_table: bool = False) -> bytes:
    header = v4_io_header(compression)
    body = b"".join(i.to_bytes(4, "little") + len(p).to_bytes(4, "little") + p for i, p in packets)
    if data_table:  # a trailing file data table, past the offset the header gives
        header = v4_io_header(compression, len(aedat.V4_MAGIC) + 4 + len(header) + len(body))
        body += b"\x01" * 40
    return aedat.V4_MAGIC + len(header).to_bytes(4, "little") + header + body


def test_aedat4_event_packets(tmp_path):
    first, second = synthetic_events(0, 1, n=5), synthetic_events(1, 2, n=7)
    other = (2).to_bytes(4, "little") + b"\0\0\0\0FRME" + b"\0" * 8  # a frame packet: skipped
    path = tmp_path / "v4.aedat4"
    path.write_bytes(v4_file([(0, v4_event_packet(first)), (1, other), (0, v4_event_packet(second))],
                             data_table=True))
    ev = aedat.read_aedat(path)
    for want_a, want_b, got in zip(first, second, ev):
        np.testing.assert_array_equal(got, np.concatenate([want_a, want_b]))
        assert got.dtype == np.int64


def test_aedat4_compressed_without_its_package_names_it(tmp_path, monkeypatch):
    for module in ("lz4", "lz4.frame", "zstandard"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    for compression, package in ((1, "lz4"), (3, "zstandard")):
        path = tmp_path / f"c{compression}.aedat4"
        path.write_bytes(v4_file([(0, b"compressed bytes")], compression=compression))
        with pytest.raises(ValueError, match=f"{path}.*pip install {package}"):
            aedat.read_aedat(path)


# ----------------------------------------------------------------------------------------------------
# events -> frames
# ----------------------------------------------------------------------------------------------------

def test_events_to_counts_by_hand():
    # Times 0..99: bins of 50; sensor 128 -> 4 cells of 32 pixels.
    ev = aedat.Events(t=np.array([0, 10, 49, 50, 99]), x=np.array([0, 31, 127, 64, 64]),
                      y=np.array([0, 0, 127, 32, 32]), p=np.array([1, 1, 0, 0, 0]))
    c = dvs.events_to_counts(ev, frames=2, size=4)
    assert c.shape == (2, 4, 4, 2) and c.sum() == 5
    assert c[0, 0, 0, 1] == 2 and c[0, 3, 3, 0] == 1 and c[1, 1, 2, 0] == 2
    frames = dvs.counts_to_frames(c, "counts", count_cap=2)
    assert frames[0, 0, 0, 1] == 1.0 and frames[0, 3, 3, 0] == 0.5
    np.testing.assert_array_equal(dvs.counts_to_frames(c, "binary"), (c > 0).astype(np.float32))
    assert dvs.event_unit("counts", 2) == 0.5 and dvs.event_unit("binary") == 1.0
    with pytest.raises(ValueError, match="mode"):
        dvs.counts_to_frames(c, "log")


def test_loader_split_cache_and_modes(tmp_path, monkeypatch):
    folder = write_dataset(tmp_path / "data")
    out = load_tiny(folder, tmp_path / "cache")
    images, labels = out["train"]
    assert images.shape == (4, T, SIZE, SIZE, 2) and images.dtype == np.float32
    assert labels.tolist() == [0, 1, 0, 1]  # 2 of 3 per class (floor of 0.9·3), classes interleaved
    assert out["test"][1].tolist() == [0, 1] and out["test"][0].shape == (2, T, SIZE, SIZE, 2)
    assert images.stored.dtype == np.uint8  # counts held as bytes, read as float32 frames
    assert 0.0 <= np.asarray(images).min() and np.asarray(images).max() <= 1.0
    # The frames hold the class: class 0 left half, class 1 right half (x is the W axis).
    assert images[0][..., SIZE // 2:, :].sum() == 0 and images[1][..., :SIZE // 2, :].sum() == 0
    (cache_file,) = os.listdir(tmp_path / "cache")
    assert cache_file.startswith(f"dvs_cifar10_T{T}_{SIZE}x{SIZE}_") and cache_file.endswith(".npz")
    # A second process (cleared memory) reads the cache and no event file; binary frames come from it too.
    data.clear_cache()
    monkeypatch.setattr(aedat, "read_aedat", lambda path: pytest.fail(f"re-read {path}"))
    binary = load_tiny(folder, tmp_path / "cache", mode="binary")
    np.testing.assert_array_equal(binary["train"][0], (np.asarray(images) > 0).astype(np.float32))
    monkeypatch.undo()
    # A rewritten recording invalidates the cache.
    path = os.path.join(folder, "airplane", "cifar10_airplane_0.aedat")
    aedat.write_aedat(path, synthetic_events(1, 99))
    os.utime(path, ns=(1, 1))
    data.clear_cache()
    again = load_tiny(folder, tmp_path / "cache")["train"][0]
    assert again[0][..., SIZE // 2:, :].sum() > 0
    assert len(os.listdir(tmp_path / "cache")) == 2


def test_offline_fails_fast_naming_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(dvs.DATA_DIR_ENV, str(missing))
    start = time.monotonic()
    with pytest.raises(data.DataUnavailableError) as err:
        data.load("dvs_cifar10")
    assert time.monotonic() - start < 5.0
    message = str(err.value)
    assert str(missing) in message and "airplane/" in message and "truck/" in message and ".aedat" in message
    assert dvs.DATA_DIR_ENV in message
    folder = write_dataset(tmp_path / "data", per_class=1)  # airplane and automobile only
    (tmp_path / "data" / "bird.zip").write_bytes(b"")
    with pytest.raises(data.DataUnavailableError, match="bird.zip is there but not unpacked"):
        data.load("dvs_cifar10", folder, cache_dir=str(tmp_path / "cache"))


# ----------------------------------------------------------------------------------------------------
# models and augmentation
# ----------------------------------------------------------------------------------------------------

def frame_model():
    """The tests' tiny net on 2-channel frames, narrower; a low threshold so that an untrained net fires."""
    return tiny_model(num_classes=10, num_steps=T, in_channels=2, channels=(4,), hidden=8,
                      mean=(0.0, 0.0), std=(1.0, 1.0), threshold=0.2)


def test_event_frames_feed_the_model_step_by_step():
    model = frame_model()
    frames = jax.random.bernoulli(jax.random.PRNGKey(0), 0.3, (3, T, SIZE, SIZE, 2)).astype(jnp.float32)
    variables = jax.jit(model.init)({"params": jax.random.PRNGKey(1)}, frames)
    apply = jax.jit(model.apply)
    # The same frame at every step is direct encoding of that frame.
    still = jnp.broadcast_to(frames[:, :1], frames.shape)
    direct = apply(variables, frames[:, 0])
    np.testing.assert_allclose(apply(variables, still), direct, atol=1e-6)
    assert float(jnp.abs(direct).max()) > 0  # the net fires
    # Step t sees frame t: the logits of step 0 do not depend on frame 1 (no look-ahead), step 1's do.
    changed = frames.at[:, 1].set(1.0 - frames[:, 1])
    a, b = apply(variables, frames), apply(variables, changed)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    assert float(jnp.abs(a[1] - b[1]).max()) > 0
    with pytest.raises(ValueError, match="T = 3.*num_steps = 2"):
        model.apply(variables, jnp.zeros((1, 3, SIZE, SIZE, 2)))


@pytest.mark.parametrize("arch", ["vgg11", "wrn16_4"])
def test_paper_models_take_two_channel_frames(arch):
    model = models.create(arch, num_classes=10, num_steps=10, in_channels=2, mean=(0.0, 0.0), std=(1.0, 1.0))
    x = jax.ShapeDtypeStruct((2, 10, 48, 48, 2), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init({"params": jax.random.PRNGKey(0)}, x), x)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    assert logits.shape == (10, 2, 10)


def test_event_augmentation_is_one_draw_per_recording():
    x = jax.random.uniform(jax.random.PRNGKey(0), (16, 1, 8, 8, 2))
    x = jnp.concatenate([x, x], axis=1)  # two equal frames per recording
    out = jax.jit(functools.partial(augment.augment, crop_padding=2, flip=True, roll=3))(jax.random.PRNGKey(1), x)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out[:, 0], out[:, 1])  # both frames moved alike
    assert not np.array_equal(out[:, 0], x[:, 0])
    rolled = jax.jit(functools.partial(augment.augment, crop_padding=0, flip=False, roll=3))(jax.random.PRNGKey(2), x)
    for before, after in zip(np.asarray(x[:, 0]), np.asarray(rolled[:, 0])):  # a roll permutes cells
        shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                  if np.array_equal(np.roll(before, (dy, dx), axis=(0, 1)), after)]
        assert shifts


# ----------------------------------------------------------------------------------------------------
# loader -> model -> attacks, and the programs
# ----------------------------------------------------------------------------------------------------

def test_loader_to_frame_and_event_attacks(tmp_path):
    out = load_tiny(write_dataset(tmp_path / "data"), tmp_path / "cache")
    x, y = (jnp.asarray(a) for a in out["train"])
    model = frame_model()
    variables = jax.jit(model.init)({"params": jax.random.PRNGKey(0)}, x)
    logits_fn = attacks.model_logits_fn(model)
    predict = jax.jit(lambda v, x: jnp.argmax(logits_fn(v, x, None), -1))
    y = predict(variables, x)  # attack the model's own predictions
    # Frame-level PGD: ε in frame units, frames kept in [0, 1].
    unit = dvs.event_unit()
    eps = 2 * unit
    x_pgd = jax.jit(functools.partial(attacks.pgd, logits_fn, eps=eps, alpha=eps / 2, steps=3))(
        variables, x, y, jax.random.PRNGKey(1))
    assert float(jnp.abs(x_pgd - x).max()) <= eps + 1e-6 and 0.0 <= float(x_pgd.min()) <= float(x_pgd.max()) <= 1
    # Event attack: whole events added or removed, valid frames, success means misclassified.
    run = jax.jit(lambda v, x, y, k, kappa, keep: attacks.events.event_attack_result(
        logits_fn, v, x, y, k, unit=unit, steps=20, samples=2, kappa=kappa, init_keep=keep, lr=0.5))
    result = run(variables, x, y, jax.random.PRNGKey(2), 0.0, 3.0)
    delta = np.asarray(result.x_adv - x) / unit
    np.testing.assert_allclose(delta, np.round(delta), atol=1e-4)  # whole events
    assert np.abs(np.round(delta)).max() <= 1 and 0.0 <= float(result.x_adv.min()) <= float(result.x_adv.max()) <= 1
    np.testing.assert_allclose(result.changes, np.abs(np.round(delta)).reshape(len(y), -1).sum(1))
    fooled = np.asarray(predict(variables, result.x_adv) != y)
    np.testing.assert_array_equal(fooled, np.asarray(result.success))
    assert fooled.any()  # an untrained net is fooled by some edit of a few hundred events
    # A large κ makes every change cost more than it gains: far fewer events move.
    frozen = run(variables, x, y, jax.random.PRNGKey(3), 1e3, 8.0)
    assert float(frozen.changes.sum()) < 0.1 * float(result.changes.sum())


def test_dvs_configs():
    for arg in ("wrn16_4,at,tgo", "vgg11,tet,vanilla"):
        c = config_check.check(dvs_config.get_config(arg))
        assert c.dataset == "dvs_cifar10" and c.model.num_steps == c.dvs.frames == 10 and c.augment
    c = dvs_config.get_config("wrn16_4,at,tgo")
    c.dvs.frames = 5  # model.num_steps follows (one FieldReference)
    assert config_check.check(c).model.num_steps == 5
    untied = ml_collections.ConfigDict(c.to_dict())  # as read back from config.json
    untied.dvs.frames = 6
    with pytest.raises(config_check.ConfigError, match="num_steps is 5 but config.dvs.frames is 6"):
        config_check.check(untied)
    assert dvs_config.get_config("wrn16_4,at,tgo").neuron.kind == "noisy"
    with pytest.raises(ValueError, match="strategy must be one of"):
        dvs_config.get_config("wrn16_4,rat,tgo")


@pytest.mark.slow
def test_train_and_evaluate_on_event_data(tmp_path):
    c = dvs_config.get_config("wrn16_4,tet,vanilla")  # AT's PGD on frames is tested above
    c.data_dir = write_dataset(tmp_path / "data")
    c.dvs.update(frames=T, size=SIZE, cache_dir=str(tmp_path / "cache"), roll=2)
    c.model.arch, c.model.num_steps = "small", T
    c.model_kwargs.update(channels=(4,), hidden=8)
    c.epochs, c.batch_size, c.eval_batch_size, c.progress = 1, 4, 10, False
    with pytest.raises(data.DataUnavailableError):  # the full class list is needed without classes=
        train.train_and_evaluate(c, str(tmp_path / "run"))
    # Load the two classes as the full data set for the programs.
    for name in dvs.CLASSES[2:]:
        os.symlink(os.path.join(c.data_dir, "airplane"), os.path.join(c.data_dir, name))
    record = train.train_and_evaluate(c, str(tmp_path / "run"))
    assert record["step"] == 5 and np.isfinite(record["train_loss"]) and 0 <= record["test_accuracy"] <= 100
    results = robustness.evaluate_workdir(
        str(tmp_path / "run"), eps_list=[2 / 255], alpha=1 / 255, extra=(), eot=1, draws=1, eps_sweep=[],
        sweep_attack="FGSM", num_examples=0, batch_size=10, attacks_subset=("Clean",), progress=False,
        event_steps=2)
    e = results["event_attack"]
    assert 0 <= e["fooled"] <= e["clean_correct"] <= 10 and e["unit"] == 1 / 8
    assert results["tables"]["2/255"]["Clean"] == pytest.approx(100 * e["clean_correct"] / 10)
    with open(tmp_path / "run" / "eval.json") as f:
        assert json.load(f)["event_attack"] == e
    assert "Event attack" in (tmp_path / "run" / "eval.md").read_text()
