"""Reading VTT-ConIoT (Mäkela et al., Sustainability 2022) in its Zenodo release layout (record 4683703).

Layout: `VTT_ConIot_Dataset.zip` unzips to `VTT_ConIot_Dataset/`; the IMU recordings are one csv per activity and
user, `activity_<A>_user_<U>_combined.csv` (A = 1..16, U = 1..13; about one minute each; a public converter of the
release reports 207 of the 208 combinations), in `VTT_ConIot_Dataset/VTT-ConIot-IMU-Data/`. Each csv has a header
row naming, for the three IMUs (column prefix `trousers` = hip, `back` = back, `hand` = upper arm), the accelerometer
`<prefix>_Ax_g, _Ay_g, _Az_g`, gyroscope `<prefix>_Gx_dps, _Gy_dps, _Gz_dps` and magnetometer `<prefix>_Mx_uT, _My_uT,
_Mz_uT`; one row per sample, the three IMUs already combined on one ~100 Hz time base. The activity is given by the
file name only.

Which of these facts were checked and how (see also the builder docstring and README):
  * file name pattern, csv column names and the prefix -> body location mapping: the same in two independent public
    loaders of the release (litchi7777/harbench `vtt_coniot.py`, alxdofficial/tsfm `datascripts/vtt_coniot`);
  * folder `VTT_ConIot_Dataset/VTT-ConIot-IMU-Data/`: one loader only (harbench, which downloads the Zenodo zip
    itself); another project keeps the same files under `VTT_ConIot_Dataset/IMU/`. The files are therefore looked for
    anywhere under the manual dir.
  * 100 Hz: stated by both loaders and consistent with ~6000 rows per ~1 min activity (tsfm resampled them to ~3000
    samples at 50 Hz covering 60 s) and with 4 IMU rows per frame of the 25 fps videos (a third project).
  * activity codes 1-16: the harbench label table (roll painting ... stairs up-down, each with a short description
    of the task). The tsfm converter uses a different list (e.g. sitting, lifting, carrying) with no source beyond
    "based on the paper"; it is not used. The paper's own table could not be read here, so this mapping is the
    least certain fact.
  * accelerometer unit: the columns say `g`, but the stored numbers are about twice the acceleration in g (the hip
    vertical axis averages 1.87 with saturation at +-4 in tsfm's histogram of the real files; harbench scales by 0.5
    "half-G -> G"). `acc_g_per_unit` (default 0.5) is the g per stored unit; set 1.0 to trust the column label.
  * gyroscope deg/s and magnetometer µT: from the column suffixes (`dps`, `uT`); value ranges in tsfm's histograms
    (gyro up to ~250, magnetometer tens to ~150) agree.
Not known: whether the csv has further columns (time stamps, pressure, an index); any other column is ignored.
Empty or NaN cells are tolerated: runs of up to 0.1 s are interpolated, longer runs split the recording.
"""

from __future__ import annotations

import csv
import math
import os
import re

import numpy as np

from imujax.io import har

RATE_HZ = 100.0
LABEL_CODES = {
    1: "roll_painting", 2: "spraying_paint", 3: "leveling_paint", 4: "vacuum_cleaning", 5: "picking_objects",
    6: "climbing_stairs", 7: "jumping_down", 8: "laying_back", 9: "hands_up_high", 10: "hands_up_low",
    11: "crouch_floor", 12: "kneel_floor", 13: "walk_straight", 14: "walk_winding", 15: "pushing_cart",
    16: "stairs_up_down",
}
LABELS = tuple(LABEL_CODES.values())
# body location (channel prefix) -> csv column prefix, in channel order
LOCATIONS = {"hip": "trousers", "back": "back", "upper_arm": "hand"}
# (channel sensor, csv column suffix per axis x, y, z)
SENSOR_SUFFIXES = (("acc", ("Ax_g", "Ay_g", "Az_g")), ("gyro", ("Gx_dps", "Gy_dps", "Gz_dps")),
                   ("mag", ("Mx_uT", "My_uT", "Mz_uT")))
MAX_INTERPOLATED_GAP = 10   # samples (0.1 s); longer NaN runs split the recording
IMU_FOLDER = os.path.join("VTT_ConIot_Dataset", "VTT-ConIot-IMU-Data")
_FILE = re.compile(r"^activity_(\d+)_user_(\d+)_combined\.csv$")


def channels(locations: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for location in locations for c in har.channel_names(location, ("acc", "gyro", "mag")))


def columns(locations: tuple[str, ...]) -> list[str]:
    """csv column names in the order of `channels(locations)`."""
    return [f"{LOCATIONS[location]}_{suffix}" for location in locations
            for _, suffixes in SENSOR_SUFFIXES for suffix in suffixes]


def find_files(root: str) -> list[tuple[int, int, str]]:
    """(user, activity code, path) of every `activity_<A>_user_<U>_combined.csv` under `root`, sorted."""
    found: dict[tuple[int, int], str] = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(names):
            match = _FILE.match(name)
            if not match:
                continue
            path = os.path.join(folder, name)
            activity, user = int(match.group(1)), int(match.group(2))
            if activity not in LABEL_CODES:
                raise har.HarFormatError(f"{path}: unknown activity code {activity} in the file name; expected "
                                         f"1-{len(LABEL_CODES)}")
            if (user, activity) in found:
                raise har.HarFormatError(f"{path}: activity {activity} of user {user} also found at "
                                         f"{found[(user, activity)]}; the manual dir should hold one copy")
            found[(user, activity)] = path
    if not found:
        example = os.path.join(IMU_FOLDER, "activity_1_user_1_combined.csv")
        raise har.HarFormatError(f"{root}: no activity_<A>_user_<U>_combined.csv files (expected the unzipped "
                                 f"VTT_ConIot_Dataset/, e.g. {example})")
    return [(user, activity, path) for (user, activity), path in sorted(found.items())]


def _cell(text: str, path: str, line: int, column: str) -> float:
    text = text.strip().strip('"')
    if text == "" or text.lower() == "nan":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise har.HarFormatError(f"{path}: line {line}, column {column!r}: expected a number, got {text!r}") from None
    if math.isinf(value):
        raise har.HarFormatError(f"{path}: line {line}, column {column!r}: non-finite value {text!r}")
    return value


def read_table(path: str, names: list[str]) -> np.ndarray:
    """float64 [N, len(names)] of the named columns (NaN for empty cells); other columns are ignored."""
    if not os.path.isfile(path):
        raise har.HarFormatError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise har.HarFormatError(f"{path}: empty file, expected a header row with the columns {names}")
        header = [name.strip().strip('"') for name in header]
        missing = [name for name in names if name not in header]
        if missing:
            raise har.HarFormatError(f"{path}: missing column(s) {missing}; expected <prefix>_<quantity> columns for "
                                     f"prefixes trousers, back, hand and quantities "
                                     f"{[s for _, suffixes in SENSOR_SUFFIXES for s in suffixes]}; header is {header}")
        index = [header.index(name) for name in names]
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:   # blank line; a row of empty cells is a sample with missing values
                continue
            if len(row) != len(header):
                raise har.HarFormatError(f"{path}: line {line} has {len(row)} columns, the header has {len(header)}")
            rows.append([_cell(row[i], path, line, name) for i, name in zip(index, names)])
    if not rows:
        raise har.HarFormatError(f"{path}: no data rows")
    return np.asarray(rows, np.float64)


def read_csv(path: str, user: int, activity: int, locations: tuple[str, ...],
             acc_g_per_unit: float) -> list[har.Session]:
    """Sessions of one activity file: 9 channels per location (acc m/s², gyro rad/s, mag µT), one label throughout.

    NaN runs of up to 0.1 s are linearly interpolated; longer runs split the file into sessions (edge runs dropped).
    """
    names = columns(locations)
    table = read_table(path, names)
    scale = np.tile(np.array([acc_g_per_unit * har.STANDARD_GRAVITY] * 3 + [har.DEG_TO_RAD] * 3 + [1.0] * 3),
                    len(locations))
    signals = table * scale
    label = LABELS.index(LABEL_CODES[activity])
    missing = np.isnan(signals).any(axis=1)
    segments = har.gap_free_segments(missing, MAX_INTERPOLATED_GAP)
    if not segments:
        raise har.HarFormatError(f"{path}: no row has values in all of the columns {names}")
    sessions = []
    for k, (a, b) in enumerate(segments):
        values = har.interpolate_nan_gaps(signals[a:b], f"{path} data rows {a + 1}-{b}", MAX_INTERPOLATED_GAP)
        sessions.append(har.Session(f"u{user:02d}_a{activity:02d}_{k:02d}", user, values,
                                    np.full(b - a, label, np.int64), RATE_HZ, channels(locations), path))
    return sessions
