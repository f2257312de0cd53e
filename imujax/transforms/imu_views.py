"""Random views of one IMU window for contrastive pretraining on real recordings (SimCLR-style, as PRIMUS/IMU2CLIP
augment IMU): rotation, per-channel scaling, jitter, time warp and sensor dropout, on float32 [C, T] arrays whose
channels are (acc xyz, gyro xyz) triads.

Levels are kept on purpose: the input is in physical units scaled by a fixed factor (acc in g), never z-scored per
window, so gravity direction and posture stay visible (the per-patch z-scoring of TSFM removes them, see
benchmarks/HISTORY.md "real data").
"""

from __future__ import annotations

import numpy as np

from imujax.transforms import augment_imu

STANDARD_GRAVITY = 9.80665


def scale_units(x: np.ndarray) -> np.ndarray:
    """[C, T] with triads (acc m/s², gyro rad/s, ...): acc triads to g, the rest unchanged (fixed, level-keeping)."""
    out = np.array(x, np.float32, copy=True)
    out[0::6] /= STANDARD_GRAVITY
    out[1::6] /= STANDARD_GRAVITY
    out[2::6] /= STANDARD_GRAVITY
    return out


def random_rotation(rng: np.random.Generator, max_degrees: float = 180.0) -> np.ndarray:
    """A 3x3 rotation about a random axis by an angle uniform in [-max_degrees, max_degrees]. Small angles keep
    the gravity direction, i.e. posture, recognisable; 180 makes the views blind to how the sensor is worn."""
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=(1,)))
    return augment_imu.axis_angle_matrices(rng.normal(size=(1, 3)), angle)[0]


def rotate(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The same rotation applied to every xyz triad of [C, T] (C a multiple of 3): a sensor worn turned."""
    if x.shape[0] % 3:
        raise ValueError(f"rotate: expected xyz triads, got {x.shape[0]} channels")
    triads = x.reshape(-1, 3, x.shape[1])
    return np.einsum("ij,kjt->kit", matrix, triads).reshape(x.shape)


def time_warp(x: np.ndarray, rng: np.random.Generator, max_stretch: float = 1.25) -> np.ndarray:
    """Resample by a random factor in [1/max_stretch, max_stretch] (linear), then a random crop / wrap to T."""
    length = x.shape[1]
    factor = float(np.exp(rng.uniform(-np.log(max_stretch), np.log(max_stretch))))
    count = max(2, int(round(length * factor)))
    grid = np.linspace(0.0, length - 1.0, count)
    warped = np.stack([np.interp(grid, np.arange(length), row) for row in x])
    if count >= length:
        start = int(rng.integers(0, count - length + 1))
        return warped[:, start:start + length]
    return np.pad(warped, ((0, 0), (0, length - count)), mode="wrap")


def random_view(x: np.ndarray, rng: np.random.Generator, *, max_rotation_degrees: float = 180.0,
                scale_sigma: float = 0.1, jitter_sigma: float = 0.05, max_stretch: float = 1.25, sensor_dropout: float = 0.1) -> np.ndarray:
    """One augmented view of a unit-scaled [C, T] window; each sensor triad is zeroed with `sensor_dropout`."""
    view = np.asarray(x, np.float64)
    if max_rotation_degrees > 0:
        view = rotate(view, random_rotation(rng, max_rotation_degrees))
    if max_stretch > 1.0:
        view = time_warp(view, rng, max_stretch)
    view = view * rng.normal(1.0, scale_sigma, size=(view.shape[0], 1))
    view = view + rng.normal(0.0, jitter_sigma, size=view.shape)
    if sensor_dropout > 0:
        keep = rng.random(view.shape[0] // 3) >= sensor_dropout
        if not keep.any():
            keep[rng.integers(len(keep))] = True
        view = view * np.repeat(keep, 3)[:, None]
    return view.astype(np.float32)
