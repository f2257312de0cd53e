"""Reading HHAR ("Heterogeneity Activity Recognition", Stisen et al. 2015) in its original layout.

Layout: `Activity recognition exp/{Phones,Watch}_{accelerometer,gyroscope}.csv`, each with the header
`Index,Arrival_Time,Creation_Time,x,y,z,User,Model,Device,gt`: Arrival_Time in ms, Creation_Time (the sensor event
time) in ns, acceleration in m/s², angular rate in rad/s, users `a`-`i`, device ids such as `nexus4_1` or
`gear_2`, and the activity `gt` (`stand`, `sit`, `walk`, `stairsup`, `stairsdown`, `bike`, or `null`). Devices
sample at 50-200 Hz with jitter; phones were in a pouch at the waist, watches on the arms.
"""

from __future__ import annotations

import csv
import os
from array import array

import numpy as np

from imujax.io import har

LABEL_CODES = {"stand": "stand", "sit": "sit", "walk": "walk", "stairsup": "stairs_up",
               "stairsdown": "stairs_down", "bike": "bike"}
LABELS = tuple(LABEL_CODES.values())
USERS = "abcdefghi"
DEVICE_FILES = {"phones": "Phones", "watches": "Watch"}
LOCATIONS = {"phones": "waist", "watches": "wrist"}
HEADER = ("Index", "Arrival_Time", "Creation_Time", "x", "y", "z", "User", "Model", "Device", "gt")
MAX_GAP_S = 1.0   # a pause longer than this starts a new session


def find_dir(root: str) -> str:
    for candidate in (os.path.join(root, "Activity recognition exp"), root):
        if any(os.path.isfile(os.path.join(candidate, f"{p}_accelerometer.csv")) for p in DEVICE_FILES.values()):
            return candidate
    raise har.HarFormatError(f"{root}: no Phones_accelerometer.csv / Watch_accelerometer.csv (expected the unzipped "
                             f"'Activity recognition exp' folder)")


def read_stream_file(path: str) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(user, device) -> (Creation_Time ns int64 [N], xyz [N, 3], label index [N]), read row by row."""
    if not os.path.isfile(path):
        raise har.HarFormatError(f"{path}: file not found")
    label_index = {code: LABELS.index(name) for code, name in LABEL_CODES.items()} | {"null": har.UNLABELED}
    streams: dict[tuple[str, str], tuple[array, array, array]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = tuple(name.strip() for name in next(reader, ()))
        if header != HEADER:
            raise har.HarFormatError(f"{path}: header is {list(header)}, expected {list(HEADER)}")
        for line, row in enumerate(reader, start=2):
            if len(row) != len(HEADER):
                raise har.HarFormatError(f"{path}: line {line} has {len(row)} columns, expected {len(HEADER)}")
            user, device, gt = row[6].strip(), row[8].strip(), row[9].strip()
            if user not in USERS:
                raise har.HarFormatError(f"{path}: line {line}: unknown user {user!r}; expected one of {list(USERS)}")
            if gt not in label_index:
                raise har.HarFormatError(f"{path}: line {line}: unknown activity {gt!r}; expected one of "
                                         f"{sorted(label_index)}")
            try:
                stamp, x, y, z = int(row[2]), float(row[3]), float(row[4]), float(row[5])
            except ValueError:
                raise har.HarFormatError(f"{path}: line {line}: non-numeric Creation_Time or x/y/z in {row}") from None
            stamps, values, labels = streams.setdefault((user, device), (array("q"), array("d"), array("q")))
            stamps.append(stamp)
            values.extend((x, y, z))
            labels.append(label_index[gt])
    out = {}
    for key, (stamps, values, labels) in streams.items():
        values_np = np.frombuffer(values, np.float64).reshape(-1, 3)
        if not np.all(np.isfinite(values_np)):
            raise har.HarFormatError(f"{path}: non-finite x/y/z for user {key[0]} device {key[1]}")
        order = np.argsort(np.frombuffer(stamps, np.int64), kind="stable")  # rows arrive slightly out of order
        out[key] = (np.frombuffer(stamps, np.int64)[order], values_np[order], np.frombuffer(labels, np.int64)[order])
    return out


def _segments(times_s: np.ndarray) -> list[tuple[int, int]]:
    breaks = np.flatnonzero(np.diff(times_s) > MAX_GAP_S) + 1
    bounds = np.concatenate([[0], breaks, [len(times_s)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 2]


def read_devices(base: str, devices: str, rate_hz: float) -> list[har.Session]:
    """Sessions of every (user, device) with both sensors: acc + gyro aligned on a `rate_hz` grid per recording."""
    prefix = DEVICE_FILES[devices]
    acc_path = os.path.join(base, f"{prefix}_accelerometer.csv")
    gyro_path = os.path.join(base, f"{prefix}_gyroscope.csv")
    acc, gyro = read_stream_file(acc_path), read_stream_file(gyro_path)
    channels = har.channel_names(LOCATIONS[devices])
    sessions = []
    for (user, device), (acc_ns, acc_xyz, acc_labels) in sorted(acc.items()):
        if (user, device) not in gyro:
            continue
        gyro_ns, gyro_xyz, _ = gyro[(user, device)]
        origin = acc_ns[0]
        acc_t, gyro_t = (acc_ns - origin) / 1e9, (gyro_ns - origin) / 1e9
        for k, (a, b) in enumerate(_segments(acc_t)):
            inside = (gyro_t >= acc_t[a] - MAX_GAP_S) & (gyro_t <= acc_t[b - 1] + MAX_GAP_S)
            if inside.sum() < 2:
                continue
            where = f"{acc_path} + {gyro_path} (user {user}, device {device})"
            try:
                signals, labels = har.align_streams(
                    [(acc_t[a:b], acc_xyz[a:b]), (gyro_t[inside], gyro_xyz[inside])], rate_hz, where,
                    labels=(acc_t[a:b], acc_labels[a:b]))
            except har.HarFormatError:
                continue  # accelerometer recording without an overlapping gyroscope recording
            sessions.append(har.Session(f"{user}_{device}_{k:03d}", USERS.index(user) + 1, signals, labels,
                                        rate_hz, channels, where))
    return sessions
