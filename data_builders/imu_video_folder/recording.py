"""One recording of an `imu_video_folder` manifest read into segments of uniform-rate samples in SI units.

A recording without `timestamp_column` is one segment at the manifest's `rate_hz`. With timestamps, samples that
share a timestamp are averaged, gaps up to `max_gap_s` are linearly interpolated on a grid at `rate_hz`, and a longer
gap ends the segment (windows never span it). Every error names the file, and the line and column of a csv value
or the [row, column] of an .npy value.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from data_builders.imu_video_folder.manifest import Manifest, ManifestError, Recording
from imujax.io import csv_table, files, timeseries

FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass(frozen=True)
class Segment:
    imu: np.ndarray             # [T, C] float32, SI units, at the manifest's rate_hz
    labels: np.ndarray | None   # [T] int64 class index per sample (-1: unlabelled); None without label_column
    start_s: float              # time of imu[0] after the recording's first sample


def read_npy(path: str) -> np.ndarray:
    """A numeric .npy array, its header checked against the file before anything is allocated."""
    files.check_regular(path, ManifestError)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy format version {version}")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f, max_header_size=1 << 16)
        except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
            raise ManifestError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from None
        if dtype.kind not in "iuf":
            raise ManifestError(f"{path}: dtype {dtype} is not a plain integer or float type; IMU arrays are numeric")
        if any(n < 0 for n in shape):
            raise ManifestError(f"{path}: the header declares a negative dimension in shape {shape}")
        count = math.prod(shape)
        available = os.fstat(f.fileno()).st_size - f.tell()
        if count * dtype.itemsize > available:
            raise ManifestError(f"{path}: the header declares shape {shape} of {dtype} ({count * dtype.itemsize} "
                                f"bytes) but the file holds {available} bytes of data (truncated or forged)")
        data = np.fromfile(f, dtype=dtype, count=count)
    return data.reshape(shape, order="F" if fortran_order else "C")


def _labels(text: np.ndarray, lines: np.ndarray, classes: tuple[str, ...], path: str, column: str) -> np.ndarray:
    """Class index per sample; an empty cell is unlabelled (-1)."""
    index = {name: i for i, name in enumerate(classes)}
    out = np.array([index.get(t, -1 if t == "" else -2) for t in text.tolist()], np.int64)
    unknown = np.flatnonzero(out == -2)
    if unknown.size:
        i = unknown[0]
        raise ManifestError(f"{path}: line {lines[i]}, column {column!r}: label {str(text[i])!r} is not in classes "
                            f"{list(classes)} ({unknown.size} such rows)")
    return out


def _to_si(raw: np.ndarray, r: Recording, lines: np.ndarray | None, columns) -> np.ndarray:
    """Raw values x unit factors; values that are not finite in float32 afterwards are named."""
    raw = np.asarray(raw, np.float64)
    if not np.all(np.isfinite(raw)):  # only .npy can get here: the csv reader refuses non-finite cells
        bad = np.argwhere(~np.isfinite(raw))[:5].tolist()
        raise ManifestError(f"{r.imu}: contains NaN or infinite values, first at [row, column] {bad}")
    si = raw * np.asarray(r.factors)
    bad = np.argwhere(~(np.abs(si) <= FLOAT32_MAX))
    if bad.size:
        row, col = bad[0]
        row, col = int(row), int(col)
        at = f"line {lines[row]}, column {columns[col]!r}" if lines is not None else f"[row, column] {[row, col]}"
        raise ManifestError(f"{r.imu}: {len(bad)} value(s) are beyond the float32 range once converted to SI "
                            f"units (x {r.factors[col]:g}), first at {at}: {float(raw[row, col])!r}")
    return si


def read_segments(r: Recording, m: Manifest) -> list[Segment]:
    """The recording as uniform-rate segments; raises ManifestError / CsvFormatError / TimeSeriesError naming the
    file."""
    lines = times = labels = None
    if r.imu.endswith(".npy"):
        raw = read_npy(r.imu)
        if raw.ndim != 2 or raw.shape[1] != len(r.channels):
            raise ManifestError(f"{r.imu}: expected an array [T, {len(r.channels)}], got {raw.shape}")
        if not len(raw):
            raise ManifestError(f"{r.imu}: no samples (an empty recording)")
        columns = r.channels
    else:
        columns = r.csv_columns or r.channels
        table = csv_table.read_columns(r.imu, float_columns=[*columns, *filter(None, [r.timestamp_column])],
                                       text_columns=[r.label_column] if r.label_column else (), line_numbers=True)
        raw = np.stack([table[c] for c in columns], axis=1)
        lines = table[csv_table.LINE]
        if r.timestamp_column:
            times = table[r.timestamp_column] * r.timestamp_scale
        if r.label_column:
            labels = _labels(table[r.label_column], lines, m.classes, r.imu, r.label_column)
    si = _to_si(raw, r, lines, columns)
    if times is None:
        return [Segment(si.astype(np.float32), labels, 0.0)]
    return _resampled(times, si, labels, lines, r, m.rate_hz)


def _resampled(times, si, labels, lines, r: Recording, rate_hz: float) -> list[Segment]:
    backwards = np.flatnonzero(np.diff(times) < 0)
    if backwards.size:
        i = backwards[0] + 1
        raise timeseries.TimeSeriesError(f"{r.imu}: line {lines[i]}, column {r.timestamp_column!r}: timestamp goes "
                                         f"backwards ({times[i - 1]!r} -> {times[i]!r} s; {backwards.size} such rows)")
    _, first = np.unique(times, return_index=True)
    times, si = timeseries.dedupe_timestamps(times, si, r.imu)  # repeated timestamps: their samples averaged
    labels = None if labels is None else labels[first]          # ... and the first sample's label
    pieces = np.split(np.arange(len(times)), np.flatnonzero(np.diff(times) > r.max_gap_s) + 1)
    out = []
    for piece in pieces:
        t = times[piece]
        grid = timeseries.uniform_grid(t[0], t[-1], rate_hz)
        values = timeseries.resample_linear(t, si[piece], grid, r.imu) if len(t) > 1 else si[piece]
        seg_labels = None if labels is None else timeseries.nearest_labels(t, labels[piece], grid)
        out.append(Segment(values.astype(np.float32), seg_labels, float(t[0] - times[0])))
    return out
