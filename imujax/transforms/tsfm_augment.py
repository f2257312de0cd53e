"""TSFM augmentations and masks (alxdofficial/tsfm@308eea1 datasets/imu_pretraining_dataset/augmentations.py,
training_scripts/human_activity_recognition/pretrain.py), numpy with an explicit ``np.random.Generator``.

Signals are [T, C] with channel names ``<location>/<sensor>_<axis>`` (the imujax scheme, e.g. ``left_arm/acc_x``).
SO(3) rotation draws one rotation per body location and applies it to every xyz triad there (acc, gyro, mag), so
the physical relation between a location's sensors survives. Masks: Stage-1 random / span / channel-dropout masking.
"""

from __future__ import annotations

import collections
import re

import numpy as np
from scipy import interpolate

_AXIS = re.compile(r"^(?P<stem>.*?)[_]?(?P<axis>[xyz])$")


def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a [T, C] signal, got shape {x.shape}")
    return x


# -- rotation ----------------------------------------------------------------------------------------------------------
def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform rotation: QR of a Gaussian 3x3, columns sign-corrected by diag(R), reflected if det is -1."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))[None, :]
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def location_of(name: str) -> str:
    """``left_arm/acc_x`` -> ``left_arm``; names without a ``/`` belong to one default location ``""``."""
    return name.rsplit("/", 1)[0] if "/" in name else ""


def triads(channel_names: list[str] | tuple[str, ...]) -> dict[str, list[tuple[int, int, int]]]:
    """{location: [(ix, iy, iz) per sensor]} for every sensor whose x, y and z channels are all present."""
    groups: dict[tuple[str, str], dict[str, int]] = collections.defaultdict(dict)
    for i, name in enumerate(channel_names):
        m = _AXIS.match(name)
        if m:
            groups[(location_of(name), m.group("stem"))][m.group("axis")] = i
    out: dict[str, list[tuple[int, int, int]]] = collections.defaultdict(list)
    for (loc, _), axes in sorted(groups.items()):
        if len(axes) == 3:
            out[loc].append((axes["x"], axes["y"], axes["z"]))
    return dict(out)


def rotate_triads(x: np.ndarray, channel_names, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rotate every xyz triad; one rotation per location. Returns (rotated copy, {location: R})."""
    x = _check(x)
    if x.shape[1] != len(channel_names):
        raise ValueError(f"signal has {x.shape[1]} channels but {len(channel_names)} channel names were given")
    out = np.array(x, copy=True)
    rotations = {}
    for loc, sensor_triads in triads(channel_names).items():
        rot = random_rotation(rng)
        rotations[loc] = rot
        for idx in sensor_triads:
            out[:, list(idx)] = x[:, list(idx)] @ rot.T.astype(x.dtype)
    return out, rotations


# -- signal augmentations ----------------------------------------------------------------------------------------------
def jitter(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.05) -> np.ndarray:
    x = _check(x)
    return (x + rng.normal(0.0, sigma, size=x.shape)).astype(x.dtype)


def scaling(x: np.ndarray, rng: np.random.Generator, low: float = 0.9, high: float = 1.1) -> np.ndarray:
    """Per-channel factor U(low, high)."""
    x = _check(x)
    return (x * rng.uniform(low, high, size=(1, x.shape[1]))).astype(x.dtype)


def time_shift(x: np.ndarray, rng: np.random.Generator, max_fraction: float = 0.05) -> np.ndarray:
    """Shift by up to max_fraction * T steps either way; vacated steps take the channel mean."""
    x = _check(x)
    limit = int(max_fraction * x.shape[0])
    shift = int(rng.integers(-limit, limit + 1)) if limit else 0
    out = np.empty_like(x)
    out[:] = x.mean(axis=0, keepdims=True)
    if shift > 0:
        out[shift:] = x[:-shift]
    elif shift < 0:
        out[:shift] = x[-shift:]
    else:
        out[:] = x
    return out


def _smooth_curve(rng: np.random.Generator, length: int, sigma: float, knots: int) -> np.ndarray:
    """A cubic spline through knots ~ N(1, sigma) spread over the signal (the classic time/magnitude warp curve)."""
    xs = np.linspace(0, length - 1, knots + 2)
    return interpolate.CubicSpline(xs, rng.normal(1.0, sigma, size=knots + 2))(np.arange(length))


def magnitude_warp(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.2, knots: int = 4) -> np.ndarray:
    """Multiply each channel by its own smooth random curve around 1."""
    x = _check(x)
    curves = np.stack([_smooth_curve(rng, x.shape[0], sigma, knots) for _ in range(x.shape[1])], axis=1)
    return (x * curves).astype(x.dtype)


def time_warp(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.2, knots: int = 4) -> np.ndarray:
    """Resample along a smooth monotone time map that keeps both end points (same map for every channel)."""
    x = _check(x)
    t = x.shape[0]
    speed = np.maximum(_smooth_curve(rng, t, sigma, knots), 1e-3)
    warped = np.concatenate([[0.0], np.cumsum(speed[:-1])])
    warped = warped * (t - 1) / warped[-1]
    grid = np.arange(t, dtype=np.float64)
    return np.stack([np.interp(grid, warped, x[:, c]) for c in range(x.shape[1])], axis=1).astype(x.dtype)


def resample(x: np.ndarray, rng: np.random.Generator, low: float = 0.8, high: float = 1.2) -> np.ndarray:
    """Play the signal at a random speed factor in [low, high] (linear interpolation), then crop or edge-pad to T."""
    x = _check(x)
    t = x.shape[0]
    factor = rng.uniform(low, high)
    n = max(int(round(t / factor)), 2)
    src = np.linspace(0, t - 1, n)
    out = np.stack([np.interp(src, np.arange(t), x[:, c]) for c in range(x.shape[1])], axis=1)
    if n >= t:
        return out[:t].astype(x.dtype)
    return np.concatenate([out, np.repeat(out[-1:], t - n, axis=0)]).astype(x.dtype)


def channel_shuffle(x: np.ndarray, channel_names, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Permute the channel order (names follow), so the model cannot rely on a fixed channel position."""
    x = _check(x)
    perm = rng.permutation(x.shape[1])
    return x[:, perm], [channel_names[i] for i in perm]


def weak_view(series: np.ndarray, rng: np.random.Generator, p: float = 0.8, sigma: float = 0.05,
              max_shift: float = 0.05) -> np.ndarray:
    """Stage-1 second view of a flattened (P*64, C) series: jitter, per-channel scale, time shift, each with prob p."""
    out = _check(series)
    if rng.random() < p:
        out = jitter(out, rng, sigma)
    if rng.random() < p:
        out = scaling(out, rng, 0.9, 1.1)
    if rng.random() < p:
        out = time_shift(out, rng, max_shift)
    return out


# -- masks -------------------------------------------------------------------------------------------------------------
def random_patch_mask(num_patches: int, num_valid: int, rng: np.random.Generator, ratio: float = 0.3) -> np.ndarray:
    mask = np.zeros(num_patches, bool)
    mask[:num_valid] = rng.random(num_valid) < ratio
    return mask


def span_mask(num_patches: int, num_valid: int, rng: np.random.Generator, ratio: float = 0.3, min_span: int = 2,
              max_span: int = 4, max_attempts: int = 100) -> np.ndarray:
    """Mask spans of min_span..max_span contiguous valid patches until >= int(ratio * valid) (<= max_attempts)."""
    mask = np.zeros(num_patches, bool)
    target = int(ratio * num_valid)
    for _ in range(max_attempts):
        if mask.sum() >= target or num_valid == 0:
            break
        span = int(rng.integers(min_span, max_span + 1))
        start = int(rng.integers(0, max(num_valid - span, 0) + 1))
        mask[start:min(start + span, num_valid)] = True
    return mask


def channel_dropout(channel_valid: np.ndarray, rng: np.random.Generator, ratio: float = 0.3) -> np.ndarray:
    """Drop max(1, int(ratio * valid)) valid channels, always keeping at least one. -> bool [C] (True = dropped)."""
    valid = np.flatnonzero(channel_valid)
    drop = np.zeros(len(channel_valid), bool)
    count = min(max(1, int(ratio * len(valid))), len(valid) - 1)
    if count > 0:
        drop[rng.choice(valid, size=count, replace=False)] = True
    return drop


def structured_mask(num_patches: int, num_valid: int, channel_valid: np.ndarray, rng: np.random.Generator,
                    ratio: float = 0.3, strategy_probs: tuple[float, float, float] = (0.4, 0.4, 0.2)
                    ) -> tuple[np.ndarray, np.ndarray, str]:
    """Stage-1 masking: random (U < ratio) / span / channel dropout + random 0.15. -> (mae_mask, channel_drop, kind).

    Upstream draws the strategy once per batch; here it is drawn per record (records are preprocessed one by one).
    """
    kind = ("random", "span", "channel")[int(rng.choice(3, p=np.asarray(strategy_probs)))]
    drop = np.zeros(len(channel_valid), bool)
    if kind == "random":
        mask = random_patch_mask(num_patches, num_valid, rng, ratio)
    elif kind == "span":
        mask = span_mask(num_patches, num_valid, rng, ratio)
    else:
        drop = channel_dropout(channel_valid, rng, ratio)
        mask = random_patch_mask(num_patches, num_valid, rng, 0.15)
    return mask, drop, kind
