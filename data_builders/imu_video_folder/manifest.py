"""The manifest of an `imu_video_folder` dataset (manifest.yaml or manifest.json in the folder) and its checks.

Units are converted to SI: acceleration to m/s^2, angular rate to rad/s, magnetic field to microtesla.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re

STANDARD_GRAVITY = 9.80665
# unit name (lower case, spaces removed) -> factor to SI, per channel kind
UNIT_FACTORS = {
    "acc": {"m/s2": 1.0, "m/s^2": 1.0, "ms-2": 1.0, "g": STANDARD_GRAVITY, "mg": STANDARD_GRAVITY / 1000.0},
    "gyro": {"rad/s": 1.0, "deg/s": math.pi / 180.0, "dps": math.pi / 180.0, "mrad/s": 1e-3},
    "mag": {"ut": 1.0, "microtesla": 1.0, "gauss": 100.0, "mgauss": 0.1, "nt": 1e-3, "t": 1e6},
}
_CHANNEL = re.compile(r"^[A-Za-z0-9_.-]+/(acc|gyro|mag|[A-Za-z0-9]+)_[A-Za-z0-9]+$")


class ManifestError(ValueError):
    """The manifest is malformed; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class Recording:
    imu: str                    # path to .csv or .npy, absolute
    video: str | None           # path to .mp4 or a folder of frames, absolute
    video_offset_s: float       # video time of IMU sample 0
    label: str | None
    subject: str
    split: str
    name: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    path: str
    rate_hz: float
    channels: tuple[str, ...]
    factors: tuple[float, ...]          # multiply raw column c by factors[c] to get SI units
    csv_columns: tuple[str, ...] | None
    frames_fps: float | None            # rate of frame folders
    classes: tuple[str, ...]
    recordings: tuple[Recording, ...]


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ManifestError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write manifest.json")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ManifestError(f"{path}: not valid YAML: {e}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level")
    return data


def find_manifest(root: str) -> str:
    for name in ("manifest.yaml", "manifest.yml", "manifest.json"):
        if os.path.exists(os.path.join(root, name)):
            return os.path.join(root, name)
    raise FileNotFoundError(f"{root}: no manifest.yaml / manifest.json")


def _unit_factor(kind: str, unit: str, where: str) -> float:
    table = UNIT_FACTORS.get(kind)
    key = str(unit).lower().replace(" ", "")
    if table is None:
        if key in ("si", "1", "none", ""):
            return 1.0
        raise ManifestError(f"{where}: no unit conversion for channel kind {kind!r}; give unit 'si' for values "
                            f"already in SI units")
    if key not in table:
        raise ManifestError(f"{where}: unknown {kind} unit {unit!r}; known: {sorted(table)}")
    return table[key]


def read_manifest(root: str, check_files: bool = True) -> Manifest:
    """The manifest of `root`; `check_files=False` leaves the existence of the recordings' files to the caller (the
    builder's bad_file_policy='skip' rejects such recordings one by one, with a report entry)."""
    path = find_manifest(root)
    data = _load(path)
    for key in ("rate_hz", "channels", "units", "recordings"):
        if key not in data:
            raise ManifestError(f"{path}: missing key {key!r}")
    rate = float(data["rate_hz"])
    if not rate > 0:
        raise ManifestError(f"{path}: rate_hz must be positive, got {data['rate_hz']!r}")
    channels = tuple(str(c) for c in data["channels"])
    for c in channels:
        if not _CHANNEL.match(c):
            raise ManifestError(f"{path}: channel {c!r} must look like '<place>/<kind>_<axis>', e.g. 'wrist/acc_x'")
    units = data["units"]
    if isinstance(units, dict):
        factors = []
        for c in channels:
            kind = c.split("/")[1].rsplit("_", 1)[0]
            if kind not in units:
                raise ManifestError(f"{path}: units has no entry for kind {kind!r} (channel {c!r})")
            factors.append(_unit_factor(kind, units[kind], f"{path}: units.{kind}"))
    elif isinstance(units, list) and len(units) == len(channels):
        factors = [_unit_factor(c.split("/")[1].rsplit("_", 1)[0], u, f"{path}: units[{i}]")
                   for i, (c, u) in enumerate(zip(channels, units))]
    else:
        raise ManifestError(f"{path}: units must map kinds to units ({{acc: g, gyro: deg/s}}) or list one unit "
                            f"per channel ({len(channels)})")
    csv_columns = data.get("csv_columns")
    if csv_columns is not None and len(csv_columns) != len(channels):
        raise ManifestError(f"{path}: csv_columns has {len(csv_columns)} names for {len(channels)} channels")
    classes = tuple(str(c) for c in data.get("classes", ()))
    recordings = []
    for k, entry in enumerate(data["recordings"]):
        where = f"{path}: recordings[{k}]"
        if not isinstance(entry, dict) or "imu" not in entry:
            raise ManifestError(f"{where}: needs an 'imu' file")
        imu = os.path.join(root, str(entry["imu"]))
        if check_files and not os.path.exists(imu):
            raise ManifestError(f"{where}: imu file {imu} does not exist")
        video = os.path.join(root, str(entry["video"])) if entry.get("video") else None
        if check_files and video is not None and not os.path.exists(video):
            raise ManifestError(f"{where}: video {video} does not exist")
        label = entry.get("label")
        if label is not None and str(label) not in classes:
            raise ManifestError(f"{where}: label {label!r} is not in classes {list(classes)}")
        recordings.append(Recording(imu, video, float(entry.get("video_offset_s", 0.0)),
                                    None if label is None else str(label), str(entry.get("subject", "")),
                                    str(entry.get("split", "train")),
                                    str(entry.get("name", os.path.splitext(os.path.basename(imu))[0]))))
    if not recordings:
        raise ManifestError(f"{path}: 'recordings' is empty")
    frames_fps = data.get("frames_fps")
    return Manifest(path, rate, channels, tuple(factors), None if csv_columns is None else tuple(csv_columns),
                    None if frames_fps is None else float(frames_fps), classes, tuple(recordings))
