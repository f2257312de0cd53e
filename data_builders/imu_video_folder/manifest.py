"""The manifest of an `imu_video_folder` dataset (manifest.yaml or manifest.json in the folder) and its checks.

The manifest is read with bounds (size, YAML aliases, nesting, node count) and validated against
manifest.schema.json before any recording is opened, so that a malformed manifest fails at once naming the key.
Units are converted to SI: acceleration to m/s^2, angular rate to rad/s, magnetic field to microtesla.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import pathlib

import jsonschema

from imujax.io import files

STANDARD_GRAVITY = 9.80665
# unit name (lower case, spaces removed) -> factor to SI, per channel kind
UNIT_FACTORS = {
    "acc": {"m/s2": 1.0, "m/s^2": 1.0, "ms-2": 1.0, "g": STANDARD_GRAVITY, "mg": STANDARD_GRAVITY / 1000.0},
    "gyro": {"rad/s": 1.0, "deg/s": math.pi / 180.0, "dps": math.pi / 180.0, "mrad/s": 1e-3},
    "mag": {"ut": 1.0, "microtesla": 1.0, "gauss": 100.0, "mgauss": 0.1, "nt": 1e-3, "t": 1e6},
}
TIMESTAMP_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
DEFAULT_MAX_GAP_S = 0.5
# bounds on the manifest itself: a hostile one (a YAML alias bomb, deep nesting) fails fast instead of hanging
MAX_MANIFEST_BYTES = 4 << 20
MAX_YAML_ALIASES = 1000
MAX_DEPTH = 32
MAX_NODES = 1_000_000
SCHEMA = json.loads((pathlib.Path(__file__).parent / "manifest.schema.json").read_text())


class ManifestError(ValueError):
    """The manifest is malformed; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class Recording:
    index: int                  # position in the manifest's `recordings`
    name: str                   # unique in the manifest
    imu: str                    # path to .csv or .npy, absolute
    video: str | None           # path to .mp4 or a folder of frames, absolute
    video_offset_s: float       # video time of IMU sample 0 (of the first timestamp with timestamp_column)
    label: str | None           # one label for the whole recording
    subject: str
    split: str                  # TFDS split
    fold: str                   # "" when not given
    channels: tuple[str, ...]   # after `placement`
    factors: tuple[float, ...]  # multiply raw column c by factors[c] to get SI units
    csv_columns: tuple[str, ...] | None
    frames_fps: float | None    # rate of a frame folder
    timestamp_column: str | None
    timestamp_scale: float      # timestamp unit in seconds
    max_gap_s: float
    label_column: str | None


@dataclasses.dataclass(frozen=True)
class Manifest:
    path: str
    rate_hz: float
    channels: tuple[str, ...]           # the manifest-wide default layout
    classes: tuple[str, ...]
    recordings: tuple[Recording, ...]
    description: str = ""               # free text about the dataset (TSFM conditions on it)


def _key(path) -> str:
    """recordings[3].units.acc from a jsonschema path."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(top level)"


def _bounded_yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader counting aliases and nesting while composing (before any object is built)."""
        aliases = 0
        depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise ManifestError(f"more than {MAX_YAML_ALIASES} YAML aliases")
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ManifestError(f"nested deeper than {MAX_DEPTH} levels")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return yaml, Loader


def _check_size(data, path: str) -> None:
    """Walks the loaded manifest with a node budget (aliases can make a small file expand without bound) and
    refuses NaN and infinite numbers, naming the key."""
    budget = [MAX_NODES]

    def walk(node, where, depth):
        budget[0] -= 1
        if budget[0] < 0:
            raise ManifestError(f"{path}: more than {MAX_NODES} values once YAML aliases are expanded")
        if depth > MAX_DEPTH:
            raise ManifestError(f"{path}: {_key(where)}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, float) and not math.isfinite(node):
            raise ManifestError(f"{path}: {_key(where)}: must be a finite number, got {node}")
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, [*where, k], depth + 1)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, [*where, i], depth + 1)

    walk(data, [], 0)


def _load(path: str) -> dict:
    files.check_regular(path, ManifestError)
    with open(path, "rb") as f:
        raw = f.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; a manifest lists files, it does "
                            f"not hold data")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if path.endswith((".yaml", ".yml")):
        try:
            yaml, loader = _bounded_yaml_loader()
        except ImportError:
            raise ManifestError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write manifest.json")
        try:
            data = yaml.load(text, Loader=loader)  # a SafeLoader subclass: no Python objects, bounded aliases
        except ManifestError as e:
            raise ManifestError(f"{path}: {e}") from None
        except (yaml.YAMLError, RecursionError) as e:
            raise ManifestError(f"{path}: not valid YAML: {e}") from None
    else:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise ManifestError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level")
    _check_size(data, path)
    return data


def validate(data: dict, path: str) -> None:
    """Schema errors name the key (`recordings[2].frames_fps: 0 is less than or equal to the minimum of 0`)."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data))
    if error is not None:
        hint = error.schema.get("description", "") if error.schema is not SCHEMA else ""
        raise ManifestError(f"{path}: {_key(error.absolute_path)}: {error.message}" + (f" ({hint})" if hint else ""))


def find_manifest(root: str) -> str:
    for name in ("manifest.yaml", "manifest.yml", "manifest.json"):
        if os.path.lexists(os.path.join(root, name)):
            return os.path.join(root, name)
    raise FileNotFoundError(f"{root}: no manifest.yaml / manifest.json")


def _kind(channel: str) -> str:
    return channel.split("/")[1].rsplit("_", 1)[0]


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


def _factors(channels, units, where: str) -> tuple[float, ...]:
    if isinstance(units, dict):
        missing = sorted({_kind(c) for c in channels} - set(units))
        if missing:
            raise ManifestError(f"{where}: units has no entry for kind(s) {missing} (channels {list(channels)})")
        return tuple(_unit_factor(_kind(c), units[_kind(c)], f"{where}: units.{_kind(c)}") for c in channels)
    if len(units) != len(channels):
        raise ManifestError(f"{where}: units lists {len(units)} units for {len(channels)} channels")
    return tuple(_unit_factor(_kind(c), u, f"{where}: units[{i}]") for i, (c, u) in enumerate(zip(channels, units)))


def _resolve(root: str, relative: str, allow_outside: bool, where: str) -> str:
    """Absolute path of a manifest path (as written, for messages); it must stay inside the folder, symlinks
    followed, unless the manifest opts out with `allow_outside_paths: true`."""
    path = os.path.normpath(os.path.join(os.path.abspath(root), relative))
    base = os.path.realpath(root)
    if not allow_outside and os.path.commonpath([base, os.path.realpath(path)]) != base:
        raise ManifestError(f"{where}: {relative!r} resolves to {os.path.realpath(path)}, outside the manifest's "
                            f"folder {base}; set 'allow_outside_paths: true' in the manifest to allow it")
    return path


def _check_exists(path: str, where: str, what: str, folder_ok: bool) -> None:
    if not os.path.lexists(path):
        raise ManifestError(f"{where}: {what} {path} does not exist")
    if not (folder_ok and os.path.isdir(path)):
        files.check_regular(path, ManifestError, where=f"{where}: {what}")


def read_manifest(root: str, check_files: bool = True) -> Manifest:
    """The manifest of `root`; `check_files=False` leaves the existence of the recordings' files to the caller (the
    builder's bad_file_policy='skip' rejects such recordings one by one, with a report entry)."""
    path = find_manifest(root)
    data = _load(path)
    validate(data, path)
    rate = float(data["rate_hz"])
    classes = tuple(str(c) for c in data.get("classes", ()))
    if len(set(classes)) != len(classes):
        raise ManifestError(f"{path}: classes: {list(classes)} has repeated names")
    allow_outside = bool(data.get("allow_outside_paths", False))
    _factors(data["channels"], data["units"], path)
    recordings = []
    for k, entry in enumerate(data["recordings"]):
        where = f"{path}: recordings[{k}]"
        get = lambda key, default=None: entry.get(key, data.get(key, default))  # noqa: E731 - recording overrides
        imu = _resolve(root, entry["imu"], allow_outside, f"{where}.imu")
        video = _resolve(root, entry["video"], allow_outside, f"{where}.video") if "video" in entry else None
        if check_files:
            _check_exists(imu, where, "imu file", folder_ok=False)
            if video is not None:
                _check_exists(video, where, "video", folder_ok=True)
        if not imu.endswith((".csv", ".npy")):
            raise ManifestError(f"{where}.imu: IMU files must be .csv or .npy, got {entry['imu']!r}")
        channels = tuple(get("channels"))
        if "placement" in entry:
            channels = tuple(f"{entry['placement']}/{c.split('/', 1)[1]}" for c in channels)
            if len(set(channels)) != len(channels):
                raise ManifestError(f"{where}.placement: channel names collide once the placement is applied: "
                                    f"{list(channels)}")
        units = get("units")
        csv_columns = get("csv_columns")
        if csv_columns is not None and len(csv_columns) != len(channels):
            raise ManifestError(f"{where}: csv_columns has {len(csv_columns)} names for {len(channels)} channels")
        label = entry.get("label")
        if label is not None and "label_column" in entry:
            raise ManifestError(f"{where}: give either a recording 'label' or a 'label_column', not both")
        # manifest-wide columns apply to csv files; a recording's own label replaces the manifest's label_column
        timestamp_column = get("timestamp_column")
        label_column = None if label is not None else get("label_column")
        if imu.endswith(".npy"):
            if "timestamp_column" in entry or "label_column" in entry:
                raise ManifestError(f"{where}: timestamp_column and label_column need a .csv IMU file")
            timestamp_column = label_column = None
        if (label is not None or label_column) and not classes:
            raise ManifestError(f"{where}: labels need the manifest's 'classes' list")
        if label is not None and str(label) not in classes:
            raise ManifestError(f"{where}.label: {label!r} is not in classes {list(classes)}")
        fold = entry.get("fold")
        fold = "" if fold is None else f"fold{fold}" if isinstance(fold, int) else fold
        recordings.append(Recording(
            index=k, name=entry.get("name", os.path.splitext(os.path.basename(entry["imu"]))[0]), imu=imu,
            video=video, video_offset_s=float(entry.get("video_offset_s", 0.0)),
            label=None if label is None else str(label), subject=str(entry.get("subject", "")),
            split=entry.get("split", fold or "train"), fold=fold, channels=channels,
            factors=_factors(channels, units, where), csv_columns=None if csv_columns is None else tuple(csv_columns),
            frames_fps=get("frames_fps"), timestamp_column=timestamp_column,
            timestamp_scale=TIMESTAMP_UNITS[get("timestamp_unit", "s")],
            max_gap_s=float(get("max_gap_s", DEFAULT_MAX_GAP_S)), label_column=label_column))
    _check_unique_names(recordings, path)
    return Manifest(path, rate, tuple(data["channels"]), classes, tuple(recordings), data.get("description", ""))


def _check_unique_names(recordings: list[Recording], path: str) -> None:
    """Names make the record ids, so two recordings may not share one (two rec.npy in different folders do)."""
    by_name = collections.defaultdict(list)
    for r in recordings:
        by_name[r.name].append(r)
    clashes = {name: rs for name, rs in by_name.items() if len(rs) > 1}
    if clashes:
        details = "; ".join(f"{name!r}: " + ", ".join(f"recordings[{r.index}] ({r.imu})"
                                                     for r in rs) for name, rs in clashes.items())
        raise ManifestError(f"{path}: recording names must be unique (they make the record ids); give the "
                            f"recordings a 'name': {details}")
