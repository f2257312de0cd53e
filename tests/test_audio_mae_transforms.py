"""Kaldi fbank (Audio-MAE input) and the HIMU-MAE spectrogram pipeline against torch references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imujax.transforms import audio, himu
from imujax.transforms import imu as imu_tf


# -- Kaldi fbank -----------------------------------------------------------------------------------------------------
def torch_kaldi_fbank(wave: np.ndarray, sr: int, bins: int, window: str, use_energy=False, htk_compat=False):
    """Kaldi's recipe frame by frame in torch: DC removal, energy, preemphasis, window, 512-pt |rfft|^2, mel, log."""
    x = torch.from_numpy(wave.astype(np.float64))
    flen, shift, nfft = int(sr * 0.025), int(sr * 0.010), 512
    n = torch.arange(flen, dtype=torch.float64)
    hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / (flen - 1))
    win = hann if window == "hanning" else hann ** 0.85

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(sr / 2)
    delta = (hi - lo) / (bins + 1)
    banks = torch.zeros(bins, nfft // 2 + 1, dtype=torch.float64)
    for b in range(bins):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        for k in range(nfft // 2):
            m = mel(k * sr / nfft)
            if left < m < right:
                banks[b, k] = (m - left) / (center - left) if m <= center else (right - m) / (right - center)
    rows = []
    for start in range(0, len(x) - flen + 1, shift):
        frame = x[start:start + flen].clone()
        frame = frame - frame.mean()
        energy = torch.log(torch.clamp((frame ** 2).sum(), min=1.1920929e-07))
        frame = torch.cat([frame[:1] - 0.97 * frame[:1], frame[1:] - 0.97 * frame[:-1]])
        power = torch.fft.rfft(frame * win, n=nfft).abs() ** 2
        logmel = torch.log(torch.clamp(banks @ power, min=1.1920929e-07))
        if use_energy:
            e = torch.clamp(energy, min=0.0)[None]  # energy_floor 1.0 -> log floor 0
            logmel = torch.cat([logmel, e] if htk_compat else [e, logmel])
        rows.append(logmel)
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("window", ["hanning", "povey"])
def test_kaldi_fbank_matches_torch_formula(window):
    rng = np.random.default_rng(0)
    wave = (0.3 * rng.standard_normal(4000) + 0.5 * np.sin(np.arange(4000) * 0.3)).astype(np.float32)
    got = audio.kaldi_fbank(wave, 16000, num_mel_bins=64, window_type=window)
    want = torch_kaldi_fbank(wave, 16000, 64, window)
    assert got.shape == (1 + (4000 - 400) // 160, 64)
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_kaldi_fbank_energy_column():
    wave = np.random.default_rng(1).standard_normal(2000).astype(np.float32) * 0.01
    for htk in (True, False):
        got = audio.kaldi_fbank(wave, 16000, num_mel_bins=23, use_energy=True, htk_compat=htk)
        want = torch_kaldi_fbank(wave, 16000, 23, "povey", use_energy=True, htk_compat=htk)
        np.testing.assert_allclose(got, want, atol=2e-4)


def test_kaldi_fbank_sine_peaks_at_its_mel_bin():
    sr, f0 = 16000, 1000.0
    wave = np.sin(2 * np.pi * f0 * np.arange(sr) / sr).astype(np.float32)
    fb = audio.kaldi_fbank(wave, sr, num_mel_bins=128, window_type="hanning")
    lo, hi = audio.mel_scale(20.0), audio.mel_scale(8000.0)
    centers = lo + (np.arange(128) + 1) * (hi - lo) / 129
    assert abs(int(fb.mean(0).argmax()) - int(np.argmin(np.abs(centers - audio.mel_scale(f0))))) <= 1


def test_audio_mae_input_shape_and_normalisation():
    wave = np.random.default_rng(2).standard_normal(16000 * 2).astype(np.float32)
    x = audio.audio_mae_input(wave, 16000, target_length=256)
    raw = audio.kaldi_fbank(wave - wave.mean(), 16000, window_type="hanning")
    assert x.shape == (1, 256, 128) and raw.shape[0] == 198
    np.testing.assert_allclose(x[0, :198], (raw + 4.2677393) / (2 * 4.5689974), atol=1e-5)
    np.testing.assert_allclose(x[0, 198:], 4.2677393 / (2 * 4.5689974), atol=1e-6)  # zero-padded log-mel
    with pytest.raises(ValueError, match="shorter than one frame"):
        audio.kaldi_fbank(np.zeros(100, np.float32))


# -- HIMU spectrogram ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("shape,size", [((3, 129, 321), (128, 320)), ((2, 20, 9), (31, 4))])
def test_resize_matches_torch_interpolate(shape, size, antialias):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x)[None], size=size, mode="bilinear", align_corners=False,
                         antialias=antialias)[0].numpy()
    np.testing.assert_allclose(himu.resize_bilinear(x, size, antialias), want, atol=1e-5, rtol=1e-5)


def test_cut_and_pad_sides():
    x = np.arange(1, 6, dtype=np.float32)[None]
    np.testing.assert_array_equal(himu.cut_and_pad(x, 3, "left"), [[1, 2, 3]])
    np.testing.assert_array_equal(himu.cut_and_pad(x, 3, "right"), [[3, 4, 5]])
    np.testing.assert_array_equal(himu.cut_and_pad(x, 7, "left"), [[0, 0, 1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(himu.cut_and_pad(x, 7, "right"), [[1, 2, 3, 4, 5, 0, 0]])


def test_himu_spectrogram_matches_torch_pipeline():
    rng = np.random.default_rng(3)
    t = np.arange(1600) / 800.0
    accel = np.stack([np.sin(2 * np.pi * 3 * t), np.cos(2 * np.pi * 7 * t), 9.8 + 0 * t], 1) + 0.1 * rng.normal(
        size=(1600, 3))
    got = himu.himu_spectrogram(accel.astype(np.float32))
    # Reference: the resampler is imujax's torchaudio port (tested with the IMU transforms); the rest is torch.
    x = imu_tf.sinc_resample(accel.T.astype(np.float32), 800, 50)[:, -100:]
    x = torch.from_numpy(imu_tf.sinc_resample(x, 50, 160)).double()
    assert x.shape == (3, 320)
    window = torch.hann_window(24, periodic=True, dtype=torch.float64)
    spec = torch.stft(x, n_fft=256, hop_length=1, win_length=24, window=window, center=True, pad_mode="reflect",
                      return_complex=True).abs() ** 2
    assert spec.shape == (3, 129, 321)
    spec = F.interpolate(spec[None], size=(128, 320), mode="bilinear", align_corners=False, antialias=True)[0]
    db = 10 * torch.log10(torch.clamp(spec, min=1e-10))
    mean, std = torch.tensor(himu.EGOEXO4D_LEFT_MEAN), torch.tensor(himu.EGOEXO4D_LEFT_STD)
    want = ((db - mean[:, None, None]) / std[:, None, None]).numpy()
    assert got.shape == (3, 128, 320) and got.dtype == np.float32
    # float32 STFT noise swamps the dB of bins ~1e-7 below the DC peak (gravity); compare the resolvable cells.
    power = spec.numpy()
    resolvable = power > 1e-6 * power.max(axis=(1, 2), keepdims=True)
    assert resolvable.mean() > 0.3
    np.testing.assert_allclose(got[resolvable], want[resolvable], atol=2e-4, rtol=1e-4)

def test_himu_masking_hits_power_before_db():
    accel = np.random.default_rng(4).normal(size=(1600, 3)).astype(np.float32)
    out = himu.himu_spectrogram(accel, rng=np.random.default_rng(0), freq_mask=48, time_mask=60,
                                mean=(0, 0, 0), std=(1, 1, 1))
    masked = np.isclose(out, -100.0, atol=1e-3)
    assert masked.any()
    np.testing.assert_array_equal(masked[0], masked[1])  # one mask shared by every axis
    rows, cols = masked[0].all(axis=1), masked[0].all(axis=0)
    assert rows.sum() <= 48 and cols.sum() <= 60 and (rows.any() or cols.any())


def test_himu_bad_input_is_named():
    with pytest.raises(ValueError, match="mean/std"):
        himu.himu_spectrogram(np.zeros((1600, 2), np.float32))
