"""Reading the Ego-Exo4D manual dir: takes.json, keystep annotations, Omnivore features and per-take IMU tables.

Layout (official Ego-Exo4D download names; IMU either as the HIMU-MAE extraction or straight from the VRS):

  <manual>/takes.json                                         [{take_uid, take_name, task_start_sec?, task_end_sec?,
                                                                parent_task_name?, ...}, ...]
  <manual>/annotations/keystep_{train,val}.json               {"annotations": {take_uid: {"segments": [
                                                                {"start_time", "end_time", "step_unique_id"}, ...]}}}
  <manual>/features/omnivore_video/<take_uid>_aria01_rgb.pt   float tensor (#features, 1, 1536) (or .npy)
  <manual>/features/imu_aria01/<take_name>/left.npy           (N, 7) [timestamp_ns, accel xyz, gyro xyz]
  or <manual>/takes/<take_name>/aria01_noimagestreams.vrs     (read with projectaria-tools, label imu-left)
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from imujax.bridges.torch import reader


class EgoExo4DLayoutError(ValueError):
    """The manual dir does not have the expected Ego-Exo4D layout; the message names the file and field."""


def read_json(path: str) -> Any:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing (expected in the Ego-Exo4D manual dir)")
    with open(path) as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as err:
            raise EgoExo4DLayoutError(f"{path}: not valid JSON ({err})") from None


def read_takes(root: str) -> list[dict]:
    path = os.path.join(root, "takes.json")
    takes = read_json(path)
    if not isinstance(takes, list):
        raise EgoExo4DLayoutError(f"{path}: expected a list of takes, got {type(takes).__name__}")
    for i, take in enumerate(takes):
        for field in ("take_uid", "take_name"):
            if field not in take:
                raise EgoExo4DLayoutError(f"{path}: take #{i} has no field {field!r}")
    return takes


def read_keysteps(root: str, split: str) -> dict[str, list[dict]]:
    """take_uid -> keystep segments of annotations/keystep_<split>.json (empty when the file is absent)."""
    path = os.path.join(root, "annotations", f"keystep_{split}.json")
    if not os.path.exists(path):
        return {}
    data = read_json(path)
    if "annotations" not in data:
        raise EgoExo4DLayoutError(f"{path}: no top-level field 'annotations'")
    out = {}
    for uid, entry in data["annotations"].items():
        segments = entry.get("segments")
        if segments is None:
            raise EgoExo4DLayoutError(f"{path}: annotations[{uid!r}] has no field 'segments'")
        for j, seg in enumerate(segments):
            for field in ("start_time", "end_time", "step_unique_id"):
                if field not in seg:
                    raise EgoExo4DLayoutError(f"{path}: annotations[{uid!r}].segments[{j}] has no field {field!r}")
        out[uid] = segments
    return out


def read_omnivore(root: str, take_uid: str) -> np.ndarray | None:
    """(#features, 1536) float32 of a take, or None when the take has no feature file."""
    base = os.path.join(root, "features", "omnivore_video", f"{take_uid}_aria01_rgb")
    for ext in (".pt", ".npy"):
        path = base + ext
        if os.path.exists(path):
            array = np.load(path) if ext == ".npy" else reader.load_checkpoint(path)
            array = np.asarray(array, np.float32)
            if array.ndim not in (2, 3) or array.shape[-1] != 1536:
                raise EgoExo4DLayoutError(f"{path}: expected (#features, 1, 1536), got {array.shape}")
            return array.reshape(array.shape[0], -1)
    return None


def read_left_imu(root: str, take_name: str) -> np.ndarray | None:
    """(N, 7) [timestamp_ns, accel xyz, gyro xyz] float64 of the left Aria IMU, or None when the take has none."""
    path = os.path.join(root, "features", "imu_aria01", take_name, "left.npy")
    if os.path.exists(path):
        table = np.load(path)
        if table.ndim != 2 or table.shape[1] != 7:
            raise EgoExo4DLayoutError(f"{path}: expected (N, 7) [timestamp_ns, accel xyz, gyro xyz], got {table.shape}")
        return table.astype(np.float64)
    vrs = os.path.join(root, "takes", take_name, "aria01_noimagestreams.vrs")
    if os.path.exists(vrs):
        from imujax.io import aria_vrs
        return aria_vrs.imu_table(vrs, "imu-left")
    return None
