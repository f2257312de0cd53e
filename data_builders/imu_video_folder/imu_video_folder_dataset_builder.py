"""TFDS builder `imu_video_folder`: your own IMU recordings (csv or npy) with optional video and labels.

The folder holds a manifest (see README.md and manifest.py) naming the sampling rate, the channel names, their
units (converted to SI) and the recordings. Each recording is cut into `window_s` windows every `stride_s` (or kept
whole when window_s is 0); video (mp4, or a folder of frames at `frames_fps`) is sampled at `video_fps` from the
window start (shifted by the recording's `video_offset_s`), centre-cropped and resized to `frame_size`.

Bad data is handled per recording: an unreadable, empty, NaN/Inf or wrong-width IMU file, a missing video or frame
folder, an undecodable video or frame image raise (bad_file_policy="raise", the default) or reject the recording
(bad_file_policy="skip"); a recording shorter than one window is always rejected (it is valid data this window size
cannot use). Every rejected recording is listed in the dataset's metadata.json under "bad_files" as
{"file": path of the file at fault relative to the folder, "recording", "split", "error"}, and logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
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
    bad_file_policy: str = "raise"  # "raise" or "skip" (skipped recordings are listed in metadata.json)


class ShortRecordingError(manifest_lib.ManifestError):
    """A recording with fewer samples than one window: rejected with a report entry under either policy."""


# errors that reject one recording (they name its file); anything else is a bug and always propagates
RECORDING_ERRORS = (manifest_lib.ManifestError, csv_table.CsvFormatError, video_frames.VideoError,
                    timeseries.TimeSeriesError, OSError)


@contextlib.contextmanager
def _blame(path: str):
    """Tags a recording error raised inside with the file at fault (`bad_file`), unless an inner _blame did."""
    try:
        yield
    except RECORDING_ERRORS as e:
        if getattr(e, "bad_file", None) is None:
            e.bad_file = path
        raise


def read_imu(recording: manifest_lib.Recording, m: manifest_lib.Manifest) -> np.ndarray:
    """Raw values [T, C] in SI units."""
    path = recording.imu
    if path.endswith(".npy"):
        try:
            values = np.load(path)
        except (ValueError, OSError, EOFError) as e:
            raise manifest_lib.ManifestError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from e
        if values.ndim != 2 or values.shape[1] != len(m.channels):
            raise manifest_lib.ManifestError(f"{path}: expected an array [T, {len(m.channels)}], got {values.shape}")
        if not len(values):
            raise manifest_lib.ManifestError(f"{path}: no samples (an empty recording)")
        if not np.all(np.isfinite(values)):
            bad = np.argwhere(~np.isfinite(values))[:5].tolist()
            raise manifest_lib.ManifestError(f"{path}: contains NaN or infinite values, first at [row, column] {bad}")
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
        path = os.path.join(folder, files[i])
        with _blame(path):
            try:
                with Image.open(path) as im:
                    out.append(video_frames.to_jpeg(im, size_hw, quality))
            except (OSError, SyntaxError, ValueError) as e:  # Pillow: unknown format, truncated data, bad header
                raise video_frames.VideoError(f"{path}: frame cannot be decoded ({type(e).__name__}: {e})") from e
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
            # under "skip", missing files reject their recording in _generate_examples instead of the whole build
            self._cached_manifest = manifest_lib.read_manifest(
                os.fspath(self._manual_dir_path), check_files=self.builder_config.bad_file_policy != "skip")
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
        if self.builder_config.bad_file_policy not in ("raise", "skip"):
            raise ValueError(f"bad_file_policy must be 'raise' or 'skip', got {self.builder_config.bad_file_policy!r}")
        self._manual_dir_path = dl_manager.manual_dir
        m = self._manifest()
        self.info.metadata["class_names"] = list(m.classes)
        self.info.metadata["manifest"] = os.path.basename(m.path)
        self._bad_files: list[dict[str, str]] = []
        self.info.metadata["bad_files"] = self._bad_files  # filled while generating; written with the dataset
        splits: dict[str, list] = {}
        for r in m.recordings:
            splits.setdefault(r.split, []).append(r)
        return {name: self._generate_examples(group) for name, group in splits.items()}

    def _generate_examples(self, recordings) -> Iterator[tuple[str, dict]]:
        c: ImuVideoFolderConfig = self.builder_config
        m = self._manifest()
        yielded = 0
        for r in recordings:
            try:
                # a whole recording at a time, so that a rejected one leaves no partial windows behind
                records = self._recording_examples(r, m)
            except RECORDING_ERRORS as e:
                if c.bad_file_policy == "raise" and not isinstance(e, ShortRecordingError):
                    raise
                bad_file = os.path.relpath(getattr(e, "bad_file", None) or r.imu, os.path.dirname(m.path))
                logging.warning("imu_video_folder: rejecting recording %r (%s): %s", r.name, bad_file, e)
                self._bad_files.append({"file": bad_file, "recording": r.name, "split": r.split, "error": str(e)})
                continue
            yielded += len(records)
            yield from records
        if not yielded:
            rejected = [b for b in self._bad_files if b["split"] == recordings[0].split]
            raise manifest_lib.ManifestError(
                f"{m.path}: split {recordings[0].split!r} has no usable recording; rejected: "
                + "; ".join(f"{b['file']}: {b['error']}" for b in rejected))

    def _recording_examples(self, r: manifest_lib.Recording, m: manifest_lib.Manifest) -> list[tuple[str, dict]]:
        """Every (key, record) of one recording; errors carry the file at fault as `bad_file`."""
        c: ImuVideoFolderConfig = self.builder_config
        with _blame(r.imu):
            if not os.path.exists(r.imu):
                raise manifest_lib.ManifestError(f"{m.path}: recording {r.name!r}: imu file {r.imu} does not exist")
            imu = read_imu(r, m)
            window = int(round(c.window_s * m.rate_hz)) if c.window_s else max(len(imu), 1)
            if len(imu) < window:
                raise ShortRecordingError(f"{r.imu}: {len(imu)} samples ({len(imu) / m.rate_hz:.2f} s), shorter "
                                          f"than one window of {window} samples ({window / m.rate_hz:.2f} s at "
                                          f"{m.rate_hz:g} Hz)")
        if c.window_s:
            starts = timeseries.window_starts(len(imu), window, int(round(c.stride_s * m.rate_hz)))
        else:
            starts = np.zeros(1, np.int64)
        num_frames = int(round(window / m.rate_hz * c.video_fps))
        if c.with_video:
            with _blame(m.path):
                if r.video is None:
                    raise manifest_lib.ManifestError(f"{m.path}: recording {r.name!r} has no video; build the "
                                                     f"'whole' config or set with_video=False")
            with _blame(r.video):
                if not os.path.exists(r.video):
                    raise manifest_lib.ManifestError(f"{m.path}: recording {r.name!r}: video {r.video} does not "
                                                     f"exist")
        out = []
        for k, start in enumerate(starts):
            key = f"{r.split}_{r.name}_{k:04d}"
            record = {"imu": imu[start:start + window], "imu_rate_hz": np.float32(m.rate_hz),
                      "channels": list(m.channels),
                      "label": np.int32(m.classes.index(r.label) if r.label is not None else -1),
                      "subject": r.subject, "start_s": np.float32(start / m.rate_hz), "id": key}
            if c.with_video:
                times = r.video_offset_s + start / m.rate_hz + np.arange(num_frames) / c.video_fps
                with _blame(r.video):
                    if os.path.isdir(r.video):
                        frames = frame_folder_jpegs(r.video, m.frames_fps, times, c.frame_size, c.jpeg_quality)
                    else:
                        frames = video_frames.jpeg_frames_at(r.video, times, c.frame_size, c.jpeg_quality)
                record["video"] = frames
                record["video_fps"] = np.float32(c.video_fps)
            out.append((key, record))
        return out
