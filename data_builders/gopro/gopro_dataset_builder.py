"""TFDS builder `gopro`: GoPro MP4 files -> fixed-length windows of camera IMU (from GPMF) and video frames.

Each MP4 in the manual directory (searched recursively) is read as:
- IMU: GPMF ACCL (m/s²) and GYRO (rad/s), scaled by SCAL, axes mapped by MTRX / ORIN→ORIO, placed on the MP4
  timeline and linearly resampled to `imu_rate_hz`; channels `camera/acc_x..z`, `camera/gyro_x..z`.
- video: frames nearest to `start + j / video_fps`, centre-cropped and resized to `frame_size`, stored as JPEG.
Window k covers [k * stride, k * stride + window) seconds on the MP4 timeline, within the span that has both IMU
and video. Records are unlabelled; `subject` is 0 (GoPro files carry no wearer id).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from imujax.io import gpmf, mp4, timeseries, video_frames

CHANNELS = tuple(f"camera/{sensor}_{axis}" for sensor in ("acc", "gyro") for axis in "xyz")
_EXPECTED_UNITS = {"ACCL": ("m/s²", "m/s2"), "GYRO": ("rad/s",)}


@dataclasses.dataclass(eq=False)
class GoproConfig(tfds.core.BuilderConfig):
    window_seconds: float = 2.0
    stride_seconds: float | None = None   # None: back-to-back windows (stride = window)
    imu_rate_hz: float = 200.0
    video_fps: float = 8.0
    frame_size: tuple[int, int] = (64, 64)  # (height, width)
    jpeg_quality: int = 90
    bad_file_policy: str = "raise"        # "raise" or "skip" (skipped files are listed in metadata.json)

    @property
    def imu_length(self) -> int:
        return int(round(self.window_seconds * self.imu_rate_hz))

    @property
    def num_frames(self) -> int:
        return int(round(self.window_seconds * self.video_fps))

    @property
    def stride(self) -> float:
        return self.window_seconds if self.stride_seconds is None else self.stride_seconds


class ShortRecordingError(timeseries.TimeSeriesError):
    """An MP4 whose IMU + video span is shorter than one window: listed in bad_files under either policy."""


class Builder(tfds.core.GeneratorBasedBuilder):
    """Unlabelled, synchronised IMU + video windows from GoPro MP4 recordings."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "GPMF ACCL/GYRO + JPEG frames, fixed-length windows."}
    BUILDER_CONFIGS = [
        GoproConfig(name="default", description="2 s windows, IMU 200 Hz, 8 fps 64x64 frames (tests, smoke runs)."),
        GoproConfig(name="frames224", frame_size=(224, 224),
                    description="2 s windows, IMU 200 Hz, 8 fps 224x224 frames."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Put GoPro .mp4 files (HERO5 and later, MAX, Fusion: any file with a GPMF `gpmd` metadata track) in the manual
    directory, in any sub-folder layout: `tfds build data_builders/gopro --manual_dir=/path/to/mp4s`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        config: GoproConfig = self.builder_config
        height, width = config.frame_size
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "imu": tfds.features.Tensor(shape=(config.imu_length, len(CHANNELS)), dtype=np.float32),
                "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                "channels": tfds.features.Sequence(tfds.features.Text()),
                "video": tfds.features.Sequence(
                    tfds.features.Image(shape=(height, width, 3), encoding_format="jpeg"),
                    length=config.num_frames),
                "video_fps": tfds.features.Scalar(dtype=np.float32),
                "subject": tfds.features.Scalar(dtype=np.int32),
                "id": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text(),
            homepage="https://github.com/gopro/gpmf-parser",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        if self.builder_config.bad_file_policy not in ("raise", "skip"):
            raise ValueError(f"bad_file_policy must be 'raise' or 'skip', got {self.builder_config.bad_file_policy!r}")
        root = os.fspath(dl_manager.manual_dir)
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names
                       if f.lower().endswith(".mp4"))
        if not files:
            raise FileNotFoundError(f"{root}: no .mp4 files found. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        return {"train": self._generate_examples(root, files)}

    def _generate_examples(self, root: str, files: list[str]) -> Iterator[tuple[str, dict]]:
        config: GoproConfig = self.builder_config
        bad_files = []
        yielded = 0
        for path in files:
            try:
                windows = list(file_windows(path, config))
            except (gpmf.GpmfError, mp4.Mp4Error, video_frames.VideoError, timeseries.TimeSeriesError) as e:
                if config.bad_file_policy != "skip" and not isinstance(e, ShortRecordingError):
                    raise
                logging.warning("gopro: skipping %s: %s", path, e)
                bad_files.append({"file": os.path.relpath(path, root), "error": str(e)})
                continue
            name = os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, "/")
            for k, record in enumerate(windows):
                key = f"{name}_w{k:04d}"
                yield key, {**record, "id": key}
            yielded += len(windows)
        self.info.metadata["bad_files"] = bad_files
        if not yielded:  # otherwise tfds fails with "No examples were yielded", naming no file
            raise timeseries.TimeSeriesError(f"{root}: no window from any .mp4; rejected: "
                                             + "; ".join(f"{b['file']}: {b['error']}" for b in bad_files))


def window_starts_s(span_start: float, span_end: float, config: GoproConfig) -> np.ndarray:
    """Start times of every full window inside [span_start, span_end]."""
    n = int(np.floor((span_end - span_start - config.window_seconds) / config.stride + 1e-9)) + 1
    return span_start + np.arange(max(n, 0)) * config.stride


def _check_units(stream: gpmf.GpmfStream, path: str) -> None:
    # GPMF files without SIUN/UNIT use GoPro's defaults, which are these units.
    if stream.units and stream.units not in _EXPECTED_UNITS[stream.fourcc]:
        raise gpmf.GpmfError(f"{path}: {stream.fourcc} units are {stream.units!r}, "
                             f"expected one of {_EXPECTED_UNITS[stream.fourcc]}")


def file_windows(path: str, config: GoproConfig) -> Iterator[dict]:
    """Records (without `id`) for every window of one MP4."""
    streams = gpmf.read_streams(path, ["ACCL", "GYRO"])
    for stream in streams.values():
        _check_units(stream, path)
        if stream.values.shape[1] != 3:
            raise gpmf.GpmfError(f"{path}: {stream.fourcc} has {stream.values.shape[1]} axes, expected 3")
    info = video_frames.video_info(path)
    accl, gyro = streams["ACCL"], streams["GYRO"]
    span_start = max(accl.video_time_s[0], gyro.video_time_s[0], 0.0)
    span_end = min(accl.video_time_s[-1], gyro.video_time_s[-1], info.duration_s)
    starts = window_starts_s(span_start, span_end, config)
    if not len(starts):
        raise ShortRecordingError(f"{path}: IMU and video overlap for {max(span_end - span_start, 0.0):.2f} s, "
                                  f"shorter than one {config.window_seconds:g} s window")
    imu_offsets = np.arange(config.imu_length) / config.imu_rate_hz
    frame_offsets = np.arange(config.num_frames) / config.video_fps
    # samples falling at the same instant in the MP4 timeline would break interpolation; merge them first
    accl_t, accl_v = timeseries.dedupe_timestamps(accl.video_time_s, accl.values, f"{path} ACCL")
    gyro_t, gyro_v = timeseries.dedupe_timestamps(gyro.video_time_s, gyro.values, f"{path} GYRO")
    frame_times = (starts[:, None] + frame_offsets[None, :]).reshape(-1)
    jpegs = video_frames.jpeg_frames_at(path, frame_times, config.frame_size, config.jpeg_quality)
    for k, start in enumerate(starts):
        grid = start + imu_offsets
        imu = np.concatenate([
            timeseries.resample_linear(accl_t, accl_v, grid, f"{path} ACCL"),
            timeseries.resample_linear(gyro_t, gyro_v, grid, f"{path} GYRO"),
        ], axis=1)
        yield {
            "imu": imu.astype(np.float32),
            "imu_rate_hz": np.float32(config.imu_rate_hz),
            "channels": list(CHANNELS),
            "video": jpegs[k * config.num_frames:(k + 1) * config.num_frames],
            "video_fps": np.float32(config.video_fps),
            "subject": np.int32(0),
        }
