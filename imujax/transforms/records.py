"""Access to fields of decoded dataset records (the project's record schema), shared by every system."""

from __future__ import annotations

import re

import numpy as np


def channel_names(record: dict) -> list[str]:
    return [c.decode() if isinstance(c, bytes) else str(c) for c in record["channels"]]


def select_channels(record: dict, wanted: list[str] | tuple[str, ...]) -> np.ndarray:
    """record['imu'] [T, C] -> [T, len(wanted)] in the requested channel order, by name."""
    names = channel_names(record)
    index = {n: i for i, n in enumerate(names)}
    missing = [w for w in wanted if w not in index]
    if missing:
        raise KeyError(f"record {record.get('id', '?')!r}: channels {missing} not found; the record has {names}")
    return np.asarray(record["imu"], np.float32)[:, [index[w] for w in wanted]]


def frames(record: dict) -> np.ndarray:
    """record['video'] (a list of decoded HxWx3 frames, or an array) -> uint8 [F, H, W, 3]."""
    video = record.get("video")
    if video is None or len(video) == 0:
        raise KeyError(f"record {record.get('id', '?')!r} has no video frames")
    return np.stack(video) if isinstance(video, (list, tuple)) else np.asarray(video)


_WINDOW_SUFFIX = re.compile(rb"_w?\d+$")


def as_bytes(value) -> bytes:
    """A text-like field (bytes, str, a numpy scalar or a number) as bytes."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    return value if isinstance(value, bytes) else str(value).encode()


def recording_id(record: dict) -> bytes:
    """The recording a window came from: the record's ``recording`` field, else its id without the trailing window
    number (imu_video_folder ``<split>_<recording>_0003``, sp_sw_har ``s01_02_w004``)."""
    if "recording" in record:
        return as_bytes(record["recording"])
    return _WINDOW_SUFFIX.sub(b"", as_bytes(record.get("id", b"?")))
