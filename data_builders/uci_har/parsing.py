"""Reading UCI HAR ("Human Activity Recognition Using Smartphones", Reyes-Ortiz et al. 2012) in its original layout.

Layout (the unzipped `UCI HAR Dataset/` folder): `activity_labels.txt`, and for each split `train`/`test`:
`subject_<split>.txt` and `y_<split>.txt` (one integer per window) and `Inertial Signals/<signal>_<axis>_<split>.txt`
with one pre-cut window of 128 samples (2.56 s at 50 Hz, 50 % overlap) per line. We use `total_acc` (in g, with
gravity; converted to m/s²) and `body_gyro` (rad/s). `body_acc` is total_acc minus a filtered gravity estimate and is
not a raw signal, so it is not used.
"""

from __future__ import annotations

import os

import numpy as np

from imujax.io import har

RATE_HZ = 50.0
WINDOW_SAMPLES = 128
LABEL_CODES = {1: "WALKING", 2: "WALKING_UPSTAIRS", 3: "WALKING_DOWNSTAIRS", 4: "SITTING", 5: "STANDING",
               6: "LAYING"}
LABELS = tuple(LABEL_CODES.values())
CHANNELS = har.channel_names("waist")
SPLITS = ("train", "test")
# The dataset's own test subjects (9 of 30).
TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)


def find_root(root: str) -> str:
    """The folder holding train/ and test/: `root` itself or its `UCI HAR Dataset/` child."""
    for candidate in (root, os.path.join(root, "UCI HAR Dataset")):
        if all(os.path.isdir(os.path.join(candidate, split)) for split in SPLITS):
            return candidate
    raise har.HarFormatError(f"{root}: expected train/ and test/ folders (the unzipped 'UCI HAR Dataset')")


def _integers(path: str, expected_rows: int | None = None) -> np.ndarray:
    values = har.read_numeric_table(path, 1)[:, 0]
    if np.any(values != np.round(values)):
        raise har.HarFormatError(f"{path}: expected integers")
    if expected_rows is not None and len(values) != expected_rows:
        raise har.HarFormatError(f"{path}: {len(values)} rows, the inertial signal files have {expected_rows}")
    return values.astype(np.int64)


def read_split(root: str, split: str) -> list[har.Session]:
    """One session per pre-cut window of `split`, 6 channels (waist acc in m/s², gyro in rad/s)."""
    folder = os.path.join(root, split)
    signals = []
    for sensor, scale in (("total_acc", har.STANDARD_GRAVITY), ("body_gyro", 1.0)):
        for axis in "xyz":
            path = os.path.join(folder, "Inertial Signals", f"{sensor}_{axis}_{split}.txt")
            signals.append(har.read_numeric_table(path, WINDOW_SAMPLES) * scale)
    rows = len(signals[0])
    if any(len(table) != rows for table in signals):
        raise har.HarFormatError(f"{folder}/Inertial Signals: signal files have different row counts "
                                 f"({[len(t) for t in signals]})")
    subjects = _integers(os.path.join(folder, f"subject_{split}.txt"), rows)
    y_path = os.path.join(folder, f"y_{split}.txt")
    labels = har.map_codes(_integers(y_path, rows).tolist(), {c: i for i, c in enumerate(LABEL_CODES)}, y_path)
    windows = np.stack(signals, axis=-1)  # [rows, 128, 6]
    return [har.Session(f"{split}_{row:05d}", int(subjects[row]), windows[row],
                        np.full(WINDOW_SAMPLES, labels[row], np.int64), RATE_HZ, CHANNELS,
                        f"{folder} row {row + 1}")
            for row in range(rows)]
