"""Reading PAMAP2 (Reiss & Stricker 2012) in its original layout.

Layout: `PAMAP2_Dataset/Protocol/subject1NN.dat` (and optionally `Optional/subject1NN.dat`), whitespace-separated,
54 columns per row at 100 Hz: 1 timestamp (s), 2 activity id, 3 heart rate (bpm, about 9 Hz, NaN in between), then
17 columns for each IMU (hand, chest, ankle): temperature (°C), 3D acceleration ±16 g scale (m/s²), 3D acceleration
±6 g scale (m/s²), 3D gyroscope (rad/s), 3D magnetometer (µT), 4D orientation (invalid in this release).
Dropped wireless packets appear as NaN. Activity id 0 marks transient periods and is treated as unannotated.
"""

from __future__ import annotations

import os
import re

import numpy as np

from imujax.io import har

RATE_HZ = 100.0
NUM_COLUMNS = 54
LABEL_CODES = {
    1: "lying", 2: "sitting", 3: "standing", 4: "walking", 5: "running", 6: "cycling", 7: "nordic_walking",
    9: "watching_tv", 10: "computer_work", 11: "car_driving", 12: "ascending_stairs", 13: "descending_stairs",
    16: "vacuum_cleaning", 17: "ironing", 18: "folding_laundry", 19: "house_cleaning", 20: "playing_soccer",
    24: "rope_jumping",
}
LABELS = tuple(LABEL_CODES.values())
IMUS = ("hand", "chest", "ankle")
CHANNELS = tuple(c for imu in IMUS for c in har.channel_names(imu, ("acc", "gyro", "mag")))
# 0-based columns: per IMU, acc ±16 g at offset 1..3, gyro at 7..9, magnetometer at 10..12 after its first column.
IMU_COLUMNS = [start + offset for start in (3, 20, 37) for offset in (1, 2, 3, 7, 8, 9, 10, 11, 12)]
MAX_INTERPOLATED_GAP = 10   # samples (0.1 s); longer gaps split the recording
_FILE = re.compile(r"^subject(\d+)\.dat$")


def find_files(root: str, folders: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """(subject, folder, path) of every `subjectNNN.dat` under `PAMAP2_Dataset/<folder>` (or `root/<folder>`)."""
    base = os.path.join(root, "PAMAP2_Dataset") if os.path.isdir(os.path.join(root, "PAMAP2_Dataset")) else root
    out = []
    for folder in folders:
        directory = os.path.join(base, folder)
        if not os.path.isdir(directory):
            raise har.HarFormatError(f"{directory}: folder not found (expected the unzipped PAMAP2_Dataset)")
        for name in sorted(os.listdir(directory)):
            match = _FILE.match(name)
            if match:
                out.append((int(match.group(1)), folder, os.path.join(directory, name)))
    return out


def read_dat(path: str, subject: int, folder: str) -> list[har.Session]:
    """Sessions of one .dat file: 27 channels (acc ±16 g, gyro, mag per IMU), heart rate as an extra signal.

    NaN runs of up to 0.1 s are linearly interpolated; longer runs and timestamp gaps split the file into sessions.
    """
    table = har.read_numeric_table(path, NUM_COLUMNS, allow_nan=True)
    times, codes, heart_rate = table[:, 0], table[:, 1], table[:, 2]
    if np.isnan(times).any() or np.isnan(codes).any():
        row = int(np.flatnonzero(np.isnan(times) | np.isnan(codes))[0]) + 1
        raise har.HarFormatError(f"{path}: line {row}: timestamp and activity id must not be NaN")
    code_index = {code: i for i, code in enumerate(LABEL_CODES)} | {0: har.UNLABELED}
    labels = har.map_codes(codes.astype(np.int64).tolist(), code_index, path, "activity id")
    imu = table[:, IMU_COLUMNS]
    steps = np.diff(times)
    if np.any(steps <= 0):
        raise har.HarFormatError(f"{path}: line {int(np.flatnonzero(steps <= 0)[0]) + 2}: timestamps must increase")
    # Heart rate is sampled at about 9 Hz: hold each reading until the next one.
    filled = heart_rate.copy()
    have = np.flatnonzero(~np.isnan(heart_rate))
    if have.size:
        index = np.maximum.accumulate(np.where(np.isnan(heart_rate), -1, np.arange(len(heart_rate))))
        filled = np.where(index >= 0, heart_rate[np.maximum(index, 0)], np.nan)
    missing = np.isnan(imu).any(axis=1)
    missing[1:] |= steps > 1.5 / RATE_HZ  # a timestamp gap starts a new session
    sessions = []
    for k, (a, b) in enumerate(har.gap_free_segments(missing, MAX_INTERPOLATED_GAP)):
        values = har.interpolate_nan_gaps(imu[a:b], f"{path} rows {a + 1}-{b}", MAX_INTERPOLATED_GAP)
        sessions.append(har.Session(f"{folder.lower()}_{subject}_{k:02d}", subject, values, labels[a:b], RATE_HZ,
                                    CHANNELS, path, extras={"heart_rate_bpm": filled[a:b]}))
    return sessions
