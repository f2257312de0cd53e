"""TFDS builder `imu_video_folder`: your own IMU recordings (csv or npy) with optional video and labels.

The folder holds a manifest (see README.md, manifest.py and manifest.schema.json) naming the sampling rate, the
channel names, their units (converted to SI) and the recordings. Each recording (or each segment of it, when gaps
in its timestamps split it) is cut into `window_s` windows every `stride_s` (or kept whole when window_s is 0);
`pad_short` keeps a segment shorter than one window as one zero-padded window (`valid_samples` says how many samples
are real). Video (mp4, or a folder of frames at `frames_fps`) is sampled at `video_fps` from the window start
(shifted by the recording's `video_offset_s`), centre-cropped and resized to `frame_size`; a window whose frames
would fall before the video's first frame or after its last is left out (counted in metadata.json).

Bad data is handled per recording: an unreadable, empty, non-numeric, NaN/Inf, out-of-range or wrong-width IMU
file, a missing or non-regular file, an undecodable video or frame image raise (bad_file_policy="raise", the
default) or reject the recording (bad_file_policy="skip"); a recording shorter than one window without pad_short is
always rejected (it is valid data this window size cannot use). Every rejected recording is listed in the dataset's
metadata.json under "bad_files" as {"file": path of the file at fault relative to the folder, "recording", "split",
"error"}, and logged. What a consumer needs to read the records (channels, rate, window, classes, video settings)
is in the metadata too: see `describe`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import math
import os
import pathlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from data_builders.imu_video_folder import manifest as manifest_lib
from data_builders.imu_video_folder import recording as recording_lib
from imujax.io import csv_table, timeseries, video_frames

WINDOW_LABELS = ("majority", "centre")


@dataclasses.dataclass(eq=False)
class ImuVideoFolderConfig(tfds.core.BuilderConfig):
    window_s: float = 2.0          # 0: one record per recording (per segment)
    stride_s: float = 1.0
    pad_short: bool = False        # keep segments shorter than one window as one zero-padded window
    window_label: str = "majority"  # label_column: "majority" (ties -> lowest class index) or "centre" sample
    channels: tuple[str, ...] = ()  # keep these channels, in this order ('*/acc_x' matches any placement)
    with_video: bool = True        # ignored for recordings without video
    video_fps: float = 8.0
    frame_size: tuple[int, int] = (112, 112)
    jpeg_quality: int = 90
    bad_file_policy: str = "raise"  # "raise" or "skip" (skipped recordings are listed in metadata.json)


def check_config(c: ImuVideoFolderConfig) -> None:
    """Config values that cannot work (a JSON config from the command line is not type-checked by TFDS)."""
    def need(ok, field, what):
        if not ok:
            raise ValueError(f"imu_video_folder config {c.name!r}: {field}={getattr(c, field)!r}: {what}")

    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    need(number(c.window_s) and c.window_s >= 0, "window_s", "must be a finite number >= 0")
    need(number(c.stride_s) and c.stride_s > 0, "stride_s", "must be a finite number > 0")
    need(number(c.video_fps) and c.video_fps > 0, "video_fps", "must be a finite number > 0")
    need(len(c.frame_size) == 2 and all(isinstance(v, int) and 0 < v <= 4096 for v in c.frame_size), "frame_size",
         "must be [height, width], integers in 1..4096")
    need(isinstance(c.jpeg_quality, int) and 1 <= c.jpeg_quality <= 100, "jpeg_quality", "must be in 1..100")
    need(c.bad_file_policy in ("raise", "skip"), "bad_file_policy", "must be 'raise' or 'skip'")
    need(c.window_label in WINDOW_LABELS, "window_label", f"must be one of {WINDOW_LABELS}")
    need(all(isinstance(p, str) and p for p in c.channels) and len(set(c.channels)) == len(c.channels), "channels",
         "must be distinct channel names or patterns")


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


def select_channels(channels: tuple[str, ...], patterns: tuple[str, ...], where: str) -> list[int]:
    """Column of each pattern (exact name or fnmatch pattern such as '*/acc_x'); each must match exactly one."""
    if not patterns:
        return list(range(len(channels)))
    out = []
    for p in patterns:
        found = [i for i, c in enumerate(channels) if fnmatch.fnmatchcase(c, p)]
        if len(found) != 1:
            raise manifest_lib.ManifestError(f"{where}: config channel {p!r} matches {len(found)} of the "
                                             f"recording's channels {list(channels)}; it must match exactly one")
        out.append(found[0])
    return out


def frame_folder_files(folder: str) -> list[str]:
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(video_frames.IMAGE_EXTENSIONS))
    if not names:
        raise manifest_lib.ManifestError(f"{folder}: no .jpg/.png frames")
    return [os.path.join(folder, n) for n in names]


class VideoSource:
    """A recording's video (mp4 or frame folder): its frame count and rate, and JPEG frames at chosen times.

    Both kinds follow one rule: a time takes the nearest frame, and times whose nearest frame would be before the
    first or after the last are outside the video (the builder leaves such windows out)."""

    def __init__(self, r: manifest_lib.Recording, m: manifest_lib.Manifest):
        self.path = r.video
        if os.path.isdir(r.video):
            if r.frames_fps is None:
                raise manifest_lib.ManifestError(f"{m.path}: recordings[{r.index}]: a frame folder needs "
                                                 f"'frames_fps' (manifest-wide or in the recording)")
            self.frames = frame_folder_files(r.video)
            self.fps, self.num_frames = float(r.frames_fps), len(self.frames)
        else:
            self.frames = None
            info = video_frames.video_info(r.video)
            self.fps, self.num_frames = float(info.frame_rate), info.num_frames

    def covers(self, times_s: np.ndarray) -> bool:
        index = np.rint(np.asarray(times_s) * self.fps)
        return bool(index.min(initial=0) >= 0 and index.max(initial=0) < self.num_frames)

    def jpegs(self, times_s: np.ndarray, size_hw, quality: int) -> list[bytes]:
        if self.frames is None:
            return video_frames.jpeg_frames_at(self.path, times_s, size_hw, quality)
        out = []
        for i in np.rint(np.asarray(times_s) * self.fps).astype(int):
            with _blame(self.frames[i]):
                out.append(video_frames.image_jpeg(self.frames[i], size_hw, quality))
        return out


def window_label(labels: np.ndarray, mode: str) -> int:
    """Label of a window from per-sample labels (-1: unlabelled, ignored by the majority)."""
    if mode == "centre":
        return int(labels[len(labels) // 2])
    counts = np.bincount(labels[labels >= 0])
    return int(np.argmax(counts)) if counts.size else -1


class Builder(tfds.core.GeneratorBasedBuilder):
    """Your own IMU (+ video) recordings from a folder with a manifest."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Manifest-described folder of IMU csv/npy with optional video and labels.",
                     "1.1.0": "Per-recording channels/placement/frames_fps, timestamp_column resampling, "
                              "label_column, fold, pad_short; records gain recording, fold, valid_samples; "
                              "metadata describes the records."}
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
        check_config(c)
        features = {"imu": tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding="bytes"),
                    "valid_samples": tfds.features.Scalar(dtype=np.int32),  # imu[valid_samples:] is padding
                    "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                    "channels": tfds.features.Sequence(tfds.features.Text()),
                    "label": tfds.features.Scalar(dtype=np.int32),        # -1: unlabelled
                    "subject": tfds.features.Text(), "recording": tfds.features.Text(),
                    "fold": tfds.features.Text(), "start_s": tfds.features.Scalar(dtype=np.float32),
                    "id": tfds.features.Text()}
        if c.with_video:
            features["video"] = tfds.features.Sequence(tfds.features.Image(shape=(*c.frame_size, 3),
                                                                           encoding_format="jpeg"))
            features["video_fps"] = tfds.features.Scalar(dtype=np.float32)
        return tfds.core.DatasetInfo(builder=self, description=__doc__, metadata=tfds.core.MetadataDict(),
                                     features=tfds.features.FeaturesDict(features),
                                     citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text())

    def _download_and_prepare(self, dl_manager, download_config):
        # Beam when the build names a runner or pipeline options (`tfds build --beam_pipeline_options=...`)
        self._beam = download_config.beam_runner is not None or download_config.beam_options is not None
        super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        c: ImuVideoFolderConfig = self.builder_config
        self._manual_dir_path = dl_manager.manual_dir
        m = self._manifest()
        self._bad_files: list[dict[str, str]] = []
        self._outside_video: dict[str, int] = {}
        self.info.metadata.update(describe(c, m))
        # filled while generating (or from the Beam reports after the pipeline); written with the dataset
        self.info.metadata["bad_files"] = self._bad_files
        self.info.metadata["windows_outside_video"] = self._outside_video
        splits: dict[str, list] = {}
        for r in m.recordings:
            splits.setdefault(r.split, []).append(r)
        if getattr(self, "_beam", False):
            from data_builders.imu_video_folder import beam_generation
            return {name: beam_generation.examples(self, group, m) for name, group in splits.items()}
        return {name: self._generate_examples(group) for name, group in splits.items()}

    def _process_pipeline_result(self, pipeline_result) -> None:
        from data_builders.imu_video_folder import beam_generation
        beam_generation.fold_reports(self)

    def _generate_examples(self, recordings) -> Iterator[tuple[str, dict]]:
        m = self._manifest()
        yielded = 0
        for r in recordings:
            records, report = self.recording_outcome(r, m)
            self.note(report)
            yielded += len(records)
            yield from records
        if not yielded:
            raise self.no_usable_recording(recordings[0].split)

    def recording_outcome(self, r: manifest_lib.Recording, m: manifest_lib.Manifest) -> tuple[list, dict]:
        """The (key, record) pairs of one recording and its report: {"index", "recording", "split", "records",
        "outside_video", "bad_file"} (bad_file: the metadata.json entry of a rejected recording, else None)."""
        c: ImuVideoFolderConfig = self.builder_config
        report = {"index": r.index, "recording": r.name, "split": r.split, "records": 0, "outside_video": 0,
                  "bad_file": None}
        try:
            # a whole recording at a time, so that a rejected one leaves no partial windows behind
            records, outside_video = self._recording_examples(r, m)
        except RECORDING_ERRORS as e:
            if c.bad_file_policy == "raise" and not isinstance(e, ShortRecordingError):
                raise
            bad_file = os.path.relpath(getattr(e, "bad_file", None) or r.imu, os.path.dirname(m.path))
            logging.warning("imu_video_folder: rejecting recording %r (%s): %s", r.name, bad_file, e)
            report["bad_file"] = {"file": bad_file, "recording": r.name, "split": r.split, "error": str(e)}
            return [], report
        if outside_video:
            logging.warning("imu_video_folder: %s: %d window(s) left out: their frames fall outside the video",
                            r.name, outside_video)
        report.update(records=len(records), outside_video=outside_video)
        return records, report

    def note(self, report: dict) -> None:
        """Adds one recording's report to the metadata."""
        if report["bad_file"] is not None:
            self._bad_files.append(report["bad_file"])
        if report["outside_video"]:
            self._outside_video[report["recording"]] = report["outside_video"]

    def no_usable_recording(self, split: str) -> manifest_lib.ManifestError:
        rejected = [b for b in self._bad_files if b["split"] == split]
        return manifest_lib.ManifestError(
            f"{self._manifest().path}: split {split!r} has no usable recording; rejected: "
            + "; ".join(f"{b['file']}: {b['error']}" for b in rejected))

    def _windows(self, r: manifest_lib.Recording, m: manifest_lib.Manifest):
        """(segment, start, valid samples) of every window, and the window length in samples."""
        c: ImuVideoFolderConfig = self.builder_config
        with _blame(r.imu):
            if not os.path.lexists(r.imu):
                raise manifest_lib.ManifestError(f"{m.path}: recording {r.name!r}: imu file {r.imu} does not exist")
            segments = recording_lib.read_segments(r, m)
        window = int(round(c.window_s * m.rate_hz)) if c.window_s else 0
        stride = max(1, int(round(c.stride_s * m.rate_hz)))
        windows = []
        for seg in segments:
            n = len(seg.imu)
            if not window:
                windows.append((seg, 0, n))
            elif n >= window:
                windows += [(seg, int(s), window) for s in timeseries.window_starts(n, window, stride)]
            elif c.pad_short:
                windows.append((seg, 0, n))
        if not windows:
            longest = max(len(s.imu) for s in segments)
            raise ShortRecordingError(
                f"{r.imu}: {longest} samples ({longest / m.rate_hz:.2f} s"
                + (f", the longest of {len(segments)} segments split at gaps over {r.max_gap_s:g} s" if
                   len(segments) > 1 else "")
                + f"), shorter than one window of {window} samples ({window / m.rate_hz:.2f} s at {m.rate_hz:g} Hz);"
                f" build with pad_short=True to keep it")
        return windows, window

    def _recording_examples(self, r: manifest_lib.Recording, m: manifest_lib.Manifest):
        """Every (key, record) of one recording, and the number of windows left out because their frames fall
        outside the video; errors carry the file at fault as `bad_file`."""
        c: ImuVideoFolderConfig = self.builder_config
        windows, window = self._windows(r, m)
        with _blame(r.imu):
            columns = select_channels(r.channels, c.channels, f"{m.path}: recordings[{r.index}] ({r.name})")
        channels = [r.channels[i] for i in columns]
        video = None
        if c.with_video:
            with _blame(m.path):
                if r.video is None:
                    raise manifest_lib.ManifestError(f"{m.path}: recording {r.name!r} has no video; build the "
                                                     f"'whole' config or set with_video=False")
            with _blame(r.video):
                if not os.path.lexists(r.video):
                    raise manifest_lib.ManifestError(f"{m.path}: recording {r.name!r}: video {r.video} does not "
                                                     f"exist")
                video = VideoSource(r, m)
        recording_label = m.classes.index(r.label) if r.label is not None else -1
        out, outside_video = [], 0
        for seg, start, valid in windows:
            length = max(window, valid)
            imu = np.zeros((length, len(columns)), np.float32)
            imu[:valid] = seg.imu[start:start + valid, columns]
            start_s = seg.start_s + start / m.rate_hz
            label = recording_label if seg.labels is None else window_label(seg.labels[start:start + valid],
                                                                            c.window_label)
            key = f"{r.split}_{r.name}_{len(out):04d}"
            record = {"imu": imu, "valid_samples": np.int32(valid), "imu_rate_hz": np.float32(m.rate_hz),
                      "channels": channels, "label": np.int32(label), "subject": r.subject, "recording": r.name,
                      "fold": r.fold, "start_s": np.float32(start_s), "id": key}
            if video is not None:
                # frames cover the real samples: a padded window repeats the last real sample's frame
                last = (valid - 1) / m.rate_hz if valid < length else np.inf
                offsets = np.minimum(np.arange(round(length / m.rate_hz * c.video_fps)) / c.video_fps, last)
                times = r.video_offset_s + start_s + offsets
                if not video.covers(times):
                    outside_video += 1
                    continue
                with _blame(r.video):
                    record["video"] = video.jpegs(times, c.frame_size, c.jpeg_quality)
                record["video_fps"] = np.float32(c.video_fps)
            out.append((key, record))
        if not out:  # every window was outside the video
            with _blame(r.video):
                raise manifest_lib.ManifestError(
                    f"{r.video}: {video.num_frames} frames at {video.fps:g} fps cover none of the {len(windows)} "
                    f"windows of {r.name!r} (video_offset_s {r.video_offset_s:g})")
        return out, outside_video


def describe(c: ImuVideoFolderConfig, m: manifest_lib.Manifest) -> dict:
    """What a consumer of the built dataset needs to know, stored in its metadata (metadata.json)."""
    layouts: dict[tuple[str, ...], list[str]] = {}
    for r in m.recordings:
        try:
            chosen = tuple(r.channels[i] for i in select_channels(r.channels, c.channels, r.name))
        except manifest_lib.ManifestError:
            continue  # this recording is rejected at generation
        layouts.setdefault(chosen, []).append(r.name)
    window = int(round(c.window_s * m.rate_hz))
    return {
        "manifest": os.path.basename(m.path),
        "rate_hz": m.rate_hz,
        "channels": list(next(iter(layouts))) if len(layouts) == 1 else None,  # None: recordings differ
        "channel_layouts": [{"channels": list(k), "recordings": v} for k, v in layouts.items()],
        "num_channels": len(next(iter(layouts))) if len({len(k) for k in layouts}) == 1 else None,
        "class_names": list(m.classes),
        "window": window or None,  # samples per record; None: whole recordings (records differ)
        "window_s": c.window_s, "stride_s": c.stride_s, "pad_short": c.pad_short, "window_label": c.window_label,
        "splits": sorted({r.split for r in m.recordings}),
        "folds": sorted({r.fold for r in m.recordings} - {""}),
        "subjects": sorted({r.subject for r in m.recordings} - {""}),
        "description": m.description,
        # video settings; None without video
        "video_fps": c.video_fps if c.with_video else None,
        "video_frames": (int(round(c.window_s * c.video_fps)) or None) if c.with_video else None,  # per record
        "frame_size": list(c.frame_size) if c.with_video else None,  # [height, width]
        "jpeg_quality": c.jpeg_quality if c.with_video else None,
    }
