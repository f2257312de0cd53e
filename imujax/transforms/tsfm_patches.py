"""TSFM patch preprocessing (alxdofficial/tsfm@308eea1 model/preprocessing.py), numpy.

A recording [T, C] at its own rate becomes patches [P, 64, C]: unfold into windows of int(rate * patch_seconds)
samples, resample each window to 64 steps with half-pixel linear interpolation (PyTorch ``F.interpolate(mode='linear',
align_corners=False)``, no antialiasing), then z-score every (patch, channel) over its 64 steps with the population
std clamped to >= 1e-8. At most 48 patches are kept.
"""

from __future__ import annotations

import numpy as np

from imujax.transforms import resize

TARGET_PATCH_SIZE = 64
MAX_PATCHES_PER_SAMPLE = 48
ZSCORE_STD_FLOOR = 1e-8


def unfold_patches(x: np.ndarray, patch_len: int, stride: int) -> np.ndarray:
    """[T, C] -> [P, patch_len, C] non-overlapping (stride == patch_len) or strided windows; remainder dropped."""
    t = x.shape[0]
    if patch_len < 1 or stride < 1:
        raise ValueError(f"patch length {patch_len} and stride {stride} must be >= 1 sample")
    if patch_len > t:
        raise ValueError(f"patch of {patch_len} samples is longer than the recording ({t} samples)")
    count = (t - patch_len) // stride + 1
    index = np.arange(count)[:, None] * stride + np.arange(patch_len)[None, :]
    return x[index]


def zscore_patches(patches: np.ndarray, floor: float = ZSCORE_STD_FLOOR) -> np.ndarray:
    """Per (patch, channel) z-score over the time axis (-2) with population std clamped below at ``floor``."""
    mean = patches.mean(axis=-2, keepdims=True)
    std = np.sqrt(np.square(patches - mean).mean(axis=-2, keepdims=True))
    return ((patches - mean) / np.maximum(std, floor)).astype(np.float32)


def preprocess_recording(imu: np.ndarray, sampling_rate: float, patch_seconds: float, stride_seconds: float | None = None,
                         target: int = TARGET_PATCH_SIZE, max_patches: int = MAX_PATCHES_PER_SAMPLE) -> np.ndarray:
    """One recording [T, C] (valid steps only) -> normalised patches [P, target, C] float32, P <= max_patches."""
    imu = np.asarray(imu, np.float32)
    if imu.ndim != 2:
        raise ValueError(f"imu must be [T, C], got shape {imu.shape}")
    patch_len = int(sampling_rate * patch_seconds)
    stride = int(sampling_rate * (stride_seconds if stride_seconds is not None else patch_seconds))
    patches = unfold_patches(imu, patch_len, stride)[:max_patches]
    return zscore_patches(resize.linear_resize(patches, target, axis=-2))


def pad_batch(patch_list: list[np.ndarray], num_patches: int | None = None, num_channels: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """List of [P_i, 64, C_i] -> zero-padded [B, P, 64, C] and patch_mask [B, P] (True = real patch)."""
    p = num_patches or max(x.shape[0] for x in patch_list)
    c = num_channels or max(x.shape[2] for x in patch_list)
    out = np.zeros((len(patch_list), p, patch_list[0].shape[1], c), np.float32)
    mask = np.zeros((len(patch_list), p), bool)
    for i, x in enumerate(patch_list):
        n = min(x.shape[0], p)
        out[i, :n, :, :x.shape[2]] = x[:n]
        mask[i, :n] = True
    return out, mask


def preprocess_raw_batch(imu: np.ndarray, attention_mask: np.ndarray, sampling_rate: np.ndarray,
                         patch_seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upstream raw-input path: imu [B, T, C] with a valid-prefix attention_mask [B, T] -> (patches, patch_mask).

    Every channel is processed, zero-padded ones included (a constant channel stays exactly 0 after the z-score).
    """
    imu = np.asarray(imu, np.float32)
    if imu.ndim != 3:
        raise ValueError(f"imu must be [B, T, C], got shape {imu.shape}")
    attention_mask = np.asarray(attention_mask).astype(bool)
    if attention_mask.shape != imu.shape[:2]:
        raise ValueError(f"attention_mask shape {attention_mask.shape} does not match imu [B, T] {imu.shape[:2]}")
    rates = np.broadcast_to(np.asarray(sampling_rate, np.float64), imu.shape[:1])
    seconds = np.broadcast_to(np.asarray(patch_seconds, np.float64), imu.shape[:1])
    patches = [preprocess_recording(imu[b, :int(attention_mask[b].sum())], float(rates[b]), float(seconds[b]))
               for b in range(imu.shape[0])]
    return pad_batch(patches)


def pad_record(patches: np.ndarray, max_patches: int, max_channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[P, 64, C] -> fixed-shape [max_patches, 64, max_channels] with patch_mask [max_patches], channel_mask
    [max_channels], so records of different lengths and channel counts stack into one batch."""
    p, t, c = patches.shape
    if c > max_channels:
        raise ValueError(f"record has {c} channels, more than max_channels={max_channels}")
    out = np.zeros((max_patches, t, max_channels), np.float32)
    n = min(p, max_patches)
    out[:n, :, :c] = patches[:n]
    patch_mask = np.arange(max_patches) < n
    channel_mask = np.arange(max_channels) < c
    return out, patch_mask, channel_mask
