"""Reading DSADS ("Daily and Sports Activities", Altun, Barshan & Tunçel 2010) in its original layout.

Layout: `data/a<AA>/p<P>/s<SS>.txt`: activity a01-a19, subject p1-p8, segment s01-s60. Each file is one 5 s segment
(125 rows at 25 Hz) of 45 comma-separated columns: for each unit torso (T), right arm (RA), left arm (LA), right leg
(RL), left leg (LL), the x, y, z accelerometer (m/s²), gyroscope (rad/s) and magnetometer (Xsens MTx units,
normalised to the earth field). The 60 segments of one activity and subject are consecutive parts of one 5-minute
recording and are joined into one session here.
"""

from __future__ import annotations

import os
import re

import numpy as np

from imujax.io import har

RATE_HZ = 25.0
SEGMENT_ROWS = 125
NUM_COLUMNS = 45
LABEL_CODES = {
    1: "sitting", 2: "standing", 3: "lying_on_back", 4: "lying_on_right_side", 5: "ascending_stairs",
    6: "descending_stairs", 7: "standing_in_elevator", 8: "moving_around_in_elevator", 9: "walking_in_parking_lot",
    10: "walking_on_treadmill_flat", 11: "walking_on_treadmill_inclined", 12: "running_on_treadmill",
    13: "exercising_on_stepper", 14: "exercising_on_cross_trainer", 15: "cycling_horizontal",
    16: "cycling_vertical", 17: "rowing", 18: "jumping", 19: "playing_basketball",
}
LABELS = tuple(LABEL_CODES.values())
# Each class as a readable activity phrase (zero-shot with text, benchmarks/real_data.py row z); cycling: the
# dataset's "exercise bike in horizontal and vertical positions".
LABEL_TEXT = {
    "sitting": "sitting", "standing": "standing", "lying_on_back": "lying on the back",
    "lying_on_right_side": "lying on the right side", "ascending_stairs": "ascending stairs",
    "descending_stairs": "descending stairs", "standing_in_elevator": "standing in an elevator",
    "moving_around_in_elevator": "moving around in an elevator", "walking_in_parking_lot": "walking in a parking lot",
    "walking_on_treadmill_flat": "walking on a flat treadmill",
    "walking_on_treadmill_inclined": "walking on an inclined treadmill",
    "running_on_treadmill": "running on a treadmill",
    "exercising_on_stepper": "exercising on a stepper", "exercising_on_cross_trainer": "exercising on a cross trainer",
    "cycling_horizontal": "cycling on an exercise bike in horizontal position",
    "cycling_vertical": "cycling on an exercise bike in vertical position", "rowing": "rowing", "jumping": "jumping",
    "playing_basketball": "playing basketball",
}
UNITS = ("torso", "right_arm", "left_arm", "right_leg", "left_leg")
CHANNELS = tuple(c for unit in UNITS for c in har.channel_names(unit, ("acc", "gyro", "mag")))
_ACTIVITY, _SUBJECT, _SEGMENT = re.compile(r"^a(\d\d)$"), re.compile(r"^p(\d+)$"), re.compile(r"^s(\d\d)\.txt$")


def find_data_dir(root: str) -> str:
    for candidate in (os.path.join(root, "data"), root):
        if os.path.isdir(candidate) and any(_ACTIVITY.match(n) for n in os.listdir(candidate)):
            return candidate
    raise har.HarFormatError(f"{root}: no a01..a19 activity folders (expected the unzipped DSADS data/ folder)")


def recordings(data_dir: str) -> list[tuple[int, int, str]]:
    """(activity code, subject, folder) of every a<AA>/p<P> folder; an unknown activity folder is an error."""
    out = []
    for activity_name in sorted(os.listdir(data_dir)):
        match = _ACTIVITY.match(activity_name)
        if not match:
            continue
        code = int(match.group(1))
        if code not in LABEL_CODES:
            raise har.HarFormatError(f"{os.path.join(data_dir, activity_name)}: unknown activity code {code}; "
                                     f"expected a01..a19")
        for subject_name in sorted(os.listdir(os.path.join(data_dir, activity_name))):
            subject = _SUBJECT.match(subject_name)
            if subject:
                out.append((code, int(subject.group(1)), os.path.join(data_dir, activity_name, subject_name)))
    return out


def read_recording(folder: str, code: int, subject: int) -> list[har.Session]:
    """The segments s01, s02, ... of one folder joined in order into one 45-channel session."""
    segments = sorted((int(m.group(1)), name) for name in os.listdir(folder) if (m := _SEGMENT.match(name)))
    if not segments:
        raise har.HarFormatError(f"{folder}: no sNN.txt segment files")
    numbers = [n for n, _ in segments]
    if numbers != list(range(1, len(numbers) + 1)):
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        raise har.HarFormatError(f"{folder}: segment file(s) {['s%02d.txt' % n for n in missing]} missing")
    tables = []
    for _, name in segments:
        path = os.path.join(folder, name)
        table = har.read_numeric_table(path, NUM_COLUMNS, delimiter=",")
        if len(table) != SEGMENT_ROWS:
            raise har.HarFormatError(f"{path}: {len(table)} rows, expected {SEGMENT_ROWS} (5 s at 25 Hz)")
        tables.append(table)
    signals = np.concatenate(tables)
    labels = np.full(len(signals), LABELS.index(LABEL_CODES[code]), np.int64)
    return [har.Session(f"a{code:02d}_p{subject}", subject, signals, labels, RATE_HZ, CHANNELS, folder)]
