"""AEDAT event files (jAER 2.0, as released for CIFAR10-DVS; DV/libcaer 3.1; DV 4.0) read into numpy events.

AEDAT 2.0 (``#!AER-DAT2.0``): ASCII header lines that begin with ``#``, then events of 8 bytes each, a
big-endian uint32 address and a big-endian int32 timestamp in µs. CIFAR10-DVS was recorded with a DVS128,
whose address holds the polarity in bit 0, the column in bits 1-7, the row in bits 8-14, and marks an
external (non-DVS) event with bit 15.

AEDAT 3.1 (``#!AER-DAT3.1``): header lines up to ``#!END-HEADER``, then packets, each a 28-byte
little-endian header (int16 type, int16 source, int32 event size, int32 timestamp offset, int32 timestamp
overflow, int32 capacity, int32 number, int32 valid) and ``capacity × size`` bytes of events. Polarity
events (type 1, 8 bytes) are a uint32 (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and an
int32 timestamp in µs; the full time is ``overflow << 31 | timestamp``. Other packet types are skipped.

AEDAT 4.0 (``#!AER-DAT4.0``, written by DV, e.g. tonic's copy of CIFAR10-DVS): the version line, a uint32
length and an ``IOHeader`` FlatBuffer (field 0 int32 compression: 0 none, 1-2 LZ4, 3-4 Zstd; field 1 int64
file offset of the trailing data table, -1 if none; field 2 an XML description of the streams), then packets
up to that offset, each a uint32 stream id, a uint32 byte count and a size-prefixed FlatBuffer (compressed
as the header says). Event packets carry the file identifier ``EVTS``; their table's field 0 is a vector of
16-byte structs (int64 timestamp in µs, int16 x, int16 y, bool polarity, padding). All integers are little
endian. Other packets (frames, IMU, triggers) are skipped. LZ4 needs the ``lz4`` package and Zstd the
``zstandard`` package; without them a compressed file fails naming the package to install.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, NamedTuple

import numpy as np

SENSOR_SIZE = 128  # DVS128: 128 × 128 pixels
POLARITY_EVENT = 1  # AEDAT 3.1 packet type of polarity events
_PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                           ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])


V4_MAGIC = b"#!AER-DAT4.0\r\n"
V4_EVENT_PACKET = b"EVTS"  # FlatBuffer file identifier of event packets
V4_EVENT = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                     "offsets": [0, 8, 10, 12], "itemsize": 16})
V4_COMPRESSION = {0: None, 1: "lz4", 2: "lz4", 3: "zstd", 4: "zstd"}  # IOHeader field 0 -> codec


class Events(NamedTuple):
    """One recording: timestamps ``t`` (int64, µs), pixel ``x`` (column) and ``y`` (row) as int64, and
    polarity ``p`` (int64: 1 = ON, brightness up; 0 = OFF), each [N]."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray


def read_aedat(path: str | os.PathLike) -> Events:
    """Reads the DVS events of one AEDAT 2.0, 3.1 or 4.0 file (the version line decides).

    AEDAT 2.0 DVS128 addresses are turned upright the way common CIFAR10-DVS pipelines do (the camera
    sees the monitor rotated): ``x = 127 - row``, ``y = 127 - column``, ``p = 1 - bit0``. AEDAT 3.1
    and 4.0 coordinates are taken as written. External events (2.0) and invalid events (3.1) are dropped.

    Raises:
      ValueError: naming the file, when it is missing, has no AEDAT version line, is another version,
        or its event data is cut short.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"AEDAT file {path} is missing")
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(V4_MAGIC):
        return _decode_v4(raw, path)
    version, body = _split_header(raw, path)
    if version == "2.0":
        return _decode_v2(body, path)
    if version == "3.1":
        return _decode_v3(body, path)
    raise ValueError(f"AEDAT file {path}: version {version} is not supported (expected 2.0, 3.1 or 4.0)")


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


def _decode_v4(raw: bytes, path: str) -> Events:
    start = len(V4_MAGIC)
    header_len = _u32(raw, start, path)
    header = raw[start + 4:start + 4 + header_len]
    if len(header) < header_len:
        raise ValueError(f"AEDAT 4.0 file {path}: header of {header_len} bytes truncated")
    compression, end = _v4_io_header(header, path)
    decompress = _v4_decompressor(compression, path)
    end = len(raw) if end < 0 else end
    parts, pos = [], start + 4 + header_len
    while pos < end:
        size = _u32(raw, pos + 4, path)
        packet, pos = raw[pos + 8:pos + 8 + size], pos + 8 + size
        if pos > len(raw):
            raise ValueError(f"AEDAT 4.0 file {path}: packet of {size} bytes truncated at byte {len(raw)}")
        packet = decompress(packet)
        if packet[8:12] == V4_EVENT_PACKET:  # size prefix, root offset, then the identifier
            parts.append(_v4_events(packet, path))
    if not parts:
        empty = np.zeros((0,), np.int64)
        return Events(empty, empty, empty, empty)
    events = np.concatenate(parts)
    return Events(*(events[name].astype(np.int64) for name in ("t", "x", "y", "on")))


def _v4_events(packet: bytes, path: str) -> np.ndarray:
    """The event structs of a size-prefixed ``EventPacket`` FlatBuffer (field 0: the vector of events)."""
    field = _fb_field(packet, _fb_table(packet, 4, path), 0)
    if field is None:
        return np.zeros((0,), V4_EVENT)
    vector = field + _u32(packet, field, path)
    count = _u32(packet, vector, path)
    if vector + 4 + count * V4_EVENT.itemsize > len(packet):
        raise ValueError(f"AEDAT 4.0 file {path}: event packet claims {count} events past its end")
    return np.frombuffer(packet, V4_EVENT, count=count, offset=vector + 4)


def _v4_io_header(header: bytes, path: str) -> tuple[int, int]:
    """(compression, file offset of the data table or -1) of an ``IOHeader`` FlatBuffer (absent: defaults)."""
    table = _fb_table(header, 0, path)
    compression, data_table = _fb_field(header, table, 0), _fb_field(header, table, 1)
    return (0 if compression is None else _signed(header, compression, 4),
            -1 if data_table is None else _signed(header, data_table, 8))


def _signed(buf: bytes, pos: int, size: int) -> int:
    return int.from_bytes(buf[pos:pos + size], "little", signed=True)


def _v4_decompressor(compression: int, path: str) -> Callable[[bytes], bytes]:
    """bytes -> bytes for the header's compression; a missing codec package fails naming it."""
    if compression not in V4_COMPRESSION:
        raise ValueError(f"AEDAT 4.0 file {path}: unknown compression {compression} "
                         f"(expected one of {sorted(V4_COMPRESSION)})")
    codec = V4_COMPRESSION[compression]
    if codec is None:
        return lambda packet: packet
    package, module = {"lz4": ("lz4", "lz4.frame"), "zstd": ("zstandard", "zstandard")}[codec]
    try:
        library = importlib.import_module(module)
    except ImportError:
        raise ValueError(f"AEDAT 4.0 file {path} is {codec.upper()}-compressed, which needs the "
                         f"{package!r} package: `pip install {package}`") from None
    if codec == "lz4":
        return library.decompress
    return lambda packet: library.ZstdDecompressor().decompressobj().decompress(packet)


def _u32(buf: bytes, pos: int, path: str) -> int:
    if pos + 4 > len(buf):
        raise ValueError(f"AEDAT 4.0 file {path}: truncated at byte {len(buf)} (needed 4 bytes at {pos})")
    return int.from_bytes(buf[pos:pos + 4], "little")


def _fb_table(buf: bytes, root: int, path: str) -> int:
    """The position of the FlatBuffer table that the uoffset at ``root`` points to."""
    return root + _u32(buf, root, path)


def _fb_field(buf: bytes, table: int, index: int) -> int | None:
    """The position of field ``index`` of a FlatBuffer table, None when absent (its default applies).

    The table starts with an int32 back-offset to its vtable: uint16 vtable size, uint16 table size, then
    one uint16 offset per field (0: absent).
    """
    vtable = table - _signed(buf, table, 4)
    vtable_size = int.from_bytes(buf[vtable:vtable + 2], "little")
    entry = vtable + 4 + 2 * index
    if entry + 2 > vtable + vtable_size:
        return None
    offset = int.from_bytes(buf[entry:entry + 2], "little")
    return table + offset if offset else None


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
