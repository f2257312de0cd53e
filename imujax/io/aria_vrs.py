"""Project Aria ``.vrs`` recordings -> IMU arrays, RGB frames and imujax records (PyPI ``projectaria-tools``).

Streams are resolved by label, never by id: Gen1 has ``1202-1`` = imu-right (1 kHz) and ``1202-2`` = imu-left
(800 Hz), Gen2 swaps them. Timestamps are device-time capture times in ns. ``imu_table`` gives the (N, 7) array that
HIMU-MAE's Ego-Exo4D extraction saves per take ([timestamp_ns, accel xyz m/s^2, gyro xyz rad/s]); ``vrs_record``
turns a whole recording into one record of the project schema (IMU at its nominal rate, RGB frames aligned by time).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np


def _provider(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"VRS file {path} does not exist")
    try:
        from projectaria_tools.core import data_provider
    except ImportError as err:  # optional dependency: only Aria data needs it
        raise ImportError("reading .vrs files needs the PyPI package projectaria-tools "
                          "(pip install projectaria-tools)") from err
    provider = data_provider.create_vrs_data_provider(path)
    if provider is None:
        raise ValueError(f"{path}: projectaria-tools could not open it as a VRS recording")
    return provider


def _stream(provider, path: str, label: str):
    labels = [provider.get_label_from_stream_id(s) for s in provider.get_all_streams()]
    if label not in labels:
        raise KeyError(f"{path}: no stream labelled {label!r}; streams: {sorted(labels)}")
    return provider.get_stream_id_from_label(label)


def stream_labels(path: str) -> dict[str, str]:
    """{label: stream id} of every stream in the recording."""
    provider = _provider(path)
    return {provider.get_label_from_stream_id(s): str(s) for s in provider.get_all_streams()}


@dataclasses.dataclass
class ImuStream:
    label: str
    timestamps_ns: np.ndarray   # int64 [N], device time
    accel: np.ndarray           # float32 [N, 3] m/s^2
    gyro: np.ndarray            # float32 [N, 3] rad/s
    nominal_rate_hz: float

    def table(self) -> np.ndarray:
        """(N, 7) float64 [timestamp_ns, accel xyz, gyro xyz] (HIMU-MAE's ``{left,right}.npy`` layout)."""
        return np.concatenate([self.timestamps_ns[:, None].astype(np.float64), self.accel, self.gyro], axis=1)


def read_imu(path: str, label: str = "imu-left") -> ImuStream:
    provider = _provider(path)
    sid = _stream(provider, path, label)
    n = provider.get_num_data(sid)
    if n == 0:
        raise ValueError(f"{path}: stream {label!r} has no samples")
    ts, acc, gyro = np.empty(n, np.int64), np.empty((n, 3), np.float32), np.empty((n, 3), np.float32)
    for i in range(n):
        sample = provider.get_imu_data_by_index(sid, i)
        ts[i], acc[i], gyro[i] = sample.capture_timestamp_ns, sample.accel_msec2, sample.gyro_radsec
    rate = float(provider.get_imu_configuration(sid).nominal_rate_hz)
    return ImuStream(label, ts, acc, gyro, rate)


def imu_table(path: str, label: str = "imu-left") -> np.ndarray:
    return read_imu(path, label).table()


@dataclasses.dataclass
class RgbStream:
    timestamps_ns: np.ndarray   # int64 [F]
    frames: np.ndarray          # uint8 [F, H, W, 3]
    nominal_rate_hz: float


def read_rgb(path: str, label: str = "camera-rgb", *, upright: bool = False, max_frames: int | None = None,
             size: int | None = None) -> RgbStream:
    """RGB frames (Aria stores them sideways; ``upright`` rotates 90 degrees clockwise), optionally resized to
    ``size`` x ``size`` with Pillow's bilinear filter."""
    from PIL import Image

    provider = _provider(path)
    sid = _stream(provider, path, label)
    n = provider.get_num_data(sid)
    if max_frames is not None:
        n = min(n, max_frames)
    ts, frames = np.empty(n, np.int64), []
    for i in range(n):
        image, record = provider.get_image_data_by_index(sid, i)
        array = image.to_numpy_array()
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        if upright:
            array = np.rot90(array, k=-1)
        if size is not None:
            array = np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize((size, size), Image.BILINEAR))
        ts[i] = record.capture_timestamp_ns
        frames.append(np.ascontiguousarray(array, dtype=np.uint8))
    rate = float(provider.get_image_configuration(sid).nominal_rate_hz)
    return RgbStream(ts, np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8), rate)


def resample_to_rate(timestamps_ns: np.ndarray, values: np.ndarray, rate_hz: float, start_ns: int | None = None,
                     end_ns: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of irregular samples onto a uniform grid [start, end) at ``rate_hz``."""
    start = int(timestamps_ns[0] if start_ns is None else start_ns)
    end = int(timestamps_ns[-1] + 1 if end_ns is None else end_ns)
    step = 1e9 / rate_hz
    grid = start + np.arange(int(np.floor((end - start) / step))) * step
    t = (timestamps_ns - start).astype(np.float64)
    out = np.stack([np.interp(grid - start, t, values[:, c]) for c in range(values.shape[1])], axis=1)
    return grid.astype(np.int64), out.astype(np.float32)


def vrs_record(path: str, *, imu_label: str = "imu-left", rgb_label: str | None = "camera-rgb",
               frame_size: int | None = 224, label: int = -1) -> dict:
    """One record of the project schema from a recording: ``imu`` [T, 6] on a uniform grid at the IMU's nominal rate
    over the RGB span (or the IMU span without RGB), ``channels`` ``<label>/acc_x`` ..., ``video`` uint8 frames
    (upright), ``frame_timestamps_ns``, ``imu_timestamps_ns``, ``id`` and ``label``."""
    imu = read_imu(path, imu_label)
    prefix = imu_label.replace("-", "_")
    names = [f"{prefix}/{kind}_{axis}" for kind in ("acc", "gyro") for axis in "xyz"]
    record = {"channels": names, "imu_rate_hz": np.float32(imu.nominal_rate_hz), "label": np.int64(label),
              "id": os.path.splitext(os.path.basename(path))[0], "subject": ""}
    start, end = None, None
    if rgb_label is not None:
        rgb = read_rgb(path, rgb_label, upright=True, size=frame_size)
        record["video"], record["frame_timestamps_ns"] = rgb.frames, rgb.timestamps_ns
        start = max(int(rgb.timestamps_ns[0]), int(imu.timestamps_ns[0]))
        end = min(int(rgb.timestamps_ns[-1] + 1e9 / rgb.nominal_rate_hz), int(imu.timestamps_ns[-1]) + 1)
    grid, values = resample_to_rate(imu.timestamps_ns, np.concatenate([imu.accel, imu.gyro], 1),
                                    imu.nominal_rate_hz, start, end)
    record["imu"], record["imu_timestamps_ns"] = values, grid
    return record
