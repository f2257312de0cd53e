"""Minimal ISO-BMFF / QuickTime (MP4) box walker: finds tracks and the byte position and time of each sample.

Only the boxes needed to locate samples are read (moov/trak/mdia/{mdhd,hdlr}/minf/stbl/{stsd,stts,stsc,stsz,stco,co64});
media data (`mdat`) is never loaded whole. Edit lists are not applied: sample times are media times.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import BinaryIO, Iterator

import numpy as np

# Boxes whose payload is a plain sequence of child boxes.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


class Mp4Error(ValueError):
    """Raised for files that are not valid MP4 or lack a requested track."""


@dataclasses.dataclass(frozen=True)
class Box:
    kind: bytes        # four-character box type, e.g. b"moov"
    start: int         # offset of the box header
    payload_start: int  # offset of the first byte after the header
    end: int           # offset one past the last byte of the box


@dataclasses.dataclass(frozen=True)
class Mp4Track:
    """One `trak`: its handler, sample format and the position/time of every sample."""

    index: int                 # order of the trak inside moov, 0-based
    handler_type: str          # hdlr subtype, e.g. "vide", "soun", "meta"
    handler_name: str          # hdlr name, e.g. "GoPro MET"
    sample_format: str         # first stsd entry format, e.g. "avc1", "gpmd"
    timescale: int             # mdhd ticks per second
    offsets: np.ndarray        # int64 [N] absolute byte offset of each sample in the file
    sizes: np.ndarray          # int64 [N] byte size of each sample
    start_ticks: np.ndarray    # int64 [N] decode time of each sample, in timescale ticks
    duration_ticks: np.ndarray  # int64 [N] duration of each sample, in timescale ticks

    @property
    def start_seconds(self) -> np.ndarray:
        return self.start_ticks / float(self.timescale)

    @property
    def duration_seconds(self) -> np.ndarray:
        return self.duration_ticks / float(self.timescale)


def _read_box(head: bytes | memoryview, pos: int, end: int, where: str, outside: str) -> Box:
    """The box whose first (up to 16) bytes are ``head``, at byte ``pos`` of a parent ending at byte ``end`` (size 0:
    the box runs to the end of its parent); ``outside`` describes that parent in the error of a box that overruns it."""
    if len(head) < 8:
        raise Mp4Error(f"{where}: truncated box header at byte {pos} ({len(head)} bytes left, need 8)")
    size, kind = struct.unpack_from(">I4s", head, 0)
    header = 8
    if size == 1:
        if len(head) < 16:
            raise Mp4Error(f"{where}: truncated 64-bit box size at byte {pos}")
        (size,), header = struct.unpack_from(">Q", head, 8), 16
    elif size == 0:
        size = end - pos
    if size < header or pos + size > end:
        raise Mp4Error(f"{where}: box {kind!r} at byte {pos} declares size {size}, which does not fit in {outside}")
    return Box(kind, pos, pos + header, pos + size)


def iter_boxes(data: bytes | memoryview, start: int, end: int, where: str) -> Iterator[Box]:
    """Yields the boxes laid end to end in data[start:end]; `where` names the file and parent in errors."""
    pos = start
    while pos < end:
        box = _read_box(memoryview(data)[pos:min(pos + 16, end)], pos, end, where,
                        f"its parent (bytes {start}..{end})")
        yield box
        pos = box.end


def _iter_top_level(f: BinaryIO, file_size: int, where: str) -> Iterator[Box]:
    """Top-level boxes read header by header, so that `mdat` is skipped rather than loaded."""
    pos = 0
    while pos < file_size:
        f.seek(pos)
        box = _read_box(f.read(16), pos, file_size, where,
                        f"the file's {file_size} bytes (truncated or not an MP4)")
        yield box
        pos = box.end


def _child(data: bytes, parent: Box, kind: bytes, where: str) -> Box | None:
    for box in iter_boxes(data, parent.payload_start, parent.end, f"{where}/{parent.kind.decode('latin-1')}"):
        if box.kind == kind:
            return box
    return None


def _require(data: bytes, parent: Box, path: list[bytes], where: str) -> Box:
    box = parent
    for kind in path:
        found = _child(data, box, kind, where)
        if found is None:
            raise Mp4Error(f"{where}: missing box {kind.decode('latin-1')!r} inside {box.kind.decode('latin-1')!r}")
        box = found
    return box


def _full_box_table(data: bytes, box: Box, fmt: str, where: str) -> np.ndarray:
    """Reads `entry_count` then entries of struct `fmt` (after the 4-byte version/flags)."""
    (count,) = struct.unpack_from(">I", data, box.payload_start + 4)
    width = struct.calcsize(fmt)
    first = box.payload_start + 8
    if first + count * width > box.end:
        raise Mp4Error(f"{where}: {box.kind.decode('latin-1')} declares {count} entries, more than its size holds")
    dtype = np.dtype([(f"f{i}", ">" + c) for i, c in enumerate(fmt)])
    return np.frombuffer(data, dtype=dtype, count=count, offset=first)


def _parse_track(data: bytes, trak: Box, index: int, where: str) -> Mp4Track:
    where = f"{where} trak#{index}"
    mdia = _require(data, trak, [b"mdia"], where)
    mdhd = _require(data, mdia, [b"mdhd"], where)
    version = data[mdhd.payload_start]
    timescale_at = mdhd.payload_start + (4 + 16 if version == 1 else 4 + 8)
    (timescale,) = struct.unpack_from(">I", data, timescale_at)
    if timescale == 0:
        raise Mp4Error(f"{where}: mdhd timescale is 0")

    hdlr = _require(data, mdia, [b"hdlr"], where)
    handler_type = data[hdlr.payload_start + 8: hdlr.payload_start + 12].decode("latin-1")
    name_bytes = data[hdlr.payload_start + 24: hdlr.end]
    if name_bytes and name_bytes[0] == len(name_bytes) - 1:  # QuickTime Pascal string
        name_bytes = name_bytes[1:]
    handler_name = name_bytes.split(b"\0")[0].decode("latin-1").strip()

    stbl = _require(data, mdia, [b"minf", b"stbl"], where)
    stsd = _require(data, stbl, [b"stsd"], where)
    sample_format = data[stsd.payload_start + 12: stsd.payload_start + 16].decode("latin-1")

    stsz = _require(data, stbl, [b"stsz"], where)
    uniform_size, count = struct.unpack_from(">II", data, stsz.payload_start + 4)
    if uniform_size:
        sizes = np.full(count, uniform_size, np.int64)
    else:
        if stsz.payload_start + 12 + 4 * count > stsz.end:
            raise Mp4Error(f"{where}: stsz declares {count} sizes, more than its size holds")
        sizes = np.frombuffer(data, ">u4", count, stsz.payload_start + 12).astype(np.int64)

    stco = _child(data, stbl, b"stco", where)
    co64 = _child(data, stbl, b"co64", where)
    if stco is not None:
        chunk_offsets = _full_box_table(data, stco, "I", where)["f0"].astype(np.int64)
    elif co64 is not None:
        chunk_offsets = _full_box_table(data, co64, "Q", where)["f0"].astype(np.int64)
    else:
        raise Mp4Error(f"{where}: missing chunk offset box (stco or co64)")

    stsc = _full_box_table(data, _require(data, stbl, [b"stsc"], where), "III", where)
    offsets = _sample_offsets(chunk_offsets, stsc["f0"].astype(np.int64), stsc["f1"].astype(np.int64), sizes, where)

    stts = _full_box_table(data, _require(data, stbl, [b"stts"], where), "II", where)
    durations = np.repeat(stts["f1"].astype(np.int64), stts["f0"].astype(np.int64))
    if len(durations) != count:
        raise Mp4Error(f"{where}: stts covers {len(durations)} samples but stsz lists {count}")
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]]).astype(np.int64)
    return Mp4Track(index, handler_type, handler_name, sample_format, int(timescale),
                    offsets, sizes, starts, durations)


def _sample_offsets(chunk_offsets: np.ndarray, first_chunks: np.ndarray, per_chunk: np.ndarray,
                    sizes: np.ndarray, where: str) -> np.ndarray:
    """Absolute offset of every sample: samples of a chunk are stored back to back from the chunk offset."""
    n_chunks = len(chunk_offsets)
    if len(first_chunks) == 0 or first_chunks[0] != 1:
        raise Mp4Error(f"{where}: stsc must start at chunk 1")
    # samples-per-chunk for chunk c is the entry with the largest first_chunk <= c (1-based chunks)
    entry = np.searchsorted(first_chunks, np.arange(1, n_chunks + 1), side="right") - 1
    counts = per_chunk[entry]
    if counts.sum() != len(sizes):
        raise Mp4Error(f"{where}: stsc/stco describe {counts.sum()} samples but stsz lists {len(sizes)}")
    chunk_of_sample = np.repeat(np.arange(n_chunks), counts)
    first_sample_of_chunk = np.concatenate([[0], np.cumsum(counts)[:-1]])
    size_before = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    within = size_before - size_before[first_sample_of_chunk][chunk_of_sample]
    return chunk_offsets[chunk_of_sample] + within


def read_tracks(path: str | os.PathLike) -> list[Mp4Track]:
    """Parses the moov box of `path` and returns every track's sample table."""
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        moov = None
        for box in _iter_top_level(f, file_size, path):
            if box.kind == b"moov":
                moov = box
                break
        if moov is None:
            raise Mp4Error(f"{path}: no 'moov' box found; not an MP4/QuickTime file or the file is truncated")
        f.seek(moov.start)
        data = f.read(moov.end - moov.start)
    root = Box(b"moov", 0, moov.payload_start - moov.start, len(data))
    traks = [b for b in iter_boxes(data, root.payload_start, root.end, f"{path}/moov") if b.kind == b"trak"]
    return [_parse_track(data, trak, i, path) for i, trak in enumerate(traks)]


def find_track(tracks: list[Mp4Track], handler_type: str, sample_format: str, where: str) -> Mp4Track:
    """The first track with this handler subtype and sample format, or a clear error listing what exists."""
    for track in tracks:
        if track.handler_type == handler_type and track.sample_format == sample_format:
            return track
    found = ", ".join(f"#{t.index} {t.handler_type}/{t.sample_format} ({t.handler_name!r})" for t in tracks)
    raise Mp4Error(f"{where}: no track with handler '{handler_type}' and sample format '{sample_format}' "
                   f"(tracks: {found or 'none'})")


def read_samples(path: str | os.PathLike, track: Mp4Track) -> list[bytes]:
    """Raw bytes of every sample of `track`."""
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    out = []
    with open(path, "rb") as f:
        for i, (offset, size) in enumerate(zip(track.offsets.tolist(), track.sizes.tolist())):
            if offset + size > file_size:
                raise Mp4Error(f"{path}: sample {i} of track #{track.index} lies at bytes {offset}..{offset + size}, "
                               f"past the end of the file ({file_size} bytes); the file is truncated")
            f.seek(offset)
            out.append(f.read(size))
    return out
