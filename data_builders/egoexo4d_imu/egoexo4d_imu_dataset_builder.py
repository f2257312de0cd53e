"""TFDS builder `egoexo4d_imu`: 2 s Aria left-IMU windows around each Omnivore feature, with keystep labels.

HIMU-MAE's sampling (amir-goudarzi/IMU_testing@9c52aa2
notebooks/egoexo4d.ipynb "Create Pretraining metadata with omnivore" and src/data/egoexo4d.py), per take with task
timing and both a feature file and an IMU table:
- clip i of the Omnivore features (32 frames, stride 16, 30 fps): start = 16/30 i + task_start_sec,
  end = start + 32/30; only the LAST clip, when it runs past task_end_sec, is shifted to [task_end - 32/30, task_end]
  (the Ego-Exo4D extractor does the same at the end of the video, docs/data/features.md);
- IMU time 0 is the later of the left and right IMUs' first timestamps (left only when no right table exists);
- the first clip with no left (or right) IMU sample in [start, end) ends the take;
- the record keeps the 2 s of raw 800 Hz left IMU samples (accel + gyro, 6 channels) with timestamp in
  [mid - 1, mid + 1), mid = (start + end) / 2; spectrograms are a transform (`imujax.transforms.himu`);
- label: the LAST keystep segment (file order) with start_time <= mid - 1 and end_time >= mid + 1, i.e. holding the
  whole 2 s window (IMU_testing src/data/egoexo4d.py `__get_label_by_entry__`); -1 when none. `label` indexes
  the sorted step_unique_ids (metadata `keystep_ids`, names in `keystep_names` from the files' `vocabulary`);
  HIMU-MAE's 68-class verb mapping is not reproduced here (apply it in a transform via `keystep`).
Splits (notebook cell "train/valid"): train = keystep-train takes plus takes in neither keystep file; validation =
keystep-val takes. Known deviation: upstream compares float32 nanosecond timestamps; this builder uses float64.
"""

from __future__ import annotations

import dataclasses
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
    imu_rate_hz: float = 800.0      # Aria Gen1 imu-left nominal rate (imu-right is 1 kHz)
    feature_fps: float = 30.0
    feature_window_frames: int = 32
    feature_stride_frames: int = 16
    imu_window_seconds: float = 2.0


def clip_bounds(index: int, n_features: int, task_start: float, task_end: float,
                c: EgoExo4DImuConfig) -> tuple[float, float]:
    """(start, end) in take seconds of Omnivore clip ``index`` (the last one is shifted back to end at task_end)."""
    length = c.feature_window_frames / c.feature_fps
    start = c.feature_stride_frames / c.feature_fps * index + task_start
    end = start + length
    if index == n_features - 1 and end > task_end:
        start, end = task_end - length, task_end
    return start, end


def window_bounds(clip: tuple[float, float], c: EgoExo4DImuConfig) -> tuple[float, float, float]:
    """(IMU window start, end, centre) in take seconds: ``imu_window_seconds`` centred on the clip."""
    mid = 0.5 * (clip[0] + clip[1])
    return mid - c.imu_window_seconds / 2, mid + c.imu_window_seconds / 2, mid


def keystep_at(segments: list[dict], lo: float, hi: float) -> str | None:
    """step_unique_id of the last segment holding [lo, hi] entirely, or None."""
    found = None
    for seg in segments:
        if float(seg["start_time"]) <= lo and float(seg["end_time"]) >= hi:
            found = seg["step_unique_id"]
    return None if found is None else step_id(found)


def step_id(value) -> str:
    """A step_unique_id (an int in the JSON) as the string key of `vocabulary`."""
    return str(int(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _rows(ts_ns: np.ndarray, origin_ns: float, lo: float, hi: float) -> np.ndarray:
    return (ts_ns >= lo * 1e9 + origin_ns) & (ts_ns < hi * 1e9 + origin_ns)


def take_windows(take: dict, left: np.ndarray, right: np.ndarray | None, features: np.ndarray,
                 segments: list[dict], classes: dict[str, int], c: EgoExo4DImuConfig) -> Iterator[tuple[str, dict]]:
    timing = layout.task_timing(take)
    if timing is None:
        return
    task_start, task_end = timing
    origin = max(left[0, 0], right[0, 0]) if right is not None and len(right) else left[0, 0]
    for i in range(features.shape[0]):
        clip = clip_bounds(i, features.shape[0], task_start, task_end, c)
        if not _rows(left[:, 0], origin, *clip).any() or (
                right is not None and not _rows(right[:, 0], origin, *clip).any()):
            break
        lo, hi, _ = window_bounds(clip, c)
        step = keystep_at(segments, lo, hi)
        key = f"{take['take_uid']}_{i:05d}"
        yield key, {
            "imu": left[_rows(left[:, 0], origin, lo, hi), 1:7].astype(np.float32),
            "imu_rate_hz": np.float32(c.imu_rate_hz), "channels": list(CHANNELS),
            "video_features": features[i:i + 1].astype(np.float32),
            "label": np.int32(classes[step] if step is not None else -1), "keystep": step or "",
            "scenario": str(take.get("parent_task_name") or ""), "window_start_sec": np.float32(lo),
            "subject": str(take["take_name"]), "id": key}


def _sort_ids(ids: set[str]) -> list[str]:
    return sorted(ids, key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))


class Builder(tfds.core.GeneratorBasedBuilder):
    """Ego-Exo4D Aria left IMU + Omnivore features, keystep labels (HIMU-MAE's pretraining / probing data)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "One record per Omnivore feature: 2 s raw left-IMU window, feature row, keystep.",
                     "1.1.0": "Checked against HIMU-MAE's code: last-clip shift, left/right time origin, keystep "
                              "segment must hold the whole window, takes without task timing skipped, root_dir "
                              "for the VRS, keystep_names metadata."}
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
        (train_steps, train_names), (val_steps, val_names) = (layout.read_keysteps(root, "train"),
                                                              layout.read_keysteps(root, "val"))
        ids = _sort_ids({step_id(s["step_unique_id"]) for steps in (train_steps, val_steps)
                         for segs in steps.values() for s in segs})
        classes = {step: i for i, step in enumerate(ids)}
        names = {**train_names, **val_names}
        self.info.metadata["keystep_ids"] = ids
        self.info.metadata["keystep_names"] = [names.get(step, "") for step in ids]
        groups: dict[str, list[tuple[dict, list]]] = {"train": [], "validation": []}
        for take in takes:
            uid = take["take_uid"]
            if uid in train_steps:
                groups["train"].append((take, train_steps[uid]))
            elif uid in val_steps:
                groups["validation"].append((take, val_steps[uid]))
            else:
                groups["train"].append((take, []))
        return {split: self._generate_examples(root, group, classes) for split, group in groups.items() if group}

    def _generate_examples(self, root: str, group: list, classes: dict[str, int]):
        c: EgoExo4DImuConfig = self.builder_config
        for take, segments in group:
            if layout.task_timing(take) is None:
                continue  # no task timing: HIMU-MAE skips the take
            features = layout.read_omnivore(root, take["take_uid"])
            if features is None:
                continue
            left, right = layout.read_imu(root, take)
            if left is None or len(left) == 0:
                continue  # takes without Aria IMU are not usable
            yield from take_windows(take, left, right, features, segments, classes, c)
