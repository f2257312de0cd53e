"""PRIMUS IMU augmentations as the released code applies them (numpy, explicit RNG), on [B, C, T] batches.

Facts: Nokia-Bell-Labs/pretrained-imu-encoders@562e142 lib/imu_transforms.py, lib/train_modules.py. `pretraining.py`
never passes `--transform_list`, so the effective augmentation is the module default: scaling, then time-segment
permutation (the README's "2 4" only names the run). The functions were written for [B, T, C] data and are applied to
[B, C, T]; the quirks that follow are kept:

* scaling draws the factor with shape [B, 1, T]: per-time-step multiplicative noise shared across channels;
* the segment cut points of the whole batch are drawn in one call *without replacement*, so no two cut points in a
  batch coincide (and the batch needs B * num_segments <= T);
* rotation multiplies row vectors by the matrix (x @ R), the same matrix for acc (0-2) and gyro (3-5).

The augmented view is computed in float64 and cast back to float32, as upstream.
"""

from __future__ import annotations

import numpy as np


def _check_batch(x: np.ndarray, name: str) -> None:
    if x.ndim != 3:
        raise ValueError(f"{name}: expected an IMU batch [B, C, T], got shape {x.shape}")


def scaling(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.25) -> np.ndarray:
    """x * N(1, sigma) with the factor drawn per sample and time step, shared across channels."""
    _check_batch(x, "scaling")
    return x * rng.normal(1.0, sigma, size=(x.shape[0], 1, x.shape[2]))


def time_segment_permutation(x: np.ndarray, rng: np.random.Generator, num_segments: int = 4) -> np.ndarray:
    """Cut the time axis at `num_segments` sorted points per sample (distinct over the batch), shuffle the pieces."""
    _check_batch(x, "time_segment_permutation")
    batch, _, length = x.shape
    if batch * num_segments > length:
        raise ValueError(f"time_segment_permutation: cut points are drawn without replacement over the whole batch, "
                         f"so B * num_segments ({batch} * {num_segments}) must be <= T ({length})")
    cuts = np.sort(rng.choice(length, size=(batch, num_segments), replace=False), axis=1)
    out = np.empty(x.shape, np.float64)
    for i in range(batch):
        pieces = np.split(x[i], cuts[i], axis=-1)  # a cut at 0 yields an empty first piece
        order = rng.permutation(len(pieces))
        out[i] = np.concatenate([pieces[j] for j in order], axis=-1)
    return out


def gaussian_noise(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.1) -> np.ndarray:
    """x + N(0, sigma) per element (defined upstream, unused by default)."""
    return x + rng.normal(0.0, sigma, size=x.shape)


def negate(x: np.ndarray) -> np.ndarray:
    """-x (defined upstream, unused by default)."""
    return -x


def time_flip(x: np.ndarray) -> np.ndarray:
    """Reverse the last (time) axis (defined upstream, unused by default)."""
    return x[..., ::-1]


def axis_angle_matrices(axes: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """[B, 3, 3] rotation matrices (Rodrigues) for unnormalised axes [B, 3] and angles [B]."""
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    x, y, z = axes.T
    c, s = np.cos(angles), np.sin(angles)
    one_c = 1.0 - c
    rows = [
        [x * x * one_c + c, x * y * one_c - z * s, x * z * one_c + y * s],
        [y * x * one_c + z * s, y * y * one_c + c, y * z * one_c - x * s],
        [z * x * one_c - y * s, z * y * one_c + x * s, z * z * one_c + c],
    ]
    return np.moveaxis(np.array(rows), -1, 0)


def rotation(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random 3-D rotation (axis ~ U(-1,1)^3, angle ~ U(-pi, pi)), the same for acc and gyro (unused by default)."""
    _check_batch(x, "rotation")
    if x.shape[1] != 6:
        raise ValueError(f"rotation: expected 6 channels (acc xyz, gyro xyz), got {x.shape[1]}")
    axes = rng.uniform(-1.0, 1.0, size=(x.shape[0], 3))
    angles = rng.uniform(-np.pi, np.pi, size=(x.shape[0],))
    matrices = axis_angle_matrices(axes, angles)
    time_major = np.swapaxes(x, 1, 2)
    rotated = np.concatenate([time_major[..., :3] @ matrices, time_major[..., 3:] @ matrices], axis=-1)
    return np.swapaxes(rotated, 1, 2)


def primus_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The augmented PRIMUS view: scaling then time-segment permutation, in float64, returned as float32."""
    _check_batch(x, "primus_augment")
    view = scaling(np.asarray(x, np.float64), rng)
    return time_segment_permutation(view, rng).astype(np.float32)
