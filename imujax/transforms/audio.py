"""Kaldi-compatible log-mel filterbank (``torchaudio.compliance.kaldi.fbank`` maths) and the Audio-MAE input.

Audio-MAE (facebookresearch/AudioMAE@bd60e29 dataset.py `_wav2fbank`) calls fbank with htk_compat, use_energy False, a
Hanning window, 128 mel bins, dither 0 and a 10 ms shift; everything else at Kaldi's defaults (25 ms frames, preemphasis
0.97, DC removal, 512-point FFT, low 20 Hz, high Nyquist, power spectrum, snip_edges). The log-mel is cut or zero-padded
to ``target_length`` frames and normalised as (x - mean) / (2 std).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974
FLOAT_EPS = float(np.finfo(np.float32).eps)  # torch.finfo(torch.float).eps, Kaldi's log floor


def mel_scale(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq, np.float64) / 700.0)


@functools.lru_cache(maxsize=16)
def kaldi_mel_banks(num_bins: int, padded_window: int, sample_rate: float, low_freq: float,
                    high_freq: float) -> np.ndarray:
    """Triangular mel filters [num_bins, padded_window // 2 + 1] (last FFT bin weight 0), Kaldi's construction."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"kaldi fbank: need 0 <= low_freq ({low_freq}) < high_freq ({high_freq}) <= Nyquist "
                         f"({nyquist})")
    num_fft_bins = padded_window // 2
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = np.arange(num_bins, dtype=np.float64)[:, None]
    left, center, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
    mel = mel_scale(sample_rate / padded_window * np.arange(num_fft_bins))[None, :]
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    banks = np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)
    banks.setflags(write=False)
    return banks


@functools.lru_cache(maxsize=16)
def kaldi_window(kind: str, length: int) -> np.ndarray:
    n = np.arange(length, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * n / (length - 1))  # symmetric
    if kind == "hanning":
        window = hann
    elif kind == "povey":
        window = hann ** 0.85
    elif kind == "hamming":
        window = 0.54 - 0.46 * np.cos(2 * math.pi * n / (length - 1))
    elif kind == "rectangular":
        window = np.ones(length)
    else:
        raise ValueError(f"kaldi fbank: window_type must be hanning, povey, hamming or rectangular, got {kind!r}")
    window = window.astype(np.float32)
    window.setflags(write=False)
    return window


def kaldi_fbank(waveform: np.ndarray, sample_rate: float = 16000.0, *, num_mel_bins: int = 128,
                frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0, window_type: str = "povey",
                dither: float = 0.0, preemphasis: float = 0.97, remove_dc_offset: bool = True,
                low_freq: float = 20.0, high_freq: float = 0.0, use_energy: bool = False, energy_floor: float = 1.0,
                htk_compat: bool = False, use_log_fbank: bool = True, use_power: bool = True,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Mono waveform [N] (or [1, N]) -> log-mel [frames, num_mel_bins (+1 energy)] float32, snip_edges=True.

    ``dither`` > 0 adds rng-normal noise * dither per sample (needs ``rng``). With ``use_energy`` the log raw energy
    (after DC removal, before preemphasis/window, floored at log(energy_floor)) goes last if ``htk_compat`` else first.
    """
    x = np.asarray(waveform, np.float32)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"kaldi fbank expects a mono waveform [N] or [1, N], got shape {np.shape(waveform)}")
    frame_len = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    if len(x) < frame_len:
        raise ValueError(f"kaldi fbank: waveform of {len(x)} samples is shorter than one frame ({frame_len})")
    padded = 1 << (frame_len - 1).bit_length()  # round_to_power_of_two
    frames = np.lib.stride_tricks.sliding_window_view(x, frame_len)[::shift].astype(np.float32)
    if dither:
        if rng is None:
            raise ValueError("kaldi fbank: dither > 0 needs an rng")
        frames = frames + dither * rng.standard_normal(frames.shape).astype(np.float32)
    if remove_dc_offset:
        frames = frames - frames.mean(axis=1, keepdims=True)
    energy = None
    if use_energy:
        energy = np.log(np.maximum(np.square(frames).sum(axis=1), FLOAT_EPS))
        if energy_floor > 0.0:
            energy = np.maximum(energy, np.float32(math.log(energy_floor)))
    if preemphasis:
        previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
        frames = frames - np.float32(preemphasis) * previous
    frames = frames * kaldi_window(window_type, frame_len)
    spectrum = scipy.fft.rfft(frames, n=padded, axis=1, workers=1)
    power = np.abs(spectrum).astype(np.float32)
    if use_power:
        power = power * power
    mel = power @ kaldi_mel_banks(num_mel_bins, padded, float(sample_rate), float(low_freq), float(high_freq)).T
    if use_log_fbank:
        mel = np.log(np.maximum(mel, FLOAT_EPS))
    if energy is not None:
        mel = np.concatenate([mel, energy[:, None]] if htk_compat else [energy[:, None], mel], axis=1)
    return mel.astype(np.float32)


def fit_frames(fbank: np.ndarray, target_length: int) -> np.ndarray:
    """Zero-pad (in the log-mel domain) or cut along time to exactly ``target_length`` frames."""
    n = fbank.shape[0]
    if n >= target_length:
        return fbank[:target_length]
    return np.pad(fbank, ((0, target_length - n), (0, 0)))


def audio_mae_input(waveform: np.ndarray, sample_rate: int = 16000, *, target_length: int = 1024,
                    num_mel_bins: int = 128, mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD) -> np.ndarray:
    """Waveform -> the eval-mode Audio-MAE input [1, target_length, num_mel_bins] (time on H, mel on W)."""
    x = np.asarray(waveform, np.float32)
    x = x - x.mean()
    fbank = kaldi_fbank(x, sample_rate, num_mel_bins=num_mel_bins, window_type="hanning", dither=0.0,
                        frame_shift_ms=10.0, htk_compat=True, use_energy=False)
    fbank = fit_frames(fbank, target_length)
    return ((fbank - np.float32(mean)) / np.float32(2 * std))[None].astype(np.float32)
