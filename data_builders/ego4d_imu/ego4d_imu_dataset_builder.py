"""TFDS builder `ego4d_imu`: Ego4D IMU streams + video cut into IMU2CLIP narration windows
(facebookresearch/imu2clip@6353031 dataset/ego4d/dataloader.py).

Manual dir:
  imu/<video_uid>.csv      Ego4D v1 IMU csv: canonical_timestamp_ms, accl_x, accl_y, accl_z, gyro_x, gyro_y, gyro_z
  video/<video_uid>.mp4    the video (Ego4D `full_scale`, or any re-encode with the same timeline)
  narration.json           Ego4D v1 narrations: {uid: {"narration_pass_1": {"narrations": [{"timestamp_sec",
                           "narration_text", ...}]}, "narration_pass_2": {...}}}
  splits/<split>.json      optional: a list of video uids per split (e.g. IMU2CLIP's training_0.json); without it
                           every video goes to "train"
  bad_windows.json         optional: [[uid, start_s, end_s], ...] windows to skip

IMU: rows with a NaN timestamp dropped, sorted by time, NaN values set to 0; rate = int(1000 / mean step); if not
200 Hz, windowed-sinc resampled (torchaudio defaults) to 200 Hz. Narrations containing "#c" are cleaned as IMU2CLIP
does and each gets the window [t-2.5, t+2.5] (t <= 5: [0, 5]; t + 5 >= duration: [duration - 5, duration]), both
ends floored to whole seconds and kept only when 5 s long; the IMU window is zero-padded or cut to 1000 rows.
Raw units are kept (no normalisation), channels `head/acc_{x,y,z}`, `head/gyro_{x,y,z}`.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import json
import math
import os
import pathlib
import string
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from imujax.io import video_frames
from imujax.transforms import imu as imu_tf

COLUMNS = ("accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z")
CHANNELS = ("head/acc_x", "head/acc_y", "head/acc_z", "head/gyro_x", "head/gyro_y", "head/gyro_z")
TIME_COLUMN = "canonical_timestamp_ms"


class Ego4dFormatError(ValueError):
    """Malformed Ego4D file; the message names the file."""


@dataclasses.dataclass(eq=False)
class Ego4dImuConfig(tfds.core.BuilderConfig):
    rate_hz: int = 200
    window_sec: float = 2.5                # half-width: windows are 2 * window_sec = 5 s
    with_video: bool = True
    video_fps: float = 10.0                # IMU2CLIP preprocessing: 10 fps, centre square crop, 224 x 224
    frame_size: tuple[int, int] = (224, 224)
    jpeg_quality: int = 90

    @property
    def window_rows(self) -> int:
        return int(round(2 * self.window_sec * self.rate_hz))


def read_imu_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(times_s [N] sorted, values [N, 6]) with the IMU2CLIP cleaning rules."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in (TIME_COLUMN,) + COLUMNS if c not in header]
        if missing:
            raise Ego4dFormatError(f"{path}: missing column(s) {missing}; header is {header}")
        idx = [header.index(c) for c in (TIME_COLUMN,) + COLUMNS]
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                rows.append([float(row[i]) if row[i].strip() else math.nan for i in idx])
            except (ValueError, IndexError):
                raise Ego4dFormatError(f"{path}: line {line}: expected numbers in {[header[i] for i in idx]}") from None
    data = np.asarray(rows, np.float64).reshape(-1, 7)
    data = data[np.isfinite(data[:, 0])]
    if len(data) < 2:
        raise Ego4dFormatError(f"{path}: fewer than two rows with a timestamp")
    data = data[np.argsort(data[:, 0], kind="stable")]
    return data[:, 0] / 1000.0, np.nan_to_num(data[:, 1:], nan=0.0)


def to_rate(times_s: np.ndarray, values: np.ndarray, rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
    """Upstream resampling: estimated int rate; sinc resample when it differs; timestamps regenerated."""
    estimated = int(1.0 / np.mean(np.diff(times_s)))
    if estimated != rate_hz:
        values = imu_tf.sinc_resample(values.T, estimated, rate_hz).T
    return times_s[0] + np.arange(len(values)) / rate_hz, values


def clean_narration(text: str) -> str:
    text = text.replace("#C C ", "").replace("#C", "").replace("#unsure", "something").strip()
    return text.strip(string.punctuation).lower()[:128]


def narration_window(t: float, duration: float, half: float) -> tuple[int, int] | None:
    length = 2 * half
    if t <= length:
        start, end = 0.0, length
    elif t + length >= duration:
        start, end = duration - length, duration
    else:
        start, end = t - half, t + half
    start, end = math.floor(start), math.floor(end)
    return (start, end) if end - start == length else None


def narrations_for(entry: dict, uid: str, path: str) -> list[tuple[float, str]]:
    out = []
    for npass in ("narration_pass_1", "narration_pass_2"):
        for k, item in enumerate((entry.get(npass) or {}).get("narrations", [])):
            try:
                t, text = float(item["timestamp_sec"]), str(item["narration_text"])
            except (KeyError, TypeError, ValueError):
                raise Ego4dFormatError(f"{path}: {uid}.{npass}.narrations[{k}] needs 'timestamp_sec' and "
                                       f"'narration_text'") from None
            if "#c" in text.lower():
                out.append((t, clean_narration(text)))
    return out


class Builder(tfds.core.GeneratorBasedBuilder):
    """Ego4D head-IMU (accel + gyro, 200 Hz) + video, 5 s windows around "#C" narrations."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "IMU2CLIP narration windows."}
    BUILDER_CONFIGS = [Ego4dImuConfig(name="default", description="IMU + 50 frames (10 fps) per 5 s window."),
                       Ego4dImuConfig(name="imu_only", description="IMU and narration only.", with_video=False)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Accept the Ego4D licence (https://ego4d-data.org), download with the Ego4D CLI
    (`ego4d --datasets imu full_scale annotations`), and arrange imu/<uid>.csv, video/<uid>.mp4 and
    narration.json (from v1/annotations) in one folder passed as the manual dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        c: Ego4dImuConfig = self.builder_config
        features = {"imu": tfds.features.Tensor(shape=(c.window_rows, 6), dtype=np.float32),
                    "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                    "channels": tfds.features.Sequence(tfds.features.Text()),
                    "text": tfds.features.Text(), "video_uid": tfds.features.Text(),
                    "start_s": tfds.features.Scalar(dtype=np.float32),
                    "narration_time_s": tfds.features.Scalar(dtype=np.float32), "id": tfds.features.Text()}
        if c.with_video:
            features["video"] = tfds.features.Sequence(tfds.features.Image(shape=(*c.frame_size, 3),
                                                                           encoding_format="jpeg"))
            features["video_fps"] = tfds.features.Scalar(dtype=np.float32)
        return tfds.core.DatasetInfo(builder=self, description=__doc__, metadata=tfds.core.MetadataDict(), features=tfds.features.FeaturesDict(features),
                                     citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text(),
                                     homepage="https://ego4d-data.org")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        path = os.path.join(root, "narration.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{root}: narration.json not found. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        with open(path, encoding="utf-8") as f:
            narrations = json.load(f)
        uids = sorted(u for u in narrations if os.path.exists(os.path.join(root, "imu", f"{u}.csv")))
        bad = set()
        bad_path = os.path.join(root, "bad_windows.json")
        if os.path.exists(bad_path):
            bad = {(str(u), int(s), int(e)) for u, s, e in json.load(open(bad_path, encoding="utf-8"))}
        split_dir = os.path.join(root, "splits")
        if os.path.isdir(split_dir):
            groups = {}
            for name in sorted(os.listdir(split_dir)):
                listed = set(json.load(open(os.path.join(split_dir, name), encoding="utf-8")))
                groups[os.path.splitext(name)[0]] = [u for u in uids if u in listed]
        else:
            groups = {"train": uids}
        return {split: self._generate_examples(root, group, narrations, path, bad) for split, group in groups.items()}

    def _generate_examples(self, root, uids, narrations, path, bad) -> Iterator[tuple[str, dict]]:
        c: Ego4dImuConfig = self.builder_config
        for uid in uids:
            times, values = to_rate(*read_imu_csv(os.path.join(root, "imu", f"{uid}.csv")), c.rate_hz)
            video = os.path.join(root, "video", f"{uid}.mp4")
            duration = times[-1]
            if c.with_video:
                duration = min(duration, video_frames.video_info(video).duration_s)
            windows = []
            for k, (t, text) in enumerate(narrations_for(narrations[uid], uid, path)):
                bounds = narration_window(t, duration, c.window_sec)
                if bounds is None or (uid, *bounds) in bad:
                    continue
                lo, hi = bisect.bisect_left(times, bounds[0]), bisect.bisect_left(times, bounds[1])
                if hi - lo < 10:
                    continue
                rows = values[lo:hi][:c.window_rows]
                rows = np.concatenate([rows, np.zeros((c.window_rows - len(rows), 6))])
                windows.append((k, t, text, bounds, rows))
            frame_times = np.arange(int(2 * c.window_sec * c.video_fps)) / c.video_fps
            for k, t, text, (start, _), rows in windows:
                key = f"{uid}_{k:05d}"
                record = {"imu": rows.astype(np.float32), "imu_rate_hz": np.float32(c.rate_hz),
                          "channels": list(CHANNELS), "text": text, "video_uid": uid, "start_s": np.float32(start),
                          "narration_time_s": np.float32(t), "id": key}
                if c.with_video:
                    record["video"] = video_frames.jpeg_frames_at(video, start + frame_times, c.frame_size,
                                                                  c.jpeg_quality)
                    record["video_fps"] = np.float32(c.video_fps)
                yield key, record
