"""Reading MobiAct v2.0 (Vavoulas et al. 2016) in its original layout ("Annotated Data").

Layout: `Annotated Data/<ACT>/<ACT>_<subject>_<trial>_annotated.csv` with the header
`timestamp,rel_time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z,azimuth,pitch,roll,label`: timestamp in ns, rel_time in
seconds from the trial start, acceleration m/s², angular rate rad/s, orientation in degrees, and a per-row activity
code (a fall trial is annotated e.g. STD, then FOL, then LYI). The phone was in a trouser pocket; the sensors are
sampled irregularly at up to about 200 Hz.
"""

from __future__ import annotations

import os
import re

from imujax.io import har

LABEL_CODES = {
    "STD": "standing", "WAL": "walking", "JOG": "jogging", "JUM": "jumping", "STU": "stairs_up",
    "STN": "stairs_down", "SCH": "sit_chair", "SIT": "sitting_on_chair", "CHU": "chair_up", "CSI": "car_step_in",
    "CSO": "car_step_out", "LYI": "lying", "FOL": "forward_lying_fall", "FKL": "front_knees_lying_fall",
    "BSC": "back_sitting_chair_fall", "SDL": "sideward_lying_fall",
}
LABELS = tuple(LABEL_CODES.values())
CHANNELS = har.channel_names("pocket")
VALUE_COLUMNS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
_FILE = re.compile(r"^([A-Z]{3})_(\d+)_(\d+)_annotated\.csv$")


def find_trials(root: str) -> list[tuple[str, int, int, str]]:
    """(activity code, subject, trial, path) of every annotated csv."""
    base = None
    for candidate in (os.path.join(root, "Annotated Data"),
                      os.path.join(root, "MobiAct_Dataset_v2.0", "Annotated Data")):
        if os.path.isdir(candidate):
            base = candidate
    if base is None:
        raise har.HarFormatError(f"{root}: 'Annotated Data/' not found (expected the unzipped MobiAct_Dataset_v2.0)")
    out = []
    for folder in sorted(os.listdir(base)):
        directory = os.path.join(base, folder)
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            match = _FILE.match(name)
            if match:
                if match.group(1) not in LABEL_CODES:
                    raise har.HarFormatError(f"{os.path.join(directory, name)}: unknown activity code "
                                             f"{match.group(1)!r}; expected one of {sorted(LABEL_CODES)}")
                out.append((match.group(1), int(match.group(2)), int(match.group(3)), os.path.join(directory, name)))
    return out


def read_trial(path: str, code: str, subject: int, trial: int, rate_hz: float) -> list[har.Session]:
    """One session per trial, resampled on a uniform `rate_hz` grid (labels from the nearest raw row)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    header, rows = har.split_header_rows(lines, path)
    values = har.float_columns(header, rows, ("rel_time",) + VALUE_COLUMNS, path)
    if "label" not in header:
        raise har.HarFormatError(f"{path}: missing column(s) ['label']; header is {header}")
    codes = [row[header.index("label")] for row in rows]
    labels = har.map_codes(codes, {c: i for i, c in enumerate(LABEL_CODES)}, path)
    signals, grid_labels = har.to_uniform_rate(values[:, 0], values[:, 1:], labels, rate_hz, path)
    return [har.Session(f"{code}_{subject}_{trial}", subject, signals, grid_labels, rate_hz, CHANNELS, path)]
