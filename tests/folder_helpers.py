"""Fixtures for imu_video_folder tests: a 10 Hz, 3-channel manifest, frames, mp4s and a build helper."""

import json
import os

import av
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from data_builders.imu_video_folder import imu_video_folder_dataset_builder as folder

CHANNELS = ["wrist/acc_x", "wrist/acc_y", "wrist/acc_z"]


def write_frames(folder_path, count, fmt="JPEG"):
    os.makedirs(folder_path, exist_ok=True)
    for i in range(count):
        ext = "jpg" if fmt == "JPEG" else "png"
        image = Image.fromarray(np.full((12, 12, 3), (10 * i) % 250, np.uint8))
        image.save(os.path.join(folder_path, f"{i:04d}.{ext}"), fmt)


def write_mp4(path, seconds, fps=10, size=(16, 16)):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), (8 * i) % 250, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_folder(root, recordings, **extra):
    """A 10 Hz, 3-channel imu_video_folder manifest; `recordings` are manifest entries (imu files written by caller)."""
    os.makedirs(root, exist_ok=True)
    manifest = {"rate_hz": 10, "channels": CHANNELS, "units": {"acc": "m/s2"}, "frames_fps": 10,
                "recordings": recordings, **extra}
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f)


def imu(n, value=1.0):
    return np.full((n, 3), value, np.float32) + np.arange(n, dtype=np.float32)[:, None]


def build_folder(root, data_dir, policy="raise", with_video=True):
    config = folder.ImuVideoFolderConfig(name=f"fixture_{policy}", window_s=1.0, stride_s=1.0, video_fps=2.0,
                                         frame_size=(8, 8), with_video=with_video, bad_file_policy=policy)
    builder = folder.Builder(config=config, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    return builder


def ids(builder, split="train"):
    return sorted(r["id"].decode() for r in builder.as_data_source(split=split))


def stored_report(builder):
    """bad_files as written to metadata.json next to the shards (what a user reads after a build)."""
    with open(os.path.join(builder.data_dir, "metadata.json")) as f:
        return json.load(f)["bad_files"]
