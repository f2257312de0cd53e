"""Reading WISDM 2019 ("Smartphone and Smartwatch Activity and Biometrics", Weiss 2019) in its original layout.

Layout: `wisdm-dataset/raw/<device>/<sensor>/data_<subject>_<sensor>_<device>.txt` with device `phone` or `watch`
and sensor `accel` or `gyro`; subjects 1600-1650. Each line is `subject,activity_code,timestamp_ns,x,y,z;` (note the
trailing semicolon). Accelerometer in m/s² (with gravity), gyroscope in rad/s, nominally 20 Hz. Activity codes are
the letters A-S without N; each activity is one contiguous block of about 3 minutes per subject and device.
"""

from __future__ import annotations

import os
import re

import numpy as np

from imujax.io import har

RATE_HZ = 20.0
LABEL_CODES = {
    "A": "walking", "B": "jogging", "C": "stairs", "D": "sitting", "E": "standing", "F": "typing",
    "G": "brushing_teeth", "H": "eating_soup", "I": "eating_chips", "J": "eating_pasta", "K": "drinking_from_cup",
    "L": "eating_sandwich", "M": "kicking_soccer_ball", "O": "playing_catch_tennis_ball",
    "P": "dribbling_basketball", "Q": "writing", "R": "clapping", "S": "folding_clothes",
}
LABELS = tuple(LABEL_CODES.values())
DEVICES = {"phone": "pocket", "watch": "wrist"}  # device -> body location (phone in the front trouser pocket)
_FILE = re.compile(r"^data_(\d+)_(accel|gyro)_(phone|watch)\.txt$")


def find_raw(root: str) -> str:
    """The `raw/` folder: `root/raw`, `root/wisdm-dataset/raw` or `root` itself."""
    for candidate in (os.path.join(root, "wisdm-dataset", "raw"), os.path.join(root, "raw"), root):
        if any(os.path.isdir(os.path.join(candidate, d)) for d in DEVICES):
            return candidate
    raise har.HarFormatError(f"{root}: expected raw/phone/ or raw/watch/ (the unzipped wisdm-dataset)")


def subject_files(raw: str, device: str) -> dict[int, dict[str, str]]:
    """subject -> {"accel": path, "gyro": path} for one device; a misnamed file is an error."""
    out: dict[int, dict[str, str]] = {}
    for sensor in ("accel", "gyro"):
        folder = os.path.join(raw, device, sensor)
        if not os.path.isdir(folder):
            raise har.HarFormatError(f"{folder}: folder not found")
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".txt"):
                continue
            match = _FILE.match(name)
            if not match or match.group(2) != sensor or match.group(3) != device:
                raise har.HarFormatError(f"{os.path.join(folder, name)}: expected a name like "
                                         f"data_1600_{sensor}_{device}.txt")
            out.setdefault(int(match.group(1)), {})[sensor] = os.path.join(folder, name)
    return out


def read_sensor_file(path: str, subject: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activity codes [N] str, timestamps_ns [N] int64, xyz [N, 3]) of one `data_*.txt` file."""
    codes, stamps, values = [], [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip().rstrip(";").strip()
            if not line:
                continue
            fields = [x.strip() for x in line.split(",")]
            if len(fields) != 6:
                raise har.HarFormatError(f"{path}: line {number} has {len(fields)} fields, expected 6 "
                                         f"(subject,activity,timestamp,x,y,z;)")
            try:
                row_subject, stamp = int(fields[0]), int(fields[2])
                xyz = [float(v) for v in fields[3:]]
            except ValueError:
                raise har.HarFormatError(f"{path}: line {number}: non-numeric subject, timestamp or value "
                                         f"in {line!r}") from None
            if row_subject != subject:
                raise har.HarFormatError(f"{path}: line {number} is for subject {row_subject}, the file name says "
                                         f"{subject}")
            if fields[1] not in LABEL_CODES:
                raise har.HarFormatError(f"{path}: line {number}: unknown activity code {fields[1]!r}; expected "
                                         f"one of {sorted(LABEL_CODES)}")
            codes.append(fields[1])
            stamps.append(stamp)
            values.append(xyz)
    if not codes:
        raise har.HarFormatError(f"{path}: no data rows")
    values = np.asarray(values, np.float64)
    if not np.all(np.isfinite(values)):
        raise har.HarFormatError(f"{path}: non-finite values")
    return np.asarray(codes), np.asarray(stamps, np.int64), values


def _blocks(codes: np.ndarray) -> list[tuple[str, int, int]]:
    """(code, start, stop) of runs of one activity code."""
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    bounds = np.concatenate([[0], change, [len(codes)]])
    return [(str(codes[a]), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def read_subject(files: dict[str, str], subject: int, device: str) -> list[har.Session]:
    """One session per activity block: accelerometer and gyroscope linearly resampled on a common 20 Hz grid."""
    missing = [s for s in ("accel", "gyro") if s not in files]
    if missing:
        present = next(iter(files.values()))
        raise har.HarFormatError(f"{present}: subject {subject} has no {device} {missing[0]} file")
    acc = read_sensor_file(files["accel"], subject)
    gyro = read_sensor_file(files["gyro"], subject)
    gyro_blocks = {code: (a, b) for code, a, b in _blocks(gyro[0])}
    channels = har.channel_names(DEVICES[device])
    sessions = []
    for code, a, b in _blocks(acc[0]):
        if code not in gyro_blocks:
            continue  # the dataset has a few activities recorded by only one sensor
        ga, gb = gyro_blocks[code]
        where = f"{files['accel']} + {files['gyro']} (activity {code})"
        streams = [(acc[1][a:b] / 1e9, acc[2][a:b]), (gyro[1][ga:gb] / 1e9, gyro[2][ga:gb])]
        try:
            signals, _ = har.align_streams(streams, RATE_HZ, where)
        except har.HarFormatError:
            continue  # accelerometer and gyroscope blocks that do not overlap in time cannot be paired
        label = LABELS.index(LABEL_CODES[code])
        sessions.append(har.Session(f"{subject}_{device}_{code}_{a}", subject, signals,
                                    np.full(len(signals), label, np.int64), RATE_HZ, channels, where))
    return sessions
