"""Reading RealWorld HAR (Sztyler & Stuckenschmidt 2016) in its original layout.

Layout: `realworld2016_dataset/proband<N>/data/<sensor>_<activity>_csv.zip` (N = 1..15; sensor `acc`, `gyr`, `mag`
among others; activity climbingdown, climbingup, jumping, lying, running, sitting, standing, walking). Each zip holds
one csv per body position, `<sensor>_<activity>_<position>.csv` (position chest, forearm, head, shin, thigh,
upperarm, waist), header `id,attr_time,attr_x,attr_y,attr_z`, time in ms, about 50 Hz, acceleration m/s², angular
rate rad/s, magnetic field µT. Recordings split in parts carry a part number (`..._<activity>_2_<position>.csv` or
`..._<activity>_2_csv.zip`), and some gyroscope members are named `Gyroscope_<activity>_<position>.csv`.
"""

from __future__ import annotations

import os
import re
import zipfile

import numpy as np

from imujax.io import har

LABEL_CODES = {"climbingdown": "climbing_down", "climbingup": "climbing_up", "jumping": "jumping", "lying": "lying",
               "running": "running", "sitting": "sitting", "standing": "standing", "walking": "walking"}
LABELS = tuple(LABEL_CODES.values())
POSITIONS = ("chest", "forearm", "head", "shin", "thigh", "upperarm", "waist")
SENSORS = {"acc": "acc", "gyr": "gyro", "mag": "mag"}   # file prefix -> channel sensor name
COLUMNS = ("attr_time", "attr_x", "attr_y", "attr_z")
_ZIP = re.compile(r"^(acc|gyr|mag)_([a-z]+?)(?:_(\d+))?_csv\.zip$")
_MEMBER = re.compile(r"^(?:.*/)?[A-Za-z]+_([a-z]+?)(?:_(\d+))?_([a-z]+)\.csv$")
_PROBAND = re.compile(r"^proband(\d+)$")


def find_probands(root: str) -> list[tuple[int, str]]:
    base = os.path.join(root, "realworld2016_dataset")
    base = base if os.path.isdir(base) else root
    found = [(int(m.group(1)), os.path.join(base, name, "data")) for name in sorted(os.listdir(base))
             if (m := _PROBAND.match(name))]
    if not found:
        raise har.HarFormatError(f"{base}: no proband<N>/ folders (expected the unzipped realworld2016_dataset)")
    return sorted(found)


def recordings(data_dir: str, sensors: tuple[str, ...]) -> dict[tuple[str, int], dict[str, list[str]]]:
    """(activity, part) -> sensor -> zip paths, for the activities with zips of every requested sensor."""
    if not os.path.isdir(data_dir):
        raise har.HarFormatError(f"{data_dir}: folder not found")
    by_activity: dict[str, dict[str, list[str]]] = {}
    for name in sorted(os.listdir(data_dir)):
        match = _ZIP.match(name)
        if not match or match.group(1) not in sensors:
            continue
        if match.group(2) not in LABEL_CODES:
            raise har.HarFormatError(f"{os.path.join(data_dir, name)}: unknown activity {match.group(2)!r}; expected "
                                     f"one of {sorted(LABEL_CODES)}")
        by_activity.setdefault(match.group(2), {}).setdefault(match.group(1), []).append(os.path.join(data_dir, name))
    out = {}
    for activity, zips in by_activity.items():
        missing = [s for s in sensors if s not in zips]
        if missing:
            raise har.HarFormatError(f"{data_dir}: activity {activity!r} has no {missing[0]}_{activity}_csv.zip")
        out[activity] = zips
    return out


def _members(zip_paths: list[str], activity: str) -> dict[tuple[int, str], tuple[str, str]]:
    """(part, position) -> (zip path, member name)."""
    out = {}
    for path in zip_paths:
        zip_part = _ZIP.match(os.path.basename(path)).group(3)
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as e:
            raise har.HarFormatError(f"{path}: not a readable zip archive ({e})") from None
        for name in names:
            match = _MEMBER.match(name)
            if match and match.group(1) == activity and match.group(3) in POSITIONS:
                part = int(match.group(2) or zip_part or 1)
                out[(part, match.group(3))] = (path, name)
    return out


def _read_member(path: str, member: str) -> tuple[np.ndarray, np.ndarray]:
    where = f"{path}:{member}"
    header, rows = har.split_header_rows(har.read_zip_member(path, member), where)
    values = har.float_columns(header, rows, COLUMNS, where)
    order = np.argsort(values[:, 0], kind="stable")
    return values[order, 0] / 1000.0, values[order, 1:]


def read_activity(data_dir: str, proband: int, activity: str, zips: dict[str, list[str]],
                  positions: tuple[str, ...], sensors: tuple[str, ...], rate_hz: float) -> list[har.Session]:
    """One session per recording part: every (position, sensor) stream aligned on a `rate_hz` grid."""
    members = {sensor: _members(zips[sensor], activity) for sensor in sensors}
    parts = sorted({part for found in members.values() for part, _ in found})
    channels = tuple(c for position in positions for sensor in sensors
                     for c in har.channel_names(position, (SENSORS[sensor],)))
    label = LABELS.index(LABEL_CODES[activity])
    sessions = []
    for part in parts:
        streams = []
        for position in positions:
            for sensor in sensors:
                if (part, position) not in members[sensor]:
                    raise har.HarFormatError(f"{zips[sensor][0]}: no {sensor} csv for position {position!r}"
                                             f"{f' (part {part})' if part > 1 else ''}")
                streams.append(_read_member(*members[sensor][(part, position)]))
        times0 = min(t[0] for t, _ in streams)
        shifted = [(t - times0, v) for t, v in streams]
        where = f"{data_dir} ({activity}, part {part})"
        signals, _ = har.align_streams(shifted, rate_hz, where)
        sessions.append(har.Session(f"proband{proband}_{activity}_{part}", proband, signals,
                                    np.full(len(signals), label, np.int64), rate_hz, channels, where))
    return sessions
