"""TFDS builder `imu_video_folder`: your own IMU recordings (csv or npy) with optional video and labels.

The folder holds a manifest (see README.md and manifest.py) naming the sampling rate, the channel names, their
units (converted to SI) and the recordings. Each recording is cut into `window_s` windows every `stride_s` (or kept
whole when window_s is 0); video (mp4, or a folder of frames at `frames_fps`) is sampled at `video_fps` from the
window start (shifted by the recording's `video_offset_s`), centre-cropped and resized to `frame_size`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from data_builders.imu_video_folder import manifest as manifest_lib
from imujax.io import csv_table, timeseries, video_frames

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(eq=False)
class ImuVideoFolderConfig(tfds.core.BuilderConfig):
    window_s: float = 2.0          # 0: one record per recording
    stride_s: float = 1.0
    with_video: bool = True        # ignored for recordings without video
    video_fps: float = 8.0
    frame_size: tuple[int, int] = (112, 112)
    jpeg_quality: int = 90


def read_imu(recording: manifest_lib.Recording, m: manifest_lib.Manifest) -> np.ndarray:
    """Raw values [T, C] in SI units."""
    path = recording.imu
    if path.endswith(".npy"):
        values = np.load(path)
        if values.ndim != 2 or values.shape[1] != len(m.channels):
            raise manifest_lib.ManifestError(f"{path}: expected an array [T, {len(m.channels)}], got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise manifest_lib.ManifestError(f"{path}: contains NaN or infinite values")
    elif path.endswith(".csv"):
        columns = m.csv_columns or m.channels
        table = csv_table.read_columns(path, float_columns=columns)
        values = np.stack([table[c] for c in columns], axis=1)
    else:
        raise manifest_lib.ManifestError(f"{path}: IMU files must be .csv or .npy")
    return (values.astype(np.float64) * np.asarray(m.factors)).astype(np.float32)


def frame_folder_jpegs(folder: str, fps: float | None, times_s: np.ndarray, size_hw, quality: int) -> list[bytes]:
    if fps is None:
        raise manifest_lib.ManifestError(f"{folder}: a frame folder needs 'frames_fps' in the manifest")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(FRAME_EXTENSIONS))
    if not files:
        raise manifest_lib.ManifestError(f"{folder}: no .jpg/.png frames")
    index = np.rint(np.asarray(times_s) * fps).astype(int)
    if index.max(initial=0) >= len(files) or index.min(initial=0) < 0:
        raise manifest_lib.ManifestError(f"{folder}: frame time {times_s.max():.3f} s is past the last of "
                                         f"{len(files)} frames at {fps} fps")
    out = []
    for i in index:
        with Image.open(os.path.join(folder, files[i])) as im:
            out.append(video_frames.to_jpeg(im, size_hw, quality))
    return out


class Builder(tfds.core.GeneratorBasedBuilder):
    """Your own IMU (+ video) recordings from a folder with a manifest."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Manifest-described folder of IMU csv/npy with optional video and labels."}
    BUILDER_CONFIGS = [ImuVideoFolderConfig(name="default", description="2 s windows, 1 s stride, 8 fps 112x112."),
                       ImuVideoFolderConfig(name="whole", description="One record per recording, IMU only.",
                                            window_s=0.0, with_video=False)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the folder holding manifest.yaml (or manifest.json) as the manual dir."

    def _manifest(self) -> manifest_lib.Manifest:
        if not hasattr(self, "_cached_manifest"):
            self._cached_manifest = manifest_lib.read_manifest(os.fspath(self._manual_dir_path))
        return self._cached_manifest

    def _info(self) -> tfds.core.DatasetInfo:
        c: ImuVideoFolderConfig = self.builder_config
        features = {"imu": tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding="bytes"),
                    "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                    "channels": tfds.features.Sequence(tfds.features.Text()),
                    "label": tfds.features.Scalar(dtype=np.int32),        # -1: unlabelled
                    "subject": tfds.features.Text(), "start_s": tfds.features.Scalar(dtype=np.float32),
                    "id": tfds.features.Text()}
        if c.with_video:
            features["video"] = tfds.features.Sequence(tfds.features.Image(shape=(*c.frame_size, 3),
                                                                           encoding_format="jpeg"))
            features["video_fps"] = tfds.features.Scalar(dtype=np.float32)
        return tfds.core.DatasetInfo(builder=self, description=__doc__, metadata=tfds.core.MetadataDict(), features=tfds.features.FeaturesDict(features),
                                     citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text())

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        self._manual_dir_path = dl_manager.manual_dir
        m = self._manifest()
        self.info.metadata["class_names"] = list(m.classes)
        self.info.metadata["manifest"] = os.path.basename(m.path)
        splits: dict[str, list] = {}
        for r in m.recordings:
            splits.setdefault(r.split, []).append(r)
        return {name: self._generate_examples(group) for name, group in splits.items()}

    def _generate_examples(self, recordings) -> Iterator[tuple[str, dict]]:
        c: ImuVideoFolderConfig = self.builder_config
        m = self._manifest()
        for r in recordings:
            imu = read_imu(r, m)
            if c.window_s:
                window, stride = int(round(c.window_s * m.rate_hz)), int(round(c.stride_s * m.rate_hz))
                starts = timeseries.window_starts(len(imu), window, stride)
            else:
                window, starts = len(imu), np.zeros(1, np.int64)
            num_frames = int(round(window / m.rate_hz * c.video_fps))
            for k, start in enumerate(starts):
                key = f"{r.split}_{r.name}_{k:04d}"
                record = {"imu": imu[start:start + window], "imu_rate_hz": np.float32(m.rate_hz),
                          "channels": list(m.channels),
                          "label": np.int32(m.classes.index(r.label) if r.label is not None else -1),
                          "subject": r.subject, "start_s": np.float32(start / m.rate_hz), "id": key}
                if c.with_video:
                    if r.video is None:
                        raise manifest_lib.ManifestError(f"{m.path}: recording {r.name!r} has no video; build the "
                                                         f"'whole' config or set with_video=False")
                    times = r.video_offset_s + start / m.rate_hz + np.arange(num_frames) / c.video_fps
                    if os.path.isdir(r.video):
                        frames = frame_folder_jpegs(r.video, m.frames_fps, times, c.frame_size, c.jpeg_quality)
                    else:
                        frames = video_frames.jpeg_frames_at(r.video, times, c.frame_size, c.jpeg_quality)
                    record["video"] = frames
                    record["video_fps"] = np.float32(c.video_fps)
                yield key, record
