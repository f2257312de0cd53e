"""Reading MotionSense (Malekzadeh et al. 2019) in its original layout.

Layout: `A_DeviceMotion_data/<code>_<trial>/sub_<N>.csv` (subjects 1-24; trial folders such as `dws_1`, `ups_3`,
`wlk_7`, `jog_9`, `sit_5`, `std_6`), each a csv at 50 Hz with an unnamed index column and `attitude.roll/pitch/yaw`
(rad), `gravity.x/y/z` (g), `rotationRate.x/y/z` (rad/s), `userAcceleration.x/y/z` (g) from iOS Core Motion; the
iPhone was in the front trouser pocket.
"""

from __future__ import annotations

import os
import re

import numpy as np

from imujax.io import har

RATE_HZ = 50.0
LABEL_CODES = {"dws": "downstairs", "ups": "upstairs", "wlk": "walking", "jog": "jogging", "sit": "sitting",
               "std": "standing"}
LABELS = tuple(LABEL_CODES.values())
# Each class as a readable activity phrase (zero-shot with text, benchmarks/real_data.py row z).
LABEL_TEXT = {"downstairs": "walking downstairs", "upstairs": "walking upstairs", "walking": "walking",
              "jogging": "jogging", "sitting": "sitting", "standing": "standing"}
CHANNELS = har.channel_names("pocket")
GRAVITY = ("gravity.x", "gravity.y", "gravity.z")
USER = ("userAcceleration.x", "userAcceleration.y", "userAcceleration.z")
ROTATION = ("rotationRate.x", "rotationRate.y", "rotationRate.z")
_TRIAL, _SUBJECT = re.compile(r"^([a-z]+)_(\d+)$"), re.compile(r"^sub_(\d+)\.csv$")


def find_trials(root: str) -> list[tuple[str, int, int, str]]:
    """(activity code, trial, subject, path) of every csv; an unknown activity code is an error naming the folder."""
    base = os.path.join(root, "A_DeviceMotion_data")
    if os.path.isdir(os.path.join(base, "A_DeviceMotion_data")):  # the zip nests the folder in itself
        base = os.path.join(base, "A_DeviceMotion_data")
    if not os.path.isdir(base):
        raise har.HarFormatError(f"{root}: A_DeviceMotion_data/ not found (expected the unzipped MotionSense data)")
    out = []
    for folder in sorted(os.listdir(base)):
        match = _TRIAL.match(folder)
        if not match:
            continue
        if match.group(1) not in LABEL_CODES:
            raise har.HarFormatError(f"{os.path.join(base, folder)}: unknown activity code {match.group(1)!r}; "
                                     f"expected one of {sorted(LABEL_CODES)}")
        for name in sorted(os.listdir(os.path.join(base, folder))):
            subject = _SUBJECT.match(name)
            if subject:
                out.append((match.group(1), int(match.group(2)), int(subject.group(1)),
                            os.path.join(base, folder, name)))
    return out


def read_trial(path: str, code: str, trial: int, subject: int) -> list[har.Session]:
    """One session: acc = (gravity + userAcceleration) in g -> m/s², gyro = rotationRate (rad/s)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    header, rows = har.split_header_rows(lines, path)
    values = har.float_columns(header, rows, GRAVITY + USER + ROTATION, path)
    acc = (values[:, 0:3] + values[:, 3:6]) * har.STANDARD_GRAVITY
    signals = np.concatenate([acc, values[:, 6:9]], axis=1)
    labels = np.full(len(signals), LABELS.index(LABEL_CODES[code]), np.int64)
    return [har.Session(f"{code}_{trial}_sub{subject}", subject, signals, labels, RATE_HZ, CHANNELS, path)]
