"""Reading the RevalExo `trimmed.zip` layout: per-subject pair json, IMU csv with a header, segments, label mapping.

Layout (revalexo/revalexo@6ca9000 pretrain/imu-video-mae/migrate_revalexo_data.py):
  <root>/data_pairs/<Subject>.json   {"subject", "has_ego_video", "pairs": {pair_id: {"imu", "video", "has_ego_video",
                                      "activity_segments": [{start, end, activity}],
                                      "transition_segments": [{start, end, transition}], ...}}}
  <root>/trim_imus/<Subject>/<imu>   csv, header row of `<kind>_<Sensor>_<axis>` columns (+ optional others)
  <root>/trim_videos/<Subject>/<video>
  <root>/label_mapping.json           {"label_to_idx": {...}} and/or {"idx_to_label": {...}}
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os

import numpy as np

from imujax.transforms import channel_layouts

BACKGROUND = "Background"
NO_TRANSITION = "no_transition"


class RevalExoError(ValueError):
    """Malformed RevalExo file; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Segment:
    start: float
    end: float
    name: str


@dataclasses.dataclass(frozen=True)
class Pair:
    subject: str
    pair_id: str
    imu_path: str
    video_path: str | None
    activities: tuple[Segment, ...]
    transitions: tuple[Segment, ...]


def _load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise RevalExoError(f"{path}: not valid JSON: {e}") from None


def read_label_mapping(root: str) -> list[str]:
    """Class names in index order, from label_mapping.json (root or data_pairs/)."""
    for path in (os.path.join(root, "label_mapping.json"), os.path.join(root, "data_pairs", "label_mapping.json")):
        if os.path.exists(path):
            break
    else:
        raise FileNotFoundError(f"{root}: label_mapping.json not found (looked in the root and data_pairs/)")
    data = _load_json(path)
    if "idx_to_label" in data:
        mapping = {int(k): str(v) for k, v in data["idx_to_label"].items()}
    elif "label_to_idx" in data:
        mapping = {int(v): str(k) for k, v in data["label_to_idx"].items()}
    else:
        raise RevalExoError(f"{path}: expected an 'idx_to_label' or 'label_to_idx' object, got keys {sorted(data)}")
    if sorted(mapping) != list(range(len(mapping))):
        raise RevalExoError(f"{path}: class indices must be 0..{len(mapping) - 1}, got {sorted(mapping)}")
    names = [mapping[i] for i in range(len(mapping))]
    if BACKGROUND not in names:
        raise RevalExoError(f"{path}: the mapping has no {BACKGROUND!r} class, which labels times outside every "
                            f"activity segment")
    return names


def _segments(entry: dict, key: str, name_key: str, where: str) -> tuple[Segment, ...]:
    out = []
    for k, seg in enumerate(entry.get(key, [])):
        try:
            start, end, name = float(seg["start"]), float(seg["end"]), str(seg[name_key])
        except (KeyError, TypeError, ValueError) as e:
            raise RevalExoError(f"{where}: {key}[{k}] needs numeric 'start', 'end' and '{name_key}': {e}") from None
        if end < start:
            raise RevalExoError(f"{where}: {key}[{k}] ends ({end}) before it starts ({start})")
        out.append(Segment(start, end, name))
    return tuple(out)


def read_pairs(root: str, require_video: bool) -> list[Pair]:
    """All pairs of every data_pairs/*.json, in subject then pair-id order; pairs without video are skipped
    when `require_video` (as the upstream migration does)."""
    pair_dir = os.path.join(root, "data_pairs")
    if not os.path.isdir(pair_dir):
        raise FileNotFoundError(f"{root}: no data_pairs/ folder; expected the RevalExo trimmed.zip layout")
    pairs = []
    for name in sorted(os.listdir(pair_dir)):
        if not name.endswith(".json") or name == "label_mapping.json":
            continue
        path = os.path.join(pair_dir, name)
        data = _load_json(path)
        for key in ("subject", "pairs"):
            if key not in data:
                raise RevalExoError(f"{path}: missing field {key!r}")
        subject = str(data["subject"])
        if require_video and not data.get("has_ego_video", True):
            continue
        for pair_id in sorted(data["pairs"]):
            entry = data["pairs"][pair_id]
            where = f"{path}: pairs[{pair_id!r}]"
            if "imu" not in entry:
                raise RevalExoError(f"{where}: missing field 'imu'")
            has_video = bool(entry.get("has_ego_video", True)) and bool(entry.get("video"))
            if require_video and not has_video:
                continue
            imu_path = os.path.join(root, "trim_imus", subject, entry["imu"])
            video_path = os.path.join(root, "trim_videos", subject, entry["video"]) if has_video else None
            for p in (imu_path, video_path):
                if p is not None and not os.path.exists(p):
                    raise FileNotFoundError(f"{where}: file {p} does not exist")
            pairs.append(Pair(subject, str(pair_id), imu_path, video_path,
                              _segments(entry, "activity_segments", "activity", where),
                              _segments(entry, "transition_segments", "transition", where)))
    return pairs


def read_imu_csv(path: str) -> tuple[np.ndarray, list[str]]:
    """All sensor-axis columns of a RevalExo IMU csv -> (float32 [T, C] with NaN kept, channel names).

    Column names map to `<sensor>/<kind>_<axis>` (`acc_Right_Foot_x` -> `right_foot/acc_x`); columns that are not
    sensor axes (timestamps, indices) are left out. Empty cells and 'nan' become NaN (upstream fills them with 0 at
    training time); any other non-numeric cell is an error naming the line and column.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise RevalExoError(f"{path}: empty file, expected a header row")
        header = [h.strip() for h in header]
        keep = [(i, channel_layouts.channel_name_from_header(h)) for i, h in enumerate(header)]
        keep = [(i, n) for i, n in keep if n is not None]
        if not keep:
            raise RevalExoError(f"{path}: no sensor columns like 'acc_Pelvis_x' in header {header}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise RevalExoError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
            values = []
            for i, name in keep:
                text = row[i].strip()
                try:
                    values.append(float(text) if text else math.nan)
                except ValueError:
                    raise RevalExoError(f"{path}: line {line}, column {header[i]!r}: expected a number, "
                                        f"got {text!r}") from None
            rows.append(values)
    if not rows:
        raise RevalExoError(f"{path}: no data rows")
    return np.asarray(rows, np.float32), [n for _, n in keep]


def label_at(segments: tuple[Segment, ...], t: float, default: str) -> str:
    """Name of the first segment with start <= t <= end, else `default`."""
    for seg in segments:
        if seg.start <= t <= seg.end:
            return seg.name
    return default


def horizon_labels(pair: Pair, window_end_s: float, horizons_s, class_names: list[str]) -> tuple[list[int], list[bool]]:
    """Activity index and transition flag at window end + h for every horizon (upstream rule)."""
    index = {n: i for i, n in enumerate(class_names)}
    labels, flags = [], []
    for h in horizons_s:
        t = window_end_s + h
        activity = label_at(pair.activities, t, BACKGROUND)
        if activity not in index:
            raise RevalExoError(f"{pair.subject}/{pair.pair_id}: activity {activity!r} is not in label_mapping.json "
                                f"(classes {class_names})")
        labels.append(index[activity])
        flags.append(label_at(pair.transitions, t, NO_TRANSITION) != NO_TRANSITION)
    return labels, flags
