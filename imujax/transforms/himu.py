"""HIMU-MAE IMU input: 2 s of Aria left accelerometer -> normalised dB spectrogram image [3, 128, 320].

amir-goudarzi/IMU_testing@9c52aa2 src/features/imu_preprocessing.py `SpectrogramsGenerator`, per window: resample 800 ->
50 Hz (torchaudio sinc/Hann), cut or pad to 100 samples (side chosen by the window start), resample 50 -> 160 Hz (320
samples), torchaudio ``Spectrogram`` 256/24/1 -> power [3, 129, 321], torchvision ``Resize((128, 320))`` (bilinear;
tensors in torchvision 0.17 antialias by default), training-only frequency/time masking on the power, ``AmplitudeToDB``,
per-axis (x - mean) / std.
H is frequency and W is time (transposed relative to Audio-MAE).
"""

from __future__ import annotations

import functools

import numpy as np

from imujax.transforms import imu as imu_tf
from imujax.transforms import resize

# data/EgoExo4D/mean_std/accl_{mean,std}_left.pt (dB, axes x, y, z).
EGOEXO4D_LEFT_MEAN = (-32.96684, -23.85517, -30.42711)
EGOEXO4D_LEFT_STD = (27.27846, 26.88700, 27.16923)
# WEAR split_1 12-channel statistics, applied by position to the builder's channel order (the WEAR csv order:
# right arm, right leg, left leg, left arm; x, y, z each), as upstream applies its .pt statistics.
WEAR_SPLIT1_MEAN = (-36.224, -37.853, -38.987, -36.944, -38.909, -40.279, -34.962, -35.152, -41.230, -34.833,
                    -34.895, -41.239)
WEAR_SPLIT1_STD = (27.310, 27.370, 27.120, 28.324, 28.377, 28.164, 27.891, 27.973, 28.108, 27.863, 27.849, 28.209)


@functools.lru_cache(maxsize=32)
def resize_matrix(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """[out, in] weights of PyTorch's bilinear ``interpolate`` (align_corners=False) along one axis.

    antialias=True follows the separable triangle filter whose support widens by the scale when shrinking
    (``_upsample_bilinear2d_aa``); antialias=False is plain two-tap bilinear with the source index clamped at 0.
    """
    if not antialias:  # the two-tap weights: the plain linear resize of an identity matrix
        weights = resize.linear_resize(np.eye(in_size, dtype=np.float32), out_size, axis=0)
        weights.setflags(write=False)
        return weights
    f = np.float32  # PyTorch's CPU kernels do this index arithmetic in float32; so do we, to match bit for bit
    scale = f(in_size) / f(out_size)
    support = scale if scale >= 1.0 else f(1.0)
    inv = f(1.0) / scale if scale >= 1.0 else f(1.0)
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = scale * (f(i) + f(0.5))
        lo = max(int(center - support + f(0.5)), 0)
        hi = min(int(center + support + f(0.5)), in_size)
        taps = np.arange(lo, hi).astype(f)
        w = np.maximum(f(0.0), f(1.0) - np.abs((taps - center + f(0.5)) * inv)).astype(f)
        if w.sum() > 0:
            weights[i, lo:hi] = w / w.sum()
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


def resize_bilinear(x: np.ndarray, size: tuple[int, int], antialias: bool = True) -> np.ndarray:
    """Resize the last two axes of [..., H, W] to ``size`` (separable bilinear, PyTorch conventions)."""
    x = np.asarray(x, np.float32)
    rows = resize_matrix(x.shape[-2], size[0], antialias)
    cols = resize_matrix(x.shape[-1], size[1], antialias)
    # Two 3-index contractions in numpy's own loops: a 4-index einsum is O(H*W*out^2), and BLAS matmuls this small
    # crawl once many grain workers oversubscribe BLAS threads.
    x = np.einsum("oh,...hw->...ow", rows, x)
    return np.einsum("...ow,pw->...op", x, cols).astype(np.float32)


def cut_and_pad(x: np.ndarray, length: int, side: str) -> np.ndarray:
    """[..., T] -> exactly ``length`` samples. side 'left': zero-pad on the left or keep the first samples;
    'right': zero-pad on the right or keep the last samples (upstream ``cut_and_pad_lr``)."""
    if side not in ("left", "right"):
        raise ValueError(f"cut_and_pad: side must be 'left' or 'right', got {side!r}")
    n = x.shape[-1]
    if n >= length:
        return x[..., :length] if side == "left" else x[..., n - length:]
    pad = [(0, 0)] * (x.ndim - 1) + [((length - n, 0) if side == "left" else (0, length - n))]
    return np.pad(x, pad)


def spec_augment_power(power: np.ndarray, rng: np.random.Generator, freq_mask: int, time_mask: int) -> np.ndarray:
    """torchaudio FrequencyMasking then TimeMasking on [C, F, T], one mask shared by all channels, value 0."""
    out = power.copy()
    for axis, param in ((-2, freq_mask), (-1, time_mask)):
        if param <= 0:
            continue
        value = rng.random() * param
        start = rng.random() * (out.shape[axis] - value)
        lo, hi = int(start), int(start) + int(value)
        index = [slice(None)] * out.ndim
        index[axis] = slice(lo, hi)
        out[tuple(index)] = 0.0
    return out


def himu_spectrogram(accel: np.ndarray, *, orig_rate: int = 800, down_rate: int = 50, window_s: float = 2.0,
                     up_rate: int = 160, side: str = "right", n_fft: int = 256, win_length: int = 24,
                     hop_length: int = 1, size: tuple[int, int] = (128, 320), antialias: bool = True,
                     mean=EGOEXO4D_LEFT_MEAN, std=EGOEXO4D_LEFT_STD, rng: np.random.Generator | None = None,
                     freq_mask: int = 0, time_mask: int = 0) -> np.ndarray:
    """accel [T, C] raw samples of one window -> float32 [C, size[0] (freq), size[1] (time)].

    Masking (``freq_mask`` / ``time_mask`` > 0) needs ``rng`` and runs on the power before dB (masked cells -> -100 dB).
    """
    accel = np.asarray(accel, np.float32)
    if accel.ndim != 2 or accel.shape[0] < 1:
        raise ValueError(f"himu_spectrogram: accel must be [T, C] with T >= 1, got shape {accel.shape}")
    channels = accel.shape[1]
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(f"himu_spectrogram: {channels} channels but mean/std have shapes {mean.shape}/{std.shape}")
    x = imu_tf.sinc_resample(accel.T, orig_rate, down_rate)
    x = cut_and_pad(x, int(round(down_rate * window_s)), side)
    x = imu_tf.sinc_resample(x, down_rate, up_rate)
    power = imu_tf.power_spectrogram(x, n_fft=n_fft, win_length=win_length, hop_length=hop_length)
    power = resize_bilinear(power, size, antialias)
    if freq_mask or time_mask:
        if rng is None:
            raise ValueError("himu_spectrogram: spectrogram masking needs an rng")
        power = spec_augment_power(power, rng, freq_mask, time_mask)
    db = imu_tf.amplitude_to_db(power)
    return ((db - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
