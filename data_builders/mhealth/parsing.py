"""Reading MHEALTH (Banos et al. 2014) in its original layout.

Layout: `MHEALTHDATASET/mHealth_subject<N>.log`, N = 1..10, tab-separated, 24 columns at 50 Hz: chest acceleration
(3, m/s²), ECG leads 1 and 2 (mV), left-ankle acceleration (3, m/s²), gyroscope (3, deg/s), magnetometer (3, local
units), right-lower-arm acceleration, gyroscope, magnetometer (same units), activity label (0 = null class).
"""

from __future__ import annotations

import os
import re

import numpy as np

from imujax.io import har

RATE_HZ = 50.0
NUM_COLUMNS = 24
LABEL_CODES = {
    1: "standing_still", 2: "sitting_and_relaxing", 3: "lying_down", 4: "walking", 5: "climbing_stairs",
    6: "waist_bends_forward", 7: "frontal_elevation_of_arms", 8: "knees_bending", 9: "cycling", 10: "jogging",
    11: "running", 12: "jump_front_and_back",
}
LABELS = tuple(LABEL_CODES.values())
CHANNELS = (har.channel_names("chest", ("acc",)) + har.channel_names("left_ankle", ("acc", "gyro", "mag"))
            + har.channel_names("right_lower_arm", ("acc", "gyro", "mag")))
# 0-based source columns in CHANNELS order (ECG columns 3 and 4 are left out) and which of them are gyroscopes.
SOURCE_COLUMNS = [0, 1, 2] + list(range(5, 14)) + list(range(14, 23))
GYRO_COLUMNS = [8, 9, 10, 17, 18, 19]
_FILE = re.compile(r"^mHealth_subject(\d+)\.log$")


def find_files(root: str) -> list[tuple[int, str]]:
    base = os.path.join(root, "MHEALTHDATASET") if os.path.isdir(os.path.join(root, "MHEALTHDATASET")) else root
    found = [(int(m.group(1)), os.path.join(base, name)) for name in sorted(os.listdir(base))
             if (m := _FILE.match(name))]
    if not found:
        raise har.HarFormatError(f"{base}: no mHealth_subject<N>.log files (expected the unzipped MHEALTHDATASET)")
    return found


def read_log(path: str, subject: int) -> list[har.Session]:
    """One session per file: 21 channels, gyroscopes converted from deg/s to rad/s; label 0 is unannotated."""
    table = har.read_numeric_table(path, NUM_COLUMNS, delimiter="\t")
    signals = table[:, SOURCE_COLUMNS].copy()
    signals[:, [SOURCE_COLUMNS.index(c) for c in GYRO_COLUMNS]] *= har.DEG_TO_RAD
    codes = table[:, -1]
    if np.any(codes != np.round(codes)):
        raise har.HarFormatError(f"{path}: the label column (24) must hold integers")
    index = {code: i for i, code in enumerate(LABEL_CODES)} | {0: har.UNLABELED}
    labels = har.map_codes(codes.astype(np.int64).tolist(), index, path)
    return [har.Session(f"subject{subject}", subject, signals, labels, RATE_HZ, CHANNELS, path)]
