"""Parsing helpers shared by the human-activity-recognition (HAR) dataset builders.

A parser turns a dataset's original files into `Session`s: one continuous recording of one subject at a uniform rate,
with signals in physical units (m/s², rad/s, µT or the dataset's magnetometer unit) and per-sample label indices
(`UNLABELED` where the dataset has no annotation). Errors are `HarFormatError`s that name the file and, where it
helps, the line, column or code that was not as expected.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import zipfile
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import signal

from imujax.io import timeseries

STANDARD_GRAVITY = 9.80665           # m/s² per g
DEG_TO_RAD = math.pi / 180.0
UNLABELED = -1


class HarFormatError(ValueError):
    """Raised for HAR files that do not follow their dataset's documented layout."""


@dataclasses.dataclass(frozen=True)
class Session:
    """One continuous, uniformly sampled recording."""

    session_id: str               # unique within the dataset, used in record ids
    subject: int
    signals: np.ndarray           # float64 [T, C], physical units
    labels: np.ndarray            # int64 [T], class index or UNLABELED
    rate_hz: float
    channels: tuple[str, ...]     # "<location>/<sensor>_<axis>"
    source: str                   # file(s) it came from, for error messages
    extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # float [T] side signals

    def __post_init__(self):
        if self.signals.ndim != 2 or self.signals.shape[1] != len(self.channels):
            raise HarFormatError(f"{self.source}: signals have shape {self.signals.shape}, expected [T, "
                                 f"{len(self.channels)}] for channels {self.channels}")
        if self.labels.shape != (len(self.signals),):
            raise HarFormatError(f"{self.source}: {len(self.labels)} labels for {len(self.signals)} samples")
        for name, values in self.extras.items():
            if np.shape(values) != (len(self.signals),):
                raise HarFormatError(f"{self.source}: extra signal {name!r} has shape {np.shape(values)}, "
                                     f"expected ({len(self.signals)},)")


def channel_names(location: str, sensors: Sequence[str] = ("acc", "gyro"), axes: str = "xyz") -> tuple[str, ...]:
    """`location/sensor_axis` for every sensor and axis, sensor-major (acc_x, acc_y, acc_z, gyro_x, ...)."""
    return tuple(f"{location}/{sensor}_{axis}" for sensor in sensors for axis in axes)


def _split(line: str, delimiter: str | None) -> list[str]:
    fields = line.split(delimiter)
    return [f.strip() for f in fields] if delimiter is not None else fields


def parse_numeric_lines(lines: Iterable[str], where: str, num_columns: int, delimiter: str | None = None,
                        first_line: int = 1, allow_nan: bool = False) -> np.ndarray:
    """float64 [N, num_columns] from text lines (blank lines skipped); errors name the file, line and column.

    `delimiter=None` splits on runs of whitespace. NaN tokens are accepted only with `allow_nan` (datasets that mark
    dropped packets as NaN); infinities never are.
    """
    rows = []
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        fields = _split(line.strip(), delimiter)
        if len(fields) != num_columns:
            raise HarFormatError(f"{where}: line {number} has {len(fields)} columns, expected {num_columns}")
        try:
            row = [float(f) for f in fields]
        except ValueError:
            column = next(i for i, f in enumerate(fields) if not _is_float(f))
            raise HarFormatError(f"{where}: line {number}, column {column + 1}: expected a number, "
                                 f"got {fields[column]!r}") from None
        bad = [i for i, v in enumerate(row) if math.isinf(v) or (math.isnan(v) and not allow_nan)]
        if bad:
            raise HarFormatError(f"{where}: line {number}, column {bad[0] + 1}: non-finite value {fields[bad[0]]!r}")
        rows.append(row)
    if not rows:
        raise HarFormatError(f"{where}: no data rows")
    return np.asarray(rows, np.float64)


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_numeric_table(path: str, num_columns: int, delimiter: str | None = None, skip_lines: int = 0,
                       allow_nan: bool = False) -> np.ndarray:
    """float64 [N, num_columns] from a headerless numeric text file (`skip_lines` header lines are dropped).

    Uses numpy's fast reader and falls back to a line-by-line scan only to explain a failure.
    """
    if not os.path.isfile(path):
        raise HarFormatError(f"{path}: file not found")
    try:
        table = np.loadtxt(path, delimiter=delimiter, skiprows=skip_lines, dtype=np.float64, ndmin=2,
                           comments=None)
    except ValueError:
        table = None
    if table is None or table.shape[1] != num_columns or (table.size and not allow_nan and
                                                            not np.all(np.isfinite(table))):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()[skip_lines:]
        return parse_numeric_lines(lines, path, num_columns, delimiter, first_line=skip_lines + 1,
                                   allow_nan=allow_nan)
    if len(table) == 0:
        raise HarFormatError(f"{path}: no data rows")
    if np.isinf(table).any():
        raise HarFormatError(f"{path}: infinite values")
    return table


def map_codes(codes: Sequence, mapping: Mapping, where: str, what: str = "label code") -> np.ndarray:
    """int64 class indices for dataset codes; an unknown code is an error naming the first row that has it."""
    out = np.empty(len(codes), np.int64)
    for i, code in enumerate(codes):
        try:
            out[i] = mapping[code]
        except KeyError:
            known = sorted(mapping, key=str)
            raise HarFormatError(f"{where}: unknown {what} {code!r} (row {i + 1}); expected one of {known}") from None
    return out


def interpolate_nan_gaps(values: np.ndarray, where: str, max_gap: int) -> np.ndarray:
    """Linear interpolation over NaN runs of at most `max_gap` samples per column (dropped wireless packets).

    Longer runs, or NaN at the start/end of a column, are an error: filling them would invent data.
    """
    values = np.array(values, np.float64)
    for column in range(values.shape[1]):
        missing = np.isnan(values[:, column])
        if not missing.any():
            continue
        if missing.all():
            raise HarFormatError(f"{where}: column {column} has no valid samples")
        edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        longest = int((stops - starts).max())
        if longest > max_gap or missing[0] or missing[-1]:
            raise HarFormatError(f"{where}: column {column} has a NaN gap of {longest} samples (or NaN at an end); "
                                 f"at most {max_gap} interior samples are interpolated")
        index = np.arange(len(values))
        values[missing, column] = np.interp(index[missing], index[~missing], values[~missing, column])
    return values


def gap_free_segments(missing: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges between runs of more than `max_gap` missing rows, trimmed of missing edge rows.

    Inside a range, missing runs are at most `max_gap` long and can be interpolated (see `interpolate_nan_gaps`).
    """
    missing = np.asarray(missing, bool)
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    run_starts, run_stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    breaks = [(a, b) for a, b in zip(run_starts, run_stops) if b - a > max_gap or a == 0 or b == len(missing)]
    segments, start = [], 0
    for a, b in breaks:
        if a > start:
            segments.append((start, int(a)))
        start = int(b)
    if start < len(missing):
        segments.append((start, len(missing)))
    return segments


def to_uniform_rate(times_s: np.ndarray, values: np.ndarray, labels: np.ndarray, rate_hz: float,
                    where: str) -> tuple[np.ndarray, np.ndarray]:
    """Irregularly timestamped samples -> (values [T, C], labels [T]) on a uniform grid from the first sample.

    Repeated timestamps are averaged; values are interpolated linearly, labels taken from the nearest raw sample.
    """
    times_s = np.asarray(times_s, np.float64)
    unique_times, unique_values = timeseries.dedupe_timestamps(times_s, values, where)
    if len(unique_times) < 2:
        raise HarFormatError(f"{where}: fewer than two distinct timestamps")
    grid = timeseries.uniform_grid(unique_times[0], unique_times[-1], rate_hz)
    resampled = timeseries.resample_linear(unique_times, unique_values, grid, where)
    return resampled, timeseries.nearest_labels(times_s, labels, grid)


def align_streams(streams: Sequence[tuple[np.ndarray, np.ndarray]], rate_hz: float, where: str,
                  labels: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Several (times_s, values [N, c]) streams linearly resampled on one uniform grid over their common span.

    `labels` = (times_s, labels) of the stream that carries annotations; returns (values [T, sum c], labels [T]).
    """
    deduped = [timeseries.dedupe_timestamps(t, v, where) for t, v in streams]
    start = max(t[0] for t, _ in deduped)
    stop = min(t[-1] for t, _ in deduped)
    grid = timeseries.uniform_grid(start, stop, rate_hz)
    if len(grid) < 2:
        raise HarFormatError(f"{where}: the sensor streams do not overlap in time")
    values = np.concatenate([timeseries.resample_linear(t, v, grid, where) for t, v in deduped], axis=1)
    grid_labels = None if labels is None else timeseries.nearest_labels(labels[0], labels[1], grid)
    return values, grid_labels


def resample_session(session: Session, rate_hz: float) -> Session:
    """The session at `rate_hz`: polyphase anti-aliased resampling of signals, nearest-sample labels and extras."""
    if abs(rate_hz - session.rate_hz) < 1e-9:
        return session
    ratio = Fraction(rate_hz / session.rate_hz).limit_denominator(1000)
    signals = signal.resample_poly(session.signals, ratio.numerator, ratio.denominator, axis=0)
    new_times = np.arange(len(signals)) / rate_hz
    source_index = np.clip(np.rint(new_times * session.rate_hz).astype(np.int64), 0, len(session.signals) - 1)
    return dataclasses.replace(
        session, signals=signals, labels=session.labels[source_index], rate_hz=float(rate_hz),
        extras={name: np.asarray(values)[source_index] for name, values in session.extras.items()})


def read_zip_member(zip_path: str, member: str) -> list[str]:
    """Text lines of one member of a zip archive; a missing member is an error naming both."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            with archive.open(member) as f:
                return io.TextIOWrapper(f, encoding="utf-8").read().splitlines()
    except KeyError:
        raise HarFormatError(f"{zip_path}: has no member {member!r}") from None
    except zipfile.BadZipFile as e:
        raise HarFormatError(f"{zip_path}: not a readable zip archive ({e})") from None


def header_index(header_line: str, required: Sequence[str], where: str, delimiter: str = ",") -> dict[str, int]:
    """Column name -> position in a csv header line; missing names are an error listing the header."""
    header = [name.strip().strip('"') for name in header_line.split(delimiter)]
    missing = [name for name in required if name not in header]
    if missing:
        raise HarFormatError(f"{where}: missing column(s) {missing}; header is {header}")
    return {name: header.index(name) for name in header}


def split_header_rows(lines: Sequence[str], where: str, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    """(header names, rows of stripped fields) of a csv given as lines; every row must match the header width."""
    if not lines:
        raise HarFormatError(f"{where}: empty file, expected a header row")
    header = [name.strip().strip('"') for name in lines[0].split(delimiter)]
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip().strip('"') for f in line.split(delimiter)]
        if len(fields) != len(header):
            raise HarFormatError(f"{where}: line {number} has {len(fields)} columns, the header has {len(header)}")
        rows.append(fields)
    if not rows:
        raise HarFormatError(f"{where}: no data rows")
    return header, rows


def float_columns(header: Sequence[str], rows: Sequence[Sequence[str]], names: Sequence[str],
                  where: str) -> np.ndarray:
    """float64 [N, len(names)] of the named columns; missing columns and non-numeric cells name file and line."""
    missing = [name for name in names if name not in header]
    if missing:
        raise HarFormatError(f"{where}: missing column(s) {missing}; header is {list(header)}")
    index = [list(header).index(name) for name in names]
    out = np.empty((len(rows), len(names)), np.float64)
    for r, row in enumerate(rows):
        for c, i in enumerate(index):
            try:
                out[r, c] = float(row[i])
            except ValueError:
                raise HarFormatError(f"{where}: data row {r + 1}, column {names[c]!r}: expected a number, "
                                     f"got {row[i]!r}") from None
    if not np.all(np.isfinite(out)):
        r, c = np.argwhere(~np.isfinite(out))[0]
        raise HarFormatError(f"{where}: data row {r + 1}, column {names[c]!r}: non-finite value")
    return out
