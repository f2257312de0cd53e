"""TFDS builder `revalexo`: RevalExo lower-body IMU + egocentric video windows with multi-horizon locomotion labels.

Each clip of the released `trimmed.zip` (see parsing.py) is cut into `window_s` windows every `stride_s` (upstream
evaluation grid: starts 0, 0.25, ... up to min(max_start_s, floor((duration - window - 1) / stride) * stride);
clips shorter than `min_clip_s` are dropped). A record holds every IMU column of the csv (raw units, NaN kept;
`imujax.transforms.channel_layouts` selects and maps channels), the labels at window end + each horizon, the per-horizon
transition flags, the subject (one split per subject, for LOSO) and `video_fps` frames of the window.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from data_builders.revalexo import parsing
from imujax.io import video_frames

HORIZONS_S = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


@dataclasses.dataclass(eq=False)
class RevalExoConfig(tfds.core.BuilderConfig):
    imu_rate_hz: float = 60.0
    window_s: float = 2.0
    stride_s: float = 0.25
    max_start_s: float | None = 7.75      # upstream eval cap min(8 - 0.25, ...); None: every window of the clip
    min_clip_s: float = 10.0
    horizons_s: Sequence[float] = HORIZONS_S
    with_video: bool = True
    video_fps: float = 8.0                # 16 frames per 2 s window, the frame count EVI-MAE samples
    frame_size: tuple[int, int] = (224, 224)
    jpeg_quality: int = 85

    @property
    def window_rows(self) -> int:
        return int(round(self.window_s * self.imu_rate_hz))

    @property
    def frames_per_window(self) -> int:
        return int(round(self.window_s * self.video_fps))


def window_starts(duration_s: float, config: RevalExoConfig) -> np.ndarray:
    last = math.floor((duration_s - config.window_s - 1.0) / config.stride_s + 1e-9) * config.stride_s
    if config.max_start_s is not None:
        last = min(last, config.max_start_s)
    if last < 0:
        return np.zeros(0)
    return np.arange(0.0, last + 1e-9, config.stride_s)


class Builder(tfds.core.GeneratorBasedBuilder):
    """RevalExo: 13 subjects with egocentric video (LOSO), 7 lower-body IMUs, multi-horizon locomotion labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Windows on the upstream evaluation grid, six horizons, one split per subject."}
    BUILDER_CONFIGS = [
        RevalExoConfig(name="default", description="IMU 60 Hz + 16 frames 224x224 per 2 s window, 0.25 s stride."),
        RevalExoConfig(name="small", description="As default with 112x112 frames.", frame_size=(112, 112)),
        RevalExoConfig(name="imu_only", description="IMU only; includes subjects without video.", with_video=False),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Request the RevalExo release (https://revalexo.github.io), unzip `trimmed.zip` and pass the folder holding
    `data_pairs/`, `trim_imus/`, `trim_videos/` and `label_mapping.json` as the manual dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        c: RevalExoConfig = self.builder_config
        features = {
            "imu": tfds.features.Tensor(shape=(c.window_rows, None), dtype=np.float32),
            "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
            "channels": tfds.features.Sequence(tfds.features.Text()),
            "labels": tfds.features.Tensor(shape=(len(c.horizons_s),), dtype=np.int32),
            "transitions": tfds.features.Tensor(shape=(len(c.horizons_s),), dtype=np.bool_),
            "label": tfds.features.Scalar(dtype=np.int32),   # horizon 0
            "subject": tfds.features.Text(),
            "clip_id": tfds.features.Text(),
            "start_s": tfds.features.Scalar(dtype=np.float32),
            "id": tfds.features.Text(),
        }
        if c.with_video:
            features["video"] = tfds.features.Sequence(
                tfds.features.Image(shape=(*c.frame_size, 3), encoding_format="jpeg"), length=c.frames_per_window)
            features["video_fps"] = tfds.features.Scalar(dtype=np.float32)
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__, features=tfds.features.FeaturesDict(features),
            metadata=tfds.core.MetadataDict(horizons_s=list(c.horizons_s)),
            citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text(),
            homepage="https://revalexo.github.io")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        c: RevalExoConfig = self.builder_config
        root = os.fspath(dl_manager.manual_dir)
        class_names = parsing.read_label_mapping(root)
        self.info.metadata["class_names"] = class_names
        pairs = parsing.read_pairs(root, require_video=c.with_video)
        if not pairs:
            raise FileNotFoundError(f"{root}: no usable pairs in data_pairs/*.json. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        # clips too short for any window are left out (listed in metadata.json "bad_files"), so no split ends up empty
        self._root = root
        self._bad_files: list[dict[str, str]] = []
        self.info.metadata["bad_files"] = self._bad_files
        required_s = max(c.min_clip_s, c.window_s + 1.0)
        by_subject: dict[str, list[parsing.Pair]] = {}
        for pair in pairs:
            with open(pair.imu_path, encoding="utf-8") as f:
                rows = sum(1 for line in f if line.strip()) - 1
            if rows / c.imu_rate_hz >= required_s:
                by_subject.setdefault(pair.subject, []).append(pair)
            else:
                self._reject_short(pair, f"{max(rows, 0)} IMU rows ({max(rows, 0) / c.imu_rate_hz:.2f} s at "
                                         f"{c.imu_rate_hz:g} Hz), shorter than the {required_s:g} s a clip needs")
        if not by_subject:
            raise ValueError(f"{root}: no clip is at least min_clip_s={c.min_clip_s} s long; rejected: "
                             + "; ".join(f"{b['file']}: {b['error']}" for b in self._bad_files))
        return {subject: self._generate_examples(group, class_names) for subject, group in by_subject.items()}

    def _reject_short(self, pair: parsing.Pair, reason: str) -> None:
        file = os.path.relpath(pair.imu_path, self._root)
        logging.warning("revalexo: rejecting clip %s/%s (%s): %s", pair.subject, pair.pair_id, file, reason)
        self._bad_files.append({"file": file, "clip": f"{pair.subject}/{pair.pair_id}", "error": reason})

    def _generate_examples(self, pairs: list[parsing.Pair], class_names: list[str]) -> Iterator[tuple[str, dict]]:
        c: RevalExoConfig = self.builder_config
        for pair in pairs:
            windows = clip_windows(pair, class_names, c)
            if not windows:  # the video is shorter than the IMU clip
                self._reject_short(pair, f"no window: the clip (IMU and video overlap) is shorter than the "
                                         f"{max(c.min_clip_s, c.window_s + 1.0):g} s a clip needs")
            yield from windows


def clip_windows(pair: parsing.Pair, class_names: list[str], c: RevalExoConfig) -> list[tuple[str, dict]]:
    imu, channels = parsing.read_imu_csv(pair.imu_path)
    duration = len(imu) / c.imu_rate_hz
    if c.with_video:
        duration = min(duration, video_frames.video_info(pair.video_path).duration_s)
    if duration < c.min_clip_s:
        return []
    starts = window_starts(duration, c)
    frame_offsets = np.arange(c.frames_per_window) / c.video_fps
    jpegs = []
    if c.with_video and len(starts):
        times = (starts[:, None] + frame_offsets[None]).ravel()
        jpegs = video_frames.jpeg_frames_at(pair.video_path, times, c.frame_size, c.jpeg_quality)
    out = []
    for k, start in enumerate(starts):
        first = int(start * c.imu_rate_hz)
        rows = imu[first:int((start + c.window_s) * c.imu_rate_hz)][:c.window_rows]
        if len(rows) < c.window_rows:  # pad with zeros to exactly window_rows, as upstream
            rows = np.concatenate([rows, np.zeros((c.window_rows - len(rows), imu.shape[1]), np.float32)])
        labels, flags = parsing.horizon_labels(pair, start + c.window_s, c.horizons_s, class_names)
        key = f"{pair.subject}_{pair.pair_id}_{k:03d}"
        record = {"imu": rows, "imu_rate_hz": np.float32(c.imu_rate_hz), "channels": channels,
                  "labels": np.asarray(labels, np.int32), "transitions": np.asarray(flags, bool),
                  "label": np.int32(labels[0]), "subject": pair.subject, "clip_id": pair.pair_id,
                  "start_s": np.float32(start), "id": key}
        if c.with_video:
            record["video"] = jpegs[k * c.frames_per_window:(k + 1) * c.frames_per_window]
            record["video_fps"] = np.float32(c.video_fps)
        out.append((key, record))
    return out
