"""TFDS builder `egoexo4d_imu`: 2 s Aria left-IMU windows around each Omnivore feature, with keystep labels.

HIMU-MAE's sampling (shared/specs/audio_mae_himu.md §2.1): one record per Omnivore feature index i of a take
(32-frame windows, stride 16 frames at 30 fps): start = 16/30 i + task_start_sec, end = min(start + 32/30,
task_end_sec); the IMU window is the 2 s centred on (start + end) / 2, in seconds since the IMU's first sample. A window
with no IMU samples ends the take. Records keep the raw 800 Hz samples (accel + gyro, 6 channels; spectrograms are
a transform), the feature row (`video_features` [1, 1536]), the keystep whose segment holds the window centre
(`label`, -1 if none; index into the sorted step_unique_ids, listed in metadata) and the take's scenario.
Splits: train = keystep-train takes plus takes in neither keystep file; validation = keystep-val takes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from data_builders.egoexo4d_imu import layout

CHANNELS = tuple(f"imu_left/{kind}_{axis}" for kind in ("acc", "gyro") for axis in "xyz")
FEATURE_DIM = 1536


@dataclasses.dataclass(eq=False)
class EgoExo4DImuConfig(tfds.core.BuilderConfig):
    imu_rate_hz: float = 800.0      # Aria Gen1 imu-left nominal rate
    feature_fps: float = 30.0
    feature_window_frames: int = 32
    feature_stride_frames: int = 16
    imu_window_seconds: float = 2.0


def window_bounds(index: int, task_start: float, task_end: float, c: EgoExo4DImuConfig) -> tuple[float, float, float]:
    """(imu window start, end, centre) in seconds for feature ``index``."""
    start = c.feature_stride_frames / c.feature_fps * index + task_start
    end = min(start + c.feature_window_frames / c.feature_fps, task_end)
    mid = 0.5 * (start + end)
    return mid - c.imu_window_seconds / 2, mid + c.imu_window_seconds / 2, mid


def keystep_at(segments: list[dict], t: float) -> str | None:
    for seg in segments:
        if float(seg["start_time"]) <= t < float(seg["end_time"]):
            return str(seg["step_unique_id"])
    return None


def take_windows(take: dict, imu: np.ndarray, features: np.ndarray, segments: list[dict], classes: dict[str, int],
                 c: EgoExo4DImuConfig) -> Iterator[tuple[str, dict]]:
    t0 = imu[0, 0]
    seconds = (imu[:, 0] - t0) / 1e9
    task_start = float(take.get("task_start_sec") or 0.0)
    task_end = float(take.get("task_end_sec") or math.inf)
    for i in range(features.shape[0]):
        lo, hi, mid = window_bounds(i, task_start, task_end, c)
        rows = (seconds >= lo) & (seconds < hi)
        if not rows.any():
            break
        step = keystep_at(segments, mid)
        key = f"{take['take_uid']}_{i:05d}"
        yield key, {
            "imu": imu[rows, 1:7].astype(np.float32), "imu_rate_hz": np.float32(c.imu_rate_hz),
            "channels": list(CHANNELS), "video_features": features[i:i + 1].astype(np.float32),
            "label": np.int32(classes[step] if step is not None else -1), "keystep": step or "",
            "scenario": str(take.get("parent_task_name", "")), "window_start_sec": np.float32(lo),
            "subject": str(take["take_name"]), "id": key}


class Builder(tfds.core.GeneratorBasedBuilder):
    """Ego-Exo4D Aria left IMU + Omnivore features, keystep labels (HIMU-MAE's pretraining / probing data)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One record per Omnivore feature: 2 s raw left-IMU window, feature row, keystep."}
    BUILDER_CONFIGS = [EgoExo4DImuConfig(name="default", description="800 Hz left IMU, 2 s windows, Omnivore 1536-d.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = layout.__doc__

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=tfds.features.FeaturesDict({
                "imu": tfds.features.Tensor(shape=(None, len(CHANNELS)), dtype=np.float32),
                "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                "channels": tfds.features.Sequence(tfds.features.Text()),
                "video_features": tfds.features.Tensor(shape=(1, FEATURE_DIM), dtype=np.float32),
                "label": tfds.features.Scalar(dtype=np.int32),
                "keystep": tfds.features.Text(), "scenario": tfds.features.Text(),
                "window_start_sec": tfds.features.Scalar(dtype=np.float32),
                "subject": tfds.features.Text(), "id": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text(),
            homepage="https://ego-exo4d-data.org/")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        takes = layout.read_takes(root)
        train_steps, val_steps = layout.read_keysteps(root, "train"), layout.read_keysteps(root, "val")
        ids = sorted({str(s["step_unique_id"]) for steps in (train_steps, val_steps) for segs in steps.values()
                      for s in segs})
        classes = {step: i for i, step in enumerate(ids)}
        self.info.metadata["keystep_ids"] = ids
        groups: dict[str, list[tuple[dict, list]]] = {"train": [], "validation": []}
        for take in takes:
            uid = take["take_uid"]
            if uid in val_steps:
                groups["validation"].append((take, val_steps[uid]))
            else:
                groups["train"].append((take, train_steps.get(uid, [])))
        return {split: self._generate_examples(root, group, classes) for split, group in groups.items() if group}

    def _generate_examples(self, root: str, group: list, classes: dict[str, int]):
        c: EgoExo4DImuConfig = self.builder_config
        for take, segments in group:
            features = layout.read_omnivore(root, take["take_uid"])
            imu = layout.read_left_imu(root, take["take_name"])
            if features is None or imu is None or len(imu) == 0:
                continue  # takes without Aria IMU or features are not usable
            yield from take_windows(take, imu, features, segments, classes, c)
