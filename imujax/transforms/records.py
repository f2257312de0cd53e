"""Access to fields of decoded dataset records (the project's record schema), shared by every system."""

from __future__ import annotations

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
