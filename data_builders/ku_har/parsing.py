"""Reading KU-HAR (Sikder & Nahid 2021) in its original layout.

Layout: `1.Raw_time_domian_data/<code>.<Name>/<subject>_<letter>_<trial>.csv` (the folder name's "domian" typo is
the dataset's), 18 class folders `0.Stand` ... `17.Table-tennis`. Each csv has no header and 8 columns: accelerometer
time (s), acceleration x, y, z (m/s²), gyroscope time (s), angular rate x, y, z (rad/s), at about 100 Hz from a
smartphone in a waist bag.
"""

from __future__ import annotations

import os
import re

import numpy as np

from imujax.io import har

RATE_HZ = 100.0
LABEL_CODES = {
    0: "Stand", 1: "Sit", 2: "Talk-sit", 3: "Talk-stand", 4: "Stand-sit", 5: "Lay", 6: "Lay-stand", 7: "Pick",
    8: "Jump", 9: "Push-up", 10: "Sit-up", 11: "Walk", 12: "Walk-backward", 13: "Walk-circle", 14: "Run",
    15: "Stair-up", 16: "Stair-down", 17: "Table-tennis",
}
LABELS = tuple(LABEL_CODES.values())
CHANNELS = har.channel_names("waist")
_FOLDER = re.compile(r"^(\d+)\.(.+)$")
_FILE = re.compile(r"^(\d+)_([A-Za-z]+)_(\d+)\.csv$")
_RAW_DIRS = ("1.Raw_time_domian_data", "1.Raw_time_domain_data")


def find_raw(root: str) -> str:
    for name in _RAW_DIRS:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    if any(_FOLDER.match(n) for n in os.listdir(root)):
        return root
    raise har.HarFormatError(f"{root}: '1.Raw_time_domian_data/' not found (expected the unzipped KU-HAR dataset)")


def find_files(raw: str) -> list[tuple[int, int, str, str]]:
    """(class code, subject, trial id, path); a class folder whose number and name disagree is an error."""
    out = []
    for folder in sorted(os.listdir(raw)):
        match = _FOLDER.match(folder)
        if not match or not os.path.isdir(os.path.join(raw, folder)):
            continue
        code = int(match.group(1))
        # folder spellings vary in a trailing "s" ("Walk-backwards"), so compare without it
        if code not in LABEL_CODES or match.group(2).rstrip("s").lower() != LABEL_CODES[code].rstrip("s").lower():
            raise har.HarFormatError(f"{os.path.join(raw, folder)}: unknown class folder; expected "
                                     f"'<code>.<name>' with one of {LABEL_CODES}")
        for name in sorted(os.listdir(os.path.join(raw, folder))):
            file_match = _FILE.match(name)
            if file_match:
                trial = f"{file_match.group(2)}_{file_match.group(3)}"
                out.append((code, int(file_match.group(1)), trial, os.path.join(raw, folder, name)))
    return out


def read_file(path: str, code: int, subject: int, trial: str) -> list[har.Session]:
    """One session: accelerometer and gyroscope (own time columns) aligned on a 100 Hz grid."""
    table = har.read_numeric_table(path, 8, delimiter=",")
    acc_t, gyro_t = table[:, 0], table[:, 4]
    signals, _ = har.align_streams([(acc_t, table[:, 1:4]), (gyro_t, table[:, 5:8])], RATE_HZ, path)
    labels = np.full(len(signals), code, np.int64)
    return [har.Session(f"{code:02d}_{subject}_{trial}", subject, signals, labels, RATE_HZ, CHANNELS, path)]
