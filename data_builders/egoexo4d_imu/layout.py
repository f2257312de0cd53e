"""Reading the Ego-Exo4D manual dir: takes.json, keystep annotations, Omnivore features and per-take IMU tables.

Layout (official Ego-Exo4D download names: `egoexo -o <manual> --parts metadata annotations features/omnivore_video`
plus `take_vrs_noimagestream` (in the CLI's default parts) for the VRS, or HIMU-MAE's extracted IMU tables instead):

  <manual>/takes.json                       list of takes: take_uid, take_name, root_dir ("takes/<take_name>"),
                                            task_start_sec / task_end_sec (seconds in the take; null for takes with
                                            no task timing, which are skipped), parent_task_name (the scenario), ...
  <manual>/annotations/keystep_{train,val}.json
                                            {"annotations": {take_uid: {"take_uid", "take_name", "scenario",
                                              "segments": [{"start_time", "end_time", "step_unique_id", "step_id",
                                              "step_name", ...}]}}, "taxonomy": {...},
                                             "vocabulary": {"<step_unique_id>": "<step name>"}}
  <manual>/features/omnivore_video/<take_uid>_aria01_rgb.pt
                                            float tensor (#features, 1, 1536): Omnivore Swin-L, 32-frame windows at a
                                            16-frame stride, 30 fps (a .npy of the same shape is accepted too)
  IMU, either HIMU-MAE's extraction (its notebooks/egoexo4d.ipynb):
  <manual>/features/imu_aria01/<take_name>/left.npy    (N, 7) [timestamp_ns, accel xyz m/s^2, gyro xyz rad/s], 800 Hz
  <manual>/features/imu_aria01/<take_name>/right.npy   same layout, 1 kHz (optional: only its timestamps are used)
  or the take's VRS (needs projectaria-tools; streams `imu-left` and `imu-right`):
  <manual>/<root_dir>/aria01_noimagestreams.vrs        (root_dir from takes.json, default takes/<take_name>)

Verified against: takes.json fields - EGO4D/Ego-Exo4D-docs docs/data/metadata.md and HIMU-MAE
(amir-goudarzi/IMU_testing) notebooks/egoexo4d.ipynb (printed takes[0]); keystep JSON fields -
Ego-Exo4D-docs docs/annotations/keystep.md and IMU_testing src/data/egoexo4d.py; feature file names and window
timing - Ego-Exo4D-docs docs/data/features.md and facebookresearch/Ego4d ego4d/features/configs/egoexo_omnivore.yaml;
feature tensor shape - IMU_testing src/data/egoexo4d.py; VRS file name and stream labels/rates -
IMU_testing notebooks/egoexo4d.ipynb and src/data/egoexo4d.py; imu_aria01 tables - IMU_testing
notebooks/egoexo4d.ipynb and src/data/egoexo4d.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from imujax.io import tensor_files

VRS_NAME = "aria01_noimagestreams.vrs"
SEGMENT_FIELDS = ("start_time", "end_time", "step_unique_id")


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
        if not isinstance(take, dict):
            raise EgoExo4DLayoutError(f"{path}: take #{i} is a {type(take).__name__}, not an object")
        for field in ("take_uid", "take_name"):
            if field not in take:
                raise EgoExo4DLayoutError(f"{path}: take #{i} has no field {field!r}")
    return takes


def task_timing(take: dict) -> tuple[float, float] | None:
    """(task_start_sec, task_end_sec) of a take, or None when it has no task timing (HIMU-MAE skips those takes)."""
    if "task_timing_annotation_uid" in take and take["task_timing_annotation_uid"] is None:
        return None
    start, end = take.get("task_start_sec"), take.get("task_end_sec")
    if start is None or end is None:
        return None
    return float(start), float(end)


def read_keysteps(root: str, split: str) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """(take_uid -> segments, step_unique_id -> name) of annotations/keystep_<split>.json (empty when absent)."""
    path = os.path.join(root, "annotations", f"keystep_{split}.json")
    if not os.path.exists(path):
        return {}, {}
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), dict):
        raise EgoExo4DLayoutError(f"{path}: no top-level object 'annotations' (take_uid -> take annotation)")
    out = {}
    for uid, entry in data["annotations"].items():
        segments = entry.get("segments") if isinstance(entry, dict) else None
        if not isinstance(segments, list):
            raise EgoExo4DLayoutError(f"{path}: annotations[{uid!r}] has no list 'segments'")
        for j, seg in enumerate(segments):
            for field in SEGMENT_FIELDS:
                if field not in seg:
                    raise EgoExo4DLayoutError(f"{path}: annotations[{uid!r}].segments[{j}] has no field {field!r}")
        out[uid] = segments
    vocabulary = data.get("vocabulary", {})
    if not isinstance(vocabulary, dict):
        raise EgoExo4DLayoutError(f"{path}: 'vocabulary' is a {type(vocabulary).__name__}, expected "
                                  "{step_unique_id: name}")
    return out, {str(k): str(v) for k, v in vocabulary.items()}


def read_omnivore(root: str, take_uid: str) -> np.ndarray | None:
    """(#features, 1536) float32 of a take's Aria RGB Omnivore features, or None when the take has no feature file."""
    base = os.path.join(root, "features", "omnivore_video", f"{take_uid}_aria01_rgb")
    for ext in (".pt", ".npy"):
        path = base + ext
        if os.path.exists(path):
            array = np.load(path) if ext == ".npy" else tensor_files.load_checkpoint(path)
            array = np.asarray(array, np.float32)
            if array.ndim not in (2, 3) or array.shape[-1] != 1536 or (array.ndim == 3 and array.shape[1] != 1):
                raise EgoExo4DLayoutError(f"{path}: expected (#features, 1, 1536), got {array.shape}")
            return array.reshape(array.shape[0], -1)
    return None


def _table(path: str) -> np.ndarray:
    table = np.load(path)
    if table.ndim != 2 or table.shape[1] != 7:
        raise EgoExo4DLayoutError(f"{path}: expected (N, 7) [timestamp_ns, accel xyz, gyro xyz], got {table.shape}")
    return table.astype(np.float64)


def read_imu(root: str, take: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(left, right) (N, 7) float64 [timestamp_ns, accel xyz, gyro xyz] tables of a take; None where absent.

    The HIMU-MAE extraction (features/imu_aria01/<take_name>/{left,right}.npy) wins over the take's VRS.
    """
    folder = os.path.join(root, "features", "imu_aria01", str(take["take_name"]))
    left_path, right_path = os.path.join(folder, "left.npy"), os.path.join(folder, "right.npy")
    if os.path.exists(left_path):
        return _table(left_path), (_table(right_path) if os.path.exists(right_path) else None)
    vrs = os.path.join(root, str(take.get("root_dir") or os.path.join("takes", str(take["take_name"]))), VRS_NAME)
    if not os.path.exists(vrs):
        return None, None
    from imujax.io import aria_vrs
    left = aria_vrs.imu_table(vrs, "imu-left")
    try:
        right = aria_vrs.imu_table(vrs, "imu-right")
    except (KeyError, ValueError):  # no such stream, or an empty one
        right = None
    return left, right
