"""Time-series helpers shared by IMU builders: rate estimation, duplicate timestamps, resampling, windows, labels.

All times are float64 seconds. Functions take a `where` string (file name, stream) that is put in error messages.
"""

from __future__ import annotations

import numpy as np


class TimeSeriesError(ValueError):
    """Raised for timestamps or windows that cannot be processed."""


def estimate_rate_hz(times_s: np.ndarray, where: str = "timestamps") -> float:
    """Mean sampling rate: (number of intervals) / (first-to-last time span)."""
    times_s = np.asarray(times_s, np.float64)
    if times_s.size < 2 or times_s[-1] <= times_s[0]:
        raise TimeSeriesError(f"{where}: need at least two distinct timestamps to estimate a rate")
    return float((times_s.size - 1) / (times_s[-1] - times_s[0]))


def check_non_decreasing(times_s: np.ndarray, where: str) -> None:
    steps = np.diff(times_s)
    bad = np.flatnonzero(steps < 0)
    if bad.size:
        raise TimeSeriesError(f"{where}: timestamps go backwards at sample(s) {(bad + 1)[:5].tolist()} "
                              f"(first step {steps[bad[0]]:.6g} s)")


def dedupe_timestamps(times_s: np.ndarray, values: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Merges samples that share a timestamp by averaging them; returns strictly increasing times.

    Repeated timestamps come from loggers that stamp a batch of sensor events with one clock read; the average is
    the best single value for that instant.
    """
    times_s = np.asarray(times_s, np.float64)
    values = np.asarray(values, np.float64)
    if len(times_s) != len(values):
        raise TimeSeriesError(f"{where}: {len(times_s)} timestamps for {len(values)} samples")
    check_non_decreasing(times_s, where)
    unique, first_index, counts = np.unique(times_s, return_index=True, return_counts=True)
    if len(unique) == len(times_s):
        return times_s, values
    sums = np.add.reduceat(values, first_index, axis=0)
    return unique, sums / counts.reshape((-1,) + (1,) * (values.ndim - 1))


def uniform_grid(start_s: float, stop_s: float, rate_hz: float) -> np.ndarray:
    """start, start + 1/rate, ... up to and including stop (within 1e-9 s)."""
    if rate_hz <= 0:
        raise TimeSeriesError(f"rate must be positive, got {rate_hz}")
    if stop_s < start_s:
        return np.zeros(0)
    n = int(np.floor((stop_s - start_s) * rate_hz + 1e-9)) + 1
    return start_s + np.arange(n) / rate_hz


def resample_linear(times_s: np.ndarray, values: np.ndarray, grid_s: np.ndarray, where: str) -> np.ndarray:
    """Linear interpolation of each column of `values` [N, C] at `grid_s`; times must be strictly increasing."""
    times_s = np.asarray(times_s, np.float64)
    values = np.asarray(values, np.float64)
    if np.any(np.diff(times_s) <= 0):
        raise TimeSeriesError(f"{where}: resampling needs strictly increasing timestamps (de-duplicate first)")
    tolerance = 1e-9
    if grid_s.size and (grid_s[0] < times_s[0] - tolerance or grid_s[-1] > times_s[-1] + tolerance):
        raise TimeSeriesError(f"{where}: grid {grid_s[0]:.6f}..{grid_s[-1]:.6f} s extends outside the data "
                              f"{times_s[0]:.6f}..{times_s[-1]:.6f} s; extrapolation is not allowed")
    columns = values.reshape(len(values), -1).T
    out = np.stack([np.interp(grid_s, times_s, column) for column in columns], axis=-1)
    return out.reshape((len(grid_s),) + values.shape[1:])


def nearest_labels(times_s: np.ndarray, labels: np.ndarray, grid_s: np.ndarray) -> np.ndarray:
    """Label of the original sample nearest in time to each grid point (ties go to the earlier sample)."""
    times_s = np.asarray(times_s, np.float64)
    right = np.clip(np.searchsorted(times_s, grid_s, side="left"), 0, len(times_s) - 1)
    left = np.clip(right - 1, 0, len(times_s) - 1)
    use_left = np.abs(grid_s - times_s[left]) <= np.abs(times_s[right] - grid_s)
    return np.asarray(labels)[np.where(use_left, left, right)]


def window_starts(num_samples: int, window: int, stride: int) -> np.ndarray:
    """Start indices of every full window of `window` samples taken every `stride` samples."""
    if window <= 0 or stride <= 0:
        raise TimeSeriesError(f"window ({window}) and stride ({stride}) must be positive sample counts")
    if num_samples < window:
        return np.zeros(0, np.int64)
    return np.arange(0, num_samples - window + 1, stride, dtype=np.int64)


def majority_label(labels: np.ndarray, num_classes: int) -> int:
    """Most frequent class index in `labels`; a tie goes to the smallest class index."""
    labels = np.asarray(labels, np.int64)
    if labels.size == 0:
        raise TimeSeriesError("majority label of an empty window")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise TimeSeriesError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return int(np.argmax(np.bincount(labels, minlength=num_classes)))


def window_labels(labels: np.ndarray, starts: np.ndarray, window: int, num_classes: int) -> np.ndarray:
    """Majority label of each window labels[s : s + window]."""
    return np.array([majority_label(labels[s:s + window], num_classes) for s in starts], np.int64)
