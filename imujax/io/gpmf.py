"""GoPro GPMF telemetry reader: KLV parsing of the `gpmd` track and ACCL/GYRO extraction.

Format (gopro/gpmf-parser@9a71506 README.md): big-endian KLV items with an 8-byte header
(FourCC key, type char, struct size, uint16 repeat), values padded to 32 bits, type 0 = nested items.
Each payload holds `DEVC` containers with one `STRM` per sensor; inside a `STRM` the property items
(`SCAL`, `STMP`, `TSMP`, `ORIN`, `ORIO`, `MTRX`, `SIUN`, ...) precede the data item they describe.

Timing: `STMP` is the camera-clock time (µs) of a payload's first sample. Sample times inside payload k are spread
evenly over [STMP_k, STMP_k+1); the last payload uses the mean rate of the earlier ones. Files without `STMP` fall
back to the payload times of the MP4 track. Times are also mapped onto the MP4 (video) timeline; see
`_mp4_timeline`.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Sequence

import numpy as np

from imujax.io import mp4


class GpmfError(ValueError):
    """Raised for malformed GPMF data or a file without the requested telemetry."""


# type char -> (numpy dtype, bytes per element); fixed-point types are converted to float on decode.
_NUMERIC_TYPES: dict[str, tuple[str, int]] = {
    "b": (">i1", 1), "B": (">u1", 1), "s": (">i2", 2), "S": (">u2", 2),
    "l": (">i4", 4), "L": (">u4", 4), "j": (">i8", 8), "J": (">u8", 8),
    "f": (">f4", 4), "d": (">f8", 8), "q": (">i4", 4), "Q": (">i8", 8),
}
_TEXT_TYPES = {"c": 1, "F": 4, "U": 16}
_OPAQUE_TYPES = {"G": 16, "?": 1}  # 128-bit ids and TYPE-described structures are kept as raw bytes
NESTED = "\0"


@dataclasses.dataclass(frozen=True)
class KlvItem:
    key: str
    type_char: str            # "\0" for nested containers
    struct_size: int          # bytes per sample
    repeat: int               # number of samples
    raw: bytes                # value bytes without the alignment filler
    children: tuple["KlvItem", ...] = ()

    @property
    def is_nested(self) -> bool:
        return self.type_char == NESTED

    def value(self):
        """Decoded value: ndarray [repeat, elements] for numbers, str (or list of str) for text, bytes otherwise."""
        t = self.type_char
        if t in _NUMERIC_TYPES:
            dtype, width = _NUMERIC_TYPES[t]
            arr = np.frombuffer(self.raw, dtype=dtype).reshape(self.repeat, self.struct_size // width)
            if t == "q":
                return arr.astype(np.float64) / 65536.0
            if t == "Q":
                return arr.astype(np.float64) / 4294967296.0
            return arr.astype(arr.dtype.newbyteorder("="))
        if t in _TEXT_TYPES:
            if t == "c" and self.struct_size == 1:  # one string stored as `repeat` single characters
                return self.raw.split(b"\0")[0].decode("latin-1")
            texts = [self.raw[i * self.struct_size:(i + 1) * self.struct_size].split(b"\0")[0].decode("latin-1")
                     for i in range(self.repeat)]
            return texts[0] if self.repeat == 1 else texts
        return self.raw


def _element_width(type_char: str) -> int | None:
    if type_char in _NUMERIC_TYPES:
        return _NUMERIC_TYPES[type_char][1]
    if type_char in _TEXT_TYPES:
        return _TEXT_TYPES[type_char]
    if type_char in _OPAQUE_TYPES:
        return _OPAQUE_TYPES[type_char]
    if type_char == NESTED:
        return 1
    return None


def parse_klv(data: bytes, where: str = "GPMF", start: int = 0, end: int | None = None) -> list[KlvItem]:
    """Parses the KLV items in data[start:end], recursing into nested ones. Errors name `where` and the byte offset."""
    end = len(data) if end is None else end
    items = []
    pos = start
    while pos < end:
        if end - pos < 8:
            raise GpmfError(f"{where}: truncated KLV header at byte {pos} ({end - pos} bytes left, need 8)")
        key_bytes = data[pos:pos + 4]
        if key_bytes == b"\0\0\0\0":  # zero filler after the last item
            if any(data[pos:end]):
                raise GpmfError(f"{where}: null key at byte {pos} followed by non-zero bytes")
            break
        if not all(0x20 <= c < 0x7F for c in key_bytes):
            raise GpmfError(f"{where}: invalid KLV key {key_bytes!r} at byte {pos} (expected 4 printable ASCII chars)")
        key = key_bytes.decode("ascii")
        type_char = chr(data[pos + 4])
        struct_size = data[pos + 5]
        (repeat,) = struct.unpack_from(">H", data, pos + 6)
        width = _element_width(type_char)
        if width is None:
            raise GpmfError(f"{where}: item {key} at byte {pos} has unknown type {type_char!r}")
        if struct_size % width:
            raise GpmfError(f"{where}: item {key} at byte {pos}: struct size {struct_size} is not a multiple "
                            f"of the {width}-byte type {type_char!r}")
        length = struct_size * repeat
        value_start = pos + 8
        if value_start + length > end:
            raise GpmfError(f"{where}: item {key} at byte {pos} declares {length} value bytes "
                            f"but only {end - value_start} remain in its container")
        raw = bytes(data[value_start:value_start + length])
        children: tuple[KlvItem, ...] = ()
        if type_char == NESTED:
            children = tuple(parse_klv(data, f"{where}/{key}", value_start, value_start + length))
        items.append(KlvItem(key, type_char, struct_size, repeat, raw, children))
        pos = value_start + ((length + 3) & ~3)  # every item starts 32-bit aligned
    return items


@dataclasses.dataclass(frozen=True)
class StreamChunk:
    """One payload's worth of a data item plus the properties that preceded it in its STRM."""

    raw: np.ndarray                 # [n, elements] numbers as stored
    properties: dict[str, object]   # decoded sticky properties, e.g. {"SCAL": ndarray, "STMP": ndarray}


def stream_chunks(payload_items: Sequence[KlvItem], fourcc: str, where: str) -> list[StreamChunk]:
    """All occurrences of data item `fourcc` in one payload, with the STRM properties that precede each."""
    chunks = []
    for devc in payload_items:
        if devc.key != "DEVC" or not devc.is_nested:
            continue
        for strm in devc.children:
            if strm.key != "STRM" or not strm.is_nested:
                continue
            props: dict[str, object] = {}
            for item in strm.children:
                if item.key == fourcc:
                    if item.type_char not in _NUMERIC_TYPES:
                        raise GpmfError(f"{where}: {fourcc} has type {item.type_char!r}; only numeric types "
                                        "are supported for sensor data")
                    chunks.append(StreamChunk(item.value(), dict(props)))
                elif not item.is_nested:
                    props[item.key] = item.value()
    return chunks


@dataclasses.dataclass(frozen=True)
class GpmfStream:
    """One sensor stream in physical units, with per-sample times."""

    fourcc: str
    name: str                      # STNM, e.g. "Accelerometer"
    units: str                     # SIUN or UNIT, e.g. "m/s²"
    scale: np.ndarray              # SCAL divisor(s) applied: physical = raw / scale
    axis_matrix: np.ndarray | None  # 3x3 applied after scaling (out = M @ in), None if not applied
    values: np.ndarray             # float64 [N, elements]
    camera_time_s: np.ndarray      # float64 [N] camera clock (STMP) seconds
    video_time_s: np.ndarray       # float64 [N] seconds on the MP4 timeline (video frame 0 at t=0)
    payload_counts: np.ndarray     # int64 [P] samples per payload
    payload_stmp_s: np.ndarray     # float64 [P] payload first-sample camera time (STMP or fallback)

    @property
    def rate_hz(self) -> float:
        """Mean sample rate from the time span of the samples."""
        return (len(self.camera_time_s) - 1) / float(self.camera_time_s[-1] - self.camera_time_s[0])


def orientation_matrix(orin: str, orio: str, where: str) -> np.ndarray:
    """3x3 matrix mapping input channels (ORIN) to output axes (ORIO); lowercase letters are negated axes."""
    if len(orin) != 3 or len(orio) != 3 or sorted(orin.upper()) != sorted(orio.upper()):
        raise GpmfError(f"{where}: ORIN {orin!r} / ORIO {orio!r} are not two orderings of the same three axes")
    m = np.zeros((3, 3))
    for j, out_axis in enumerate(orio):
        i = orin.upper().index(out_axis.upper())
        sign = (-1.0 if orin[i].islower() else 1.0) * (-1.0 if out_axis.islower() else 1.0)
        m[j, i] = sign
    return m


def _axis_matrix(props: dict[str, object], elements: int, where: str) -> np.ndarray | None:
    if elements != 3:
        return None
    if "MTRX" in props:
        m = np.asarray(props["MTRX"], np.float64).reshape(-1)
        if m.size != 9:
            raise GpmfError(f"{where}: MTRX has {m.size} values, expected 9")
        return m.reshape(3, 3)
    if "ORIN" in props and "ORIO" in props:
        return orientation_matrix(str(props["ORIN"]), str(props["ORIO"]), where)
    return None


def _scale(props: dict[str, object], elements: int, where: str) -> np.ndarray:
    if "SCAL" not in props:
        return np.ones(1)
    scal = np.asarray(props["SCAL"], np.float64).reshape(-1)
    if scal.size not in (1, elements):
        raise GpmfError(f"{where}: SCAL has {scal.size} values for {elements} elements per sample")
    if np.any(scal == 0):
        raise GpmfError(f"{where}: SCAL contains 0")
    return scal


def _sample_times(counts: np.ndarray, starts: np.ndarray, last_span: float | None, where: str) -> np.ndarray:
    """Spreads each payload's samples evenly over [start_k, start_k+1); the last payload uses the mean rate."""
    if np.any(np.diff(starts) <= 0):
        raise GpmfError(f"{where}: payload timestamps are not increasing: {starts.tolist()}")
    spans = np.diff(starts)
    if len(counts) > 1:
        mean_period = (starts[-1] - starts[0]) / counts[:-1].sum()
        last = mean_period * counts[-1]
    elif last_span is not None:
        last = last_span
    else:
        raise GpmfError(f"{where}: one payload without a duration; cannot time its samples")
    spans = np.append(spans, last)
    return np.concatenate([s + np.arange(n) * (span / n) for s, n, span in zip(starts, counts, spans) if n])


def _mp4_timeline(payload_camera_s: np.ndarray, payload_mp4_s: np.ndarray) -> tuple[float, float]:
    """(slope, offset) mapping camera time to the MP4 timeline.

    Follows the upstream GPMF convention: a least-squares line through (payload first-sample time, payload start
    on the MP4 timeline); with one payload it is a pure shift.
    """
    if len(payload_camera_s) < 2:
        return 1.0, float(payload_mp4_s[0] - payload_camera_s[0])
    slope, offset = np.polyfit(payload_camera_s, payload_mp4_s, 1)
    return float(slope), float(offset)


def read_stream(path: str | os.PathLike, fourcc: str, apply_orientation: bool = True) -> GpmfStream:
    """Reads one GPMF sensor stream (e.g. "ACCL", "GYRO") from a GoPro MP4."""
    return read_streams(path, [fourcc], apply_orientation)[fourcc]


def read_streams(path: str | os.PathLike, fourccs: Sequence[str],
                 apply_orientation: bool = True) -> dict[str, GpmfStream]:
    """Reads several GPMF sensor streams from a GoPro MP4, parsing its `gpmd` payloads once."""
    path = os.fspath(path)
    track = mp4.find_track(mp4.read_tracks(path), "meta", "gpmd", path)
    payloads = mp4.read_samples(path, track)
    parsed = [parse_klv(p, f"{path} gpmd payload {k}") for k, p in enumerate(payloads)]
    return {fourcc: _assemble(path, fourcc, parsed, track, apply_orientation) for fourcc in fourccs}


def _assemble(path: str, fourcc: str, parsed: list[list[KlvItem]], track: mp4.Mp4Track,
              apply_orientation: bool) -> GpmfStream:
    where = f"{path} {fourcc}"
    per_payload = []
    for k, items in enumerate(parsed):
        chunks = stream_chunks(items, fourcc, f"{path} gpmd payload {k}")
        if len(chunks) > 1:
            raise GpmfError(f"{path} gpmd payload {k}: {fourcc} appears {len(chunks)} times (several devices?)")
        per_payload.append((k, chunks[0]) if chunks else None)
    present = [p for p in per_payload if p is not None]
    if not present:
        raise GpmfError(f"{where}: stream not found in any of the {len(parsed)} gpmd payloads")

    first = present[0][1]
    elements = first.raw.shape[1]
    if any(c.raw.shape[1] != elements for _, c in present):
        raise GpmfError(f"{where}: element count changes between payloads")
    scale = _scale(first.properties, elements, where)
    matrix = _axis_matrix(first.properties, elements, where) if apply_orientation else None
    raw = np.concatenate([c.raw for _, c in present]).astype(np.float64)
    values = raw / scale
    if matrix is not None:
        values = values @ matrix.T

    counts = np.array([len(c.raw) for _, c in present], np.int64)
    index = np.array([k for k, _ in present])
    mp4_start = track.start_seconds[index]
    mp4_duration = track.duration_seconds[index]
    if all("STMP" in c.properties for _, c in present):
        stmp = np.array([float(np.asarray(c.properties["STMP"]).reshape(-1)[0]) for _, c in present]) * 1e-6
    else:  # no camera timestamps: use the payload times of the MP4 track
        stmp = mp4_start.astype(np.float64)
    camera_time = _sample_times(counts, stmp, float(mp4_duration[-1]), where)
    slope, offset = _mp4_timeline(stmp, mp4_start)
    units = first.properties.get("SIUN", first.properties.get("UNIT", ""))
    return GpmfStream(
        fourcc=fourcc,
        name=str(first.properties.get("STNM", fourcc)),
        units=units if isinstance(units, str) else ",".join(units),
        scale=scale,
        axis_matrix=matrix,
        values=values,
        camera_time_s=camera_time,
        video_time_s=camera_time * slope + offset,
        payload_counts=counts,
        payload_stmp_s=stmp,
    )
