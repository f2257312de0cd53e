"""Reading the sp-sw-har dataset in its original layout (Matey-Sanz et al., Data in Brief 2023).

Layout: `<root>/sXX/sXX_YY_{sp,sw}.csv` (sp = smartphone, sw = smartwatch), `<root>/subjects_info.csv`,
`<root>/executions_info.csv`. Each csv has the header `x_acc,y_acc,z_acc,x_gyro,y_gyro,z_gyro,timestamp,label`:
acceleration in m/s² with gravity, angular rate in rad/s, UNIX epoch milliseconds (jittery, with repeated values),
and a per-sample activity label. Phone and watch of one execution share the timestamp clock.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from imujax.io import csv_table, timeseries

LABELS = ("SEATED", "STANDING_UP", "WALKING", "TURNING", "SITTING_DOWN")
# Each class as a readable activity phrase (zero-shot with text, benchmarks/real_data.py row z).
LABEL_TEXT = {"SEATED": "seated", "STANDING_UP": "standing up", "WALKING": "walking", "TURNING": "turning",
              "SITTING_DOWN": "sitting down"}
ORIENTATIONS = ("back", "back_inv", "front", "front_inv")
VALUE_COLUMNS = ("x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro")
DEVICE_SUFFIX = {"phone": "sp", "watch": "sw"}
CHANNELS = tuple(f"{device}/{sensor}_{axis}" for device in DEVICE_SUFFIX
                 for sensor in ("acc", "gyro") for axis in "xyz")
_FILE_PATTERN = re.compile(r"^(s\d+)_(\d+)_(sp|sw)\.csv$")


class SpSwHarError(ValueError):
    """Raised for files or metadata that do not follow the dataset's layout."""


@dataclasses.dataclass(frozen=True)
class DeviceRecording:
    path: str
    timestamps_ms: np.ndarray  # int64 [N], UNIX epoch milliseconds as recorded
    values: np.ndarray         # float64 [N, 6]: acc xyz (m/s²), gyro xyz (rad/s)
    labels: np.ndarray         # int64 [N], index into LABELS

    @property
    def rate_hz(self) -> float:
        """Mean rate of the raw samples (before any resampling)."""
        return timeseries.estimate_rate_hz(self.timestamps_ms / 1000.0, self.path)

    @property
    def repeated_timestamps(self) -> int:
        return int(np.sum(np.diff(self.timestamps_ms) == 0))


@dataclasses.dataclass(frozen=True)
class Execution:
    execution_id: str  # e.g. "s01_03"
    subject: str       # e.g. "s01"
    phone_csv: str
    watch_csv: str

    @property
    def subject_number(self) -> int:
        return int(self.subject[1:])


def read_device_csv(path: str) -> DeviceRecording:
    """Parses one `sXX_YY_{sp|sw}.csv`, checking columns, finite values, labels and timestamp order."""
    columns = csv_table.read_columns(path, float_columns=VALUE_COLUMNS, int_columns=("timestamp",),
                                     text_columns=("label",))
    names = columns["label"]
    unknown = sorted(set(names.tolist()) - set(LABELS))
    if unknown:
        line = int(np.flatnonzero(~np.isin(names, LABELS))[0]) + 2
        raise SpSwHarError(f"{path}: unknown label(s) {unknown} (first at line {line}); expected one of {LABELS}")
    timestamps = columns["timestamp"]
    timeseries.check_non_decreasing(timestamps.astype(np.float64), path)
    values = np.stack([columns[name] for name in VALUE_COLUMNS], axis=1)
    index = {name: i for i, name in enumerate(LABELS)}
    labels = np.array([index[name] for name in names.tolist()], np.int64)
    return DeviceRecording(path, timestamps, values, labels)


def discover_executions(root: str) -> tuple[list[Execution], list[dict[str, str]]]:
    """Executions with both csv files, plus a report of csv files that have no partner or an unexpected name."""
    by_id: dict[str, dict[str, str]] = {}
    problems = []
    for entry in sorted(os.listdir(root)):
        folder = os.path.join(root, entry)
        if not (os.path.isdir(folder) and re.fullmatch(r"s\d+", entry)):
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".csv"):
                continue
            match = _FILE_PATTERN.match(name)
            if not match or match.group(1) != entry:
                problems.append({"file": f"{entry}/{name}", "error": "name is not sXX_YY_{sp|sw}.csv of its folder"})
                continue
            subject, number, device = match.groups()
            by_id.setdefault(f"{subject}_{number}", {})[device] = os.path.join(folder, name)
    executions = []
    for execution_id, files in sorted(by_id.items()):
        if set(files) != {"sp", "sw"}:
            present = next(iter(files.values()))
            problems.append({"file": os.path.relpath(present, root),
                             "error": f"execution {execution_id} lacks its "
                                      f"{'watch (_sw)' if 'sp' in files else 'phone (_sp)'} csv"})
            continue
        executions.append(Execution(execution_id, execution_id.split("_")[0], files["sp"], files["sw"]))
    return executions, problems


def read_subjects_info(root: str) -> dict[str, int]:
    """subject id -> number of executions listed in `subjects_info.csv`."""
    path = os.path.join(root, "subjects_info.csv")
    rows = csv_table.read_records(path, ["subject_id", "executions"])
    try:
        return {row["subject_id"]: int(row["executions"]) for row in rows}
    except ValueError as e:
        raise SpSwHarError(f"{path}: 'executions' must be an integer: {e}") from None


def read_execution_orientations(root: str) -> dict[str, str]:
    """execution id -> phone orientation from `executions_info.csv`."""
    path = os.path.join(root, "executions_info.csv")
    rows = csv_table.read_records(path, ["execution_id", "orientation"])
    bad = [row["orientation"] for row in rows if row["orientation"] not in ORIENTATIONS]
    if bad:
        raise SpSwHarError(f"{path}: unknown orientation(s) {sorted(set(bad))}; expected one of {ORIENTATIONS}")
    return {row["execution_id"]: row["orientation"] for row in rows}


@dataclasses.dataclass(frozen=True)
class PairedRecording:
    start_ms: float       # UNIX ms of the first grid point
    imu: np.ndarray       # float64 [T, 12] on the uniform grid, channels as CHANNELS
    labels: np.ndarray    # int64 [T], per resampled sample


def pair_and_resample(phone: DeviceRecording, watch: DeviceRecording, rate_hz: float,
                      label_source: str = "phone") -> PairedRecording:
    """Both devices linearly resampled on one uniform grid over their overlapping time span.

    Repeated timestamps are merged (averaged) first. Per-sample labels come from the nearest raw sample of
    `label_source` ("phone" or "watch"); the two devices' labels agree to within about 40 ms.
    """
    if label_source not in DEVICE_SUFFIX:
        raise SpSwHarError(f"label_source must be 'phone' or 'watch', got {label_source!r}")
    origin_ms = min(phone.timestamps_ms[0], watch.timestamps_ms[0])
    deduped = {}
    for name, rec in (("phone", phone), ("watch", watch)):
        times = (rec.timestamps_ms - origin_ms) / 1000.0
        deduped[name] = timeseries.dedupe_timestamps(times, rec.values, rec.path)
    start = max(t[0] for t, _ in deduped.values())
    stop = min(t[-1] for t, _ in deduped.values())
    grid = timeseries.uniform_grid(start, stop, rate_hz)
    if len(grid) < 2:
        raise SpSwHarError(f"{phone.path} and {watch.path}: the two recordings do not overlap in time")
    imu = np.concatenate([timeseries.resample_linear(t, v, grid, path)
                          for (t, v), path in zip(deduped.values(), (phone.path, watch.path))], axis=1)
    source = phone if label_source == "phone" else watch
    labels = timeseries.nearest_labels((source.timestamps_ms - origin_ms) / 1000.0, source.labels, grid)
    return PairedRecording(float(origin_ms + start * 1000.0), imu, labels)
