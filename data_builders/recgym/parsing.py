"""Reading RecGym (Bian 2024, UCI "RecGym: Gym Workouts Recognition Dataset with IMU and Capacitive Sensor").

Layout: one csv, `RecGym.csv`, with a header naming (in any order) `Object` (the volunteer, 1-10), `Workout`,
`Position` (where the sensing unit was worn: wrist, pocket or calf), `A_x, A_y, A_z` (accelerometer), `G_x, G_y,
G_z` (gyroscope), `C_1` (body capacitance) and `Session`, one row per sample at 20 Hz. Rows of one volunteer, session
and position are consecutive. Workout `Null` marks the pauses between exercises and is unannotated here.
"""

from __future__ import annotations

import csv
import os
from array import array

import numpy as np

from imujax.io import har

RATE_HZ = 20.0
LABEL_CODES = {
    "Adductor": "adductor", "ArmCurl": "arm_curl", "BenchPress": "bench_press", "LegCurl": "leg_curl",
    "LegPress": "leg_press", "Riding": "riding", "RopeSkipping": "rope_skipping", "Running": "running",
    "Squat": "squat", "StairsClimber": "stairs_climber", "Walking": "walking",
}
LABELS = tuple(LABEL_CODES.values())
VALUE_COLUMNS = ("A_x", "A_y", "A_z", "G_x", "G_y", "G_z")
KEY_COLUMNS = ("Object", "Session", "Position", "Workout")


def find_csv(root: str) -> str:
    for candidate in (os.path.join(root, "RecGym.csv"), root):
        if os.path.isfile(candidate):
            return candidate
    raise har.HarFormatError(f"{root}: RecGym.csv not found")


def read_csv(path: str, position: str) -> list[har.Session]:
    """One session per run of rows with the same (Object, Session) at `position`; other positions are skipped."""
    label_index = {code: LABELS.index(name) for code, name in LABEL_CODES.items()} | {"Null": har.UNLABELED}
    runs: list[tuple[tuple[str, str], array, array]] = []
    positions_seen: set[str] = set()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in VALUE_COLUMNS + KEY_COLUMNS if c not in header]
        if missing:
            raise har.HarFormatError(f"{path}: missing column(s) {missing}; header is {header}")
        value_index = [header.index(c) for c in VALUE_COLUMNS]
        obj, session, pos, workout = (header.index(c) for c in KEY_COLUMNS)
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise har.HarFormatError(f"{path}: line {line} has {len(row)} columns, the header has {len(header)}")
            positions_seen.add(row[pos].strip())
            if row[pos].strip().lower() != position:
                continue
            code = row[workout].strip()
            if code not in label_index:
                raise har.HarFormatError(f"{path}: line {line}: unknown Workout {code!r}; expected one of "
                                         f"{sorted(label_index)}")
            try:
                values = [float(row[i]) for i in value_index]
                key = (str(int(float(row[obj]))), row[session].strip())
            except ValueError:
                raise har.HarFormatError(f"{path}: line {line}: non-numeric Object or A_/G_ value in {row}") from None
            if not runs or runs[-1][0] != key:
                runs.append((key, array("d"), array("q")))
            runs[-1][1].extend(values)
            runs[-1][2].append(label_index[code])
    if not runs:
        raise har.HarFormatError(f"{path}: no rows with Position {position!r}; positions are {sorted(positions_seen)}")
    channels = har.channel_names(position)
    sessions, count = [], {}
    for (subject, session), values, labels in runs:
        k = count[(subject, session)] = count.get((subject, session), -1) + 1
        signals = np.frombuffer(values, np.float64).reshape(-1, 6)
        if not np.all(np.isfinite(signals)):
            raise har.HarFormatError(f"{path}: non-finite values for Object {subject}, Session {session}")
        sessions.append(har.Session(f"s{subject}_{session}_{position}_{k}", int(subject), signals,
                                    np.frombuffer(labels, np.int64).copy(), RATE_HZ, channels, path))
    return sessions
