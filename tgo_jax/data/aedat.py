"""AEDAT event files (jAER 2.0, as released for CIFAR10-DVS; DV/libcaer 3.1) read into numpy events.

AEDAT 2.0 (``#!AER-DAT2.0``): ASCII header lines that begin with ``#``, then events of 8 bytes each, a
big-endian uint32 address and a big-endian int32 timestamp in µs. CIFAR10-DVS was recorded with a DVS128,
whose address holds the polarity in bit 0, the column in bits 1-7, the row in bits 8-14, and marks an
external (non-DVS) event with bit 15.

AEDAT 3.1 (``#!AER-DAT3.1``): header lines up to ``#!END-HEADER``, then packets, each a 28-byte
little-endian header (int16 type, int16 source, int32 event size, int32 timestamp offset, int32 timestamp
overflow, int32 capacity, int32 number, int32 valid) and ``capacity × size`` bytes of events. Polarity
events (type 1, 8 bytes) are a uint32 (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and an
int32 timestamp in µs; the full time is ``overflow << 31 | timestamp``. Other packet types are skipped.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

SENSOR_SIZE = 128  # DVS128: 128 × 128 pixels
POLARITY_EVENT = 1  # AEDAT 3.1 packet type of polarity events
_PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                           ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])


class Events(NamedTuple):
    """One recording: timestamps ``t`` (int64, µs), pixel ``x`` (column) and ``y`` (row) as int64, and
    polarity ``p`` (int64: 1 = ON, brightness up; 0 = OFF), each [N]."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray


def read_aedat(path: str | os.PathLike) -> Events:
    """Reads the DVS events of one AEDAT 2.0 or 3.1 file (the version line decides).

    AEDAT 2.0 DVS128 addresses are turned upright the way common CIFAR10-DVS pipelines do (the camera
    sees the monitor rotated): ``x = 127 - row``, ``y = 127 - column``, ``p = 1 - bit0``. AEDAT 3.1
    coordinates are taken as written. External events (2.0) and invalid events (3.1) are dropped.

    Raises:
      ValueError: naming the file, when it is missing, has no AEDAT version line, is another version,
        or its event data is cut short.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"AEDAT file {path} is missing")
    with open(path, "rb") as f:
        raw = f.read()
    version, body = _split_header(raw, path)
    if version == "2.0":
        return _decode_v2(body, path)
    if version == "3.1":
        return _decode_v3(body, path)
    raise ValueError(f"AEDAT file {path}: version {version} is not supported (expected 2.0 or 3.1)")


def _split_header(raw: bytes, path: str) -> tuple[str, bytes]:
    """(version, the bytes after the header). The header is the run of lines that begin with '#'."""
    if not raw.startswith(b"#!AER-DAT"):
        raise ValueError(f"AEDAT file {path}: no '#!AER-DAT<version>' line at the start "
                         f"(got {raw[:16]!r}); not an AEDAT file")
    first_end = raw.find(b"\n")
    version = raw[len(b"#!AER-DAT"):first_end if first_end >= 0 else None].strip().decode("ascii", "replace")
    pos = 0
    while pos < len(raw) and raw[pos:pos + 1] == b"#":
        end = raw.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"AEDAT file {path}: header line at byte {pos} has no end")
        line, pos = raw[pos:end], end + 1
        if line.rstrip(b"\r") == b"#!END-HEADER":
            break
    return version, raw[pos:]


def _decode_v2(body: bytes, path: str) -> Events:
    if len(body) % 8:
        raise ValueError(f"AEDAT 2.0 file {path}: event data truncated ({len(body)} bytes is not a whole "
                         "number of 8-byte events)")
    words = np.frombuffer(body, ">u4").reshape(-1, 2)
    address, t = words[:, 0].astype(np.int64), words[:, 1].astype(np.int64)
    dvs = (address & 0x8000) == 0
    address, t = address[dvs], t[dvs]
    column, row = (address >> 1) & 0x7F, (address >> 8) & 0x7F
    return Events(t, SENSOR_SIZE - 1 - row, SENSOR_SIZE - 1 - column, 1 - (address & 1))


def _decode_v3(body: bytes, path: str) -> Events:
    parts, pos = [], 0
    while pos < len(body):
        if len(body) - pos < _PACKET_HEADER.itemsize:
            raise ValueError(f"AEDAT 3.1 file {path}: packet header at byte {pos} truncated")
        header = np.frombuffer(body, _PACKET_HEADER, count=1, offset=pos)[0]
        size, capacity = int(header["size"]), int(header["capacity"])
        start, pos = pos + _PACKET_HEADER.itemsize, pos + _PACKET_HEADER.itemsize + size * capacity
        if size < 0 or capacity < 0 or pos > len(body):
            raise ValueError(f"AEDAT 3.1 file {path}: packet at byte {start - _PACKET_HEADER.itemsize} "
                             f"claims {capacity} events of {size} bytes, past the end of the file")
        if int(header["type"]) != POLARITY_EVENT:
            continue
        if size != 8:
            raise ValueError(f"AEDAT 3.1 file {path}: polarity events of {size} bytes, expected 8")
        words = np.frombuffer(body, "<u4", count=2 * capacity, offset=start).reshape(-1, 2)
        data = words[:, 0].astype(np.int64)
        t = words[:, 1].astype(np.int64) | (np.int64(header["ts_overflow"]) << 31)
        valid = (data & 1) == 1
        parts.append((t[valid], (data[valid] >> 17) & 0x7FFF, (data[valid] >> 2) & 0x7FFF,
                      (data[valid] >> 1) & 1))
    if not parts:
        empty = np.zeros((0,), np.int64)
        return Events(empty, empty, empty, empty)
    return Events(*(np.concatenate(field) for field in zip(*parts)))


def encode_v2(events: Events) -> bytes:
    """The AEDAT 2.0 body (no header) of DVS128 events; the inverse of the 2.0 reader's decoding."""
    column, row = SENSOR_SIZE - 1 - np.asarray(events.y), SENSOR_SIZE - 1 - np.asarray(events.x)
    address = (row << 8) | (column << 1) | (1 - np.asarray(events.p))
    words = np.stack([address, np.asarray(events.t)], axis=1).astype(">u4")
    return words.tobytes()


def encode_v3(events: Events, packet_size: int = 1024) -> bytes:
    """The AEDAT 3.1 body (no header) of polarity events, in packets of at most ``packet_size`` events."""
    out = []
    t = np.asarray(events.t, np.int64)
    for lo in range(0, len(t), packet_size):
        sl = slice(lo, lo + packet_size)
        overflow = int(t[sl][0] >> 31) if len(t[sl]) else 0
        data = ((np.asarray(events.x[sl]) << 17) | (np.asarray(events.y[sl]) << 2)
                | (np.asarray(events.p[sl]) << 1) | 1)
        words = np.stack([data, t[sl] & 0x7FFFFFFF], axis=1).astype("<u4")
        n = len(words)
        header = np.array([(POLARITY_EVENT, 0, 8, 4, overflow, n, n, n)], _PACKET_HEADER)
        out += [header.tobytes(), words.tobytes()]
    return b"".join(out)


def write_aedat(path: str | os.PathLike, events: Events, version: str = "2.0") -> None:
    """Writes events as an AEDAT 2.0 (DVS128 addresses) or 3.1 file that ``read_aedat`` reads back."""
    if version == "2.0":
        header, body = b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n", encode_v2(events)
    elif version == "3.1":
        header, body = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n", encode_v3(events)
    else:
        raise ValueError(f"version must be '2.0' or '3.1', got {version!r}")
    with open(path, "wb") as f:
        f.write(header + body)
