"""Reading HAPT ("Smartphone-Based Recognition of Human Activities and Postural Transitions", Reyes-Ortiz et al.).

Layout (the unzipped dataset): `RawData/acc_exp<EE>_user<UU>.txt` and `RawData/gyro_exp<EE>_user<UU>.txt`, three
whitespace-separated columns per row at 50 Hz (accelerometer in g, gyroscope in rad/s), and `RawData/labels.txt`
with rows `experiment user activity start end` (1-based inclusive sample indices into that experiment's files).
Activities 1-6 are the UCI HAR activities, 7-12 the postural transitions; samples outside every labelled interval
are unannotated.
"""

from __future__ import annotations

import os
import re

import numpy as np

from imujax.io import har

RATE_HZ = 50.0
LABEL_CODES = {
    1: "WALKING", 2: "WALKING_UPSTAIRS", 3: "WALKING_DOWNSTAIRS", 4: "SITTING", 5: "STANDING", 6: "LAYING",
    7: "STAND_TO_SIT", 8: "SIT_TO_STAND", 9: "SIT_TO_LIE", 10: "LIE_TO_SIT", 11: "STAND_TO_LIE", 12: "LIE_TO_STAND",
}
LABELS = tuple(LABEL_CODES.values())
# Each class as a readable activity phrase (zero-shot with text, benchmarks/real_data.py row z).
LABEL_TEXT = {
    "WALKING": "walking", "WALKING_UPSTAIRS": "walking upstairs", "WALKING_DOWNSTAIRS": "walking downstairs",
    "SITTING": "sitting", "STANDING": "standing", "LAYING": "lying", "STAND_TO_SIT": "sitting down from standing",
    "SIT_TO_STAND": "standing up from sitting", "SIT_TO_LIE": "lying down from sitting",
    "LIE_TO_SIT": "sitting up from lying", "STAND_TO_LIE": "lying down from standing",
    "LIE_TO_STAND": "standing up from lying",
}
CHANNELS = har.channel_names("waist")
_ACC = re.compile(r"^acc_exp(\d+)_user(\d+)\.txt$")


def find_raw(root: str) -> str:
    for candidate in (os.path.join(root, "RawData"), root):
        if os.path.isfile(os.path.join(candidate, "labels.txt")):
            return candidate
    raise har.HarFormatError(f"{root}: RawData/labels.txt not found (expected the unzipped HAPT dataset)")


def experiments(raw: str) -> list[tuple[int, int]]:
    """(experiment, user) of every acc_exp<EE>_user<UU>.txt."""
    return sorted((int(m.group(1)), int(m.group(2))) for name in os.listdir(raw) if (m := _ACC.match(name)))


def read_labels(raw: str) -> dict[int, np.ndarray]:
    """experiment -> int64 [K, 4] rows (user, class index, start, end) with 0-based inclusive sample indices."""
    path = os.path.join(raw, "labels.txt")
    table = har.read_numeric_table(path, 5)
    if np.any(table != np.round(table)):
        raise har.HarFormatError(f"{path}: expected integers")
    table = table.astype(np.int64)
    classes = har.map_codes(table[:, 2].tolist(), {c: i for i, c in enumerate(LABEL_CODES)}, path, "activity id")
    rows = np.stack([table[:, 1], classes, table[:, 3] - 1, table[:, 4] - 1], axis=1)
    return {int(e): rows[table[:, 0] == e] for e in np.unique(table[:, 0])}


def read_experiment(raw: str, experiment: int, user: int, intervals: np.ndarray | None) -> list[har.Session]:
    """One session per experiment: waist acc (g -> m/s²) + gyro (rad/s), per-sample labels from labels.txt."""
    acc_path = os.path.join(raw, f"acc_exp{experiment:02d}_user{user:02d}.txt")
    gyro_path = os.path.join(raw, f"gyro_exp{experiment:02d}_user{user:02d}.txt")
    acc = har.read_numeric_table(acc_path, 3) * har.STANDARD_GRAVITY
    gyro = har.read_numeric_table(gyro_path, 3)
    if len(acc) != len(gyro):
        raise har.HarFormatError(f"{acc_path}: {len(acc)} rows but {gyro_path} has {len(gyro)}")
    labels = np.full(len(acc), har.UNLABELED, np.int64)
    for row_user, label, start, end in (intervals if intervals is not None else np.zeros((0, 4), np.int64)):
        if row_user != user:
            raise har.HarFormatError(f"{os.path.join(raw, 'labels.txt')}: experiment {experiment} is labelled for "
                                     f"user {row_user}, its files are for user {user}")
        if not 0 <= start <= end < len(acc):
            raise har.HarFormatError(f"{os.path.join(raw, 'labels.txt')}: experiment {experiment} interval "
                                     f"{start + 1}-{end + 1} is outside its {len(acc)} samples")
        labels[start:end + 1] = label
    return [har.Session(f"exp{experiment:02d}_user{user:02d}", user, np.concatenate([acc, gyro], axis=1), labels,
                        RATE_HZ, CHANNELS, acc_path)]
