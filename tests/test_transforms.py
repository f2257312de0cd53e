"""Tests for imujax.transforms.imu / video against independent references (brute-force numpy, torch, PIL)."""

import io
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from imujax.transforms import imu as imu_t
from imujax.transforms import video as video_t
from imujax.transforms.resize import linear_resize

# -- references written for the tests -------------------------------------------------------------


def brute_force_resample(
    x: np.ndarray, orig: int, new: int, width_zeros: int = 6, rolloff: float = 0.99, f32_phase: bool = True
):
    """Direct windowed-sinc evaluation y[j] = sum_i x[i] h(i/O - j/N), float64, no polyphase tricks.

    torchaudio computes the fractional output phase (j mod N)/N as a float32 tensor; f32_phase
    reproduces that rounding, f32_phase=False gives the exact formula.
    """
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    base = min(o, n) * rolloff
    out_len = math.ceil(Fraction(n * len(x), o))
    i = np.arange(len(x))[None, :]
    j = np.arange(out_len)[:, None]
    block, phase = j // n, (j % n) / n
    if f32_phase:
        phase = phase.astype(np.float32).astype(np.float64)
    t = ((i - block * o) / o - phase) * base
    inside = np.abs(t) < width_zeros
    sinc = np.sinc(t)  # sin(pi t) / (pi t)
    hann = np.cos(np.pi * t / (2 * width_zeros)) ** 2
    weights = np.where(inside, sinc * hann * base / o, 0.0)
    return weights @ x.astype(np.float64)


def brute_force_power_spectrogram(x: np.ndarray, n_fft=256, win_length=24, hop=1):
    """Reflect pad by hand, full n_fft frames with the zero-padded centred window, explicit DFT sums."""
    pad = n_fft // 2
    idx = np.arange(-pad, len(x) + pad)
    idx = np.abs(idx)
    idx = np.where(idx >= len(x), 2 * (len(x) - 1) - idx, idx)
    padded = x.astype(np.float64)[idx]
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left : left + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[t * hop : t * hop + n_fft] * window for t in range(n_frames)])
    k = np.arange(n_fft // 2 + 1)
    dft = np.exp(-2j * np.pi * np.outer(np.arange(n_fft), k) / n_fft)
    return (np.abs(frames @ dft) ** 2).T  # [freq, frames]


def torch_power_spectrogram(x: np.ndarray, dtype=torch.float64):
    window = torch.hann_window(24, dtype=dtype)
    x = np.asarray(x)
    flat = torch.as_tensor(x.reshape(-1, x.shape[-1]), dtype=dtype)  # torch.stft takes 1-D or 2-D
    spec = torch.stft(
        flat, 256, hop_length=1, win_length=24, window=window,
        center=True, pad_mode="reflect", onesided=True, return_complex=True,
    )
    return (spec.abs() ** 2).numpy().reshape(*x.shape[:-1], *spec.shape[-2:])


# -- spectrogram ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [130, 250, 320])
def test_power_spectrogram_matches_brute_force_dft(length):
    x = np.random.default_rng(length).normal(size=length) * 3.0
    ours = imu_t.power_spectrogram(x)
    ref = brute_force_power_spectrogram(x)
    assert ours.shape == (129, length + 1) == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10 * ref.max())


def test_power_spectrogram_matches_torch_stft_batched():
    x = np.random.default_rng(1).normal(size=(2, 3, 320))
    ours = imu_t.power_spectrogram(x)
    ref = torch_power_spectrogram(x)
    assert ours.shape == (2, 3, 129, 321)
    assert np.abs(ours - ref).max() < 1e-10 * ref.max()
    # float32 in -> float32 out, close to torch's float32 stft (torchaudio's actual precision).
    ours32 = imu_t.power_spectrogram(x.astype(np.float32))
    ref32 = torch_power_spectrogram(x.astype(np.float32), torch.float32)
    assert ours32.dtype == np.float32
    assert np.abs(ours32 - ref32).max() < 1e-5 * ref32.max()


def test_power_spectrogram_hop_and_too_short_input():
    x = np.random.default_rng(2).normal(size=300)
    ours = imu_t.power_spectrogram(x, n_fft=64, win_length=16, hop_length=3)
    ref = brute_force_power_spectrogram(x, n_fft=64, win_length=16, hop=3)
    np.testing.assert_allclose(ours, ref, atol=1e-10 * ref.max())
    with pytest.raises(ValueError, match="reflect padding"):
        imu_t.power_spectrogram(np.zeros(100))


def test_amplitude_to_db():
    x = np.array([0.0, 1e-12, 1e-10, 1.0, 100.0], dtype=np.float32)
    np.testing.assert_allclose(imu_t.amplitude_to_db(x), [-100, -100, -100, 0, 20], atol=1e-4)
    assert imu_t.amplitude_to_db(x).dtype == np.float32


# -- resampling -----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [60, 117, 120, 150, 250, 400])
def test_sinc_resample_matches_brute_force(length):
    x = np.random.default_rng(length).normal(size=(2, length))
    new = int(100 * (320 / length))
    ref = np.stack([brute_force_resample(row, 100, new) for row in x])
    ours64 = imu_t.sinc_resample(x, 100, new)
    assert ours64.shape == ref.shape == (2, math.ceil(Fraction(new * length, 100)))
    np.testing.assert_allclose(ours64, ref, atol=1e-9)
    ours32 = imu_t.sinc_resample(x.astype(np.float32), 100, new)
    assert ours32.dtype == np.float32
    np.testing.assert_allclose(ours32, ref, atol=2e-5)
    # The float32 phase rounding is the only departure from the exact interpolation formula.
    exact = np.stack([brute_force_resample(row, 100, new, f32_phase=False) for row in x])
    np.testing.assert_allclose(ours64, exact, atol=1e-4)


def test_sinc_resample_lengths_for_evi_windows():
    # new = int(100 * 320 / L); output length ceil(L * new / 100), e.g. 120 -> 266 Hz -> 320 samples.
    assert imu_t.sinc_resample(np.zeros(120, np.float32), 100, 266).shape == (320,)
    for length in [64, 100, 119, 120, 121, 199, 333]:
        new = int(100 * (320 / length))
        expected = math.ceil(Fraction(new * length, 100))
        assert imu_t.sinc_resample(np.zeros(length, np.float32), 100, new).shape == (expected,)


def test_sinc_resample_reproduces_band_limited_sinusoid():
    t_in = np.arange(400) / 100.0
    x = np.sin(2 * np.pi * 7.0 * t_in + 0.3)
    y = imu_t.sinc_resample(x, 100, 266)
    t_out = np.arange(len(y)) / 266.0
    interior = slice(40, len(y) - 40)  # away from the zero-padded edges
    np.testing.assert_allclose(y[interior], np.sin(2 * np.pi * 7.0 * t_out + 0.3)[interior], atol=2e-3)
    # downsampling removes a tone above the new Nyquist frequency.
    high = np.sin(2 * np.pi * 45.0 * t_in)
    assert np.abs(imu_t.sinc_resample(high, 100, 60)[30:-30]).max() < 0.02


def test_sinc_resample_rejects_bad_rates():
    with pytest.raises(ValueError, match="integers"):
        imu_t.sinc_resample(np.zeros(10), 100, 2.5)
    with pytest.raises(ValueError, match="positive"):
        imu_t.sinc_resample(np.zeros(10), 100, 0)


# -- EVI-MAE spectrogram image --------------------------------------------------------------------


def reference_evi_power(imu: np.ndarray) -> np.ndarray:
    """Per channel with torch for the STFT and the brute-force resampler; [C, time=320, freq=128] power."""
    out = []
    for channel in imu.T.astype(np.float32):
        wave = channel - channel.mean()
        new = int(100 * (320 / len(wave)))
        wave = brute_force_resample(wave, 100, new)
        power = torch_power_spectrogram(wave)  # [129, frames]
        fbank = power.T[:, :128]
        fbank = fbank[:320] if len(fbank) >= 320 else np.pad(fbank, ((0, 320 - len(fbank)), (0, 0)))
        out.append(fbank)
    return np.stack(out)


@pytest.mark.parametrize("rows", [120, 150, 400])
def test_stretched_db_spectrogram_matches_reference(rows):
    imu = np.random.default_rng(rows).normal(size=(rows, 12)) * 4.0 + 9.81
    mean, std = -69.8, 23.5
    out = imu_t.stretched_db_spectrogram(imu, mean=mean, std=std)
    assert out.shape == (12, 320, 128) and out.dtype == np.float32
    power = 10.0 ** ((out.astype(np.float64) * std + mean) / 10.0)
    ref = reference_evi_power(imu)
    scale = ref.max(axis=(1, 2), keepdims=True)
    assert np.abs(power - ref).max() < 1e-4 * scale.max()
    # dB of the strong bins agrees tightly.
    strong = ref > 1e-3 * scale
    ref_db = (10 * np.log10(np.maximum(ref, 1e-10)) - mean) / std
    assert np.abs(out - ref_db)[strong].max() < 1e-4


def test_stretched_db_spectrogram_drops_nyquist_bin_and_last_frame():
    imu = np.random.default_rng(5).normal(size=(320, 12)).astype(np.float32)
    out = imu_t.stretched_db_spectrogram(imu, mean=0.0, std=1.0)
    # L = 320 -> new rate 100 == orig: no resampling; 321 frames, 129 bins -> keep [:320, :128].
    full = torch_power_spectrogram(imu.T - imu.T.mean(1, keepdims=True))
    assert full.shape == (12, 129, 321)
    kept = np.swapaxes(full, 1, 2)[:, :320, :128]
    # compare powers (dB of float32 noise-floor bins is not a meaningful comparison)
    np.testing.assert_allclose(10.0 ** (out.astype(np.float64) / 10.0), kept, atol=1e-5 * full.max())
    # and the dropped Nyquist bin / last frame really are different data, not duplicates
    assert not np.allclose(full[:, 128, :320], kept[:, :, 127], rtol=1e-2)


def test_stretched_db_spectrogram_pads_short_outputs_with_zeros_before_normalising():
    rows = 330  # new = int(100*320/330) = 96 Hz -> ceil(316.8) = 317 samples -> 318 frames
    out = imu_t.stretched_db_spectrogram(np.random.default_rng(0).normal(size=(rows, 12)), mean=-50.0, std=20.0)
    assert out.shape == (12, 320, 128)
    np.testing.assert_array_equal(out[:, 318:], np.float32(50.0 / 20.0))
    assert np.all(out[:, 317] != np.float32(2.5))


def test_stretched_db_spectrogram_bad_input():
    with pytest.raises(ValueError, match=r"\[T, C\]"):
        imu_t.stretched_db_spectrogram(np.zeros(100), mean=0.0, std=1.0)
    with pytest.raises(ValueError, match="no rows"):
        imu_t.stretched_db_spectrogram(np.zeros((0, 12)), mean=0.0, std=1.0)


def test_uniform_noise_is_seeded_and_bounded():
    x = np.zeros((12, 320, 128), np.float32)
    a = imu_t.uniform_noise(x, np.random.default_rng(3))
    b = imu_t.uniform_noise(x, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    u = np.random.default_rng(3).random() / 10  # the per-sample amplitude is the first draw
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() < u
    assert abs(a.mean() - u / 2) < 0.01 * u


def test_imu_slice_for_frames():
    ids = np.arange(16) * 4 + 100  # frames 100..160 of a 300-frame clip
    assert imu_t.imu_slice_for_frames(600, ids, 300) == (200, 320)
    assert imu_t.imu_slice_for_frames(719, [0, 60], 720) == (0, 59)
    with pytest.raises(ValueError, match="empty"):
        imu_t.imu_slice_for_frames(100, [], 10)


# -- RevalExo spectrogram -------------------------------------------------------------------------


def test_resized_log_spectrogram_matches_torch_reference():
    imu = np.random.default_rng(7).normal(size=(120, 12)).astype(np.float32) * 5.0
    mean, std = -1.223483, 7.991705
    out = imu_t.resized_log_spectrogram(imu)
    assert out.shape == (12, 128, 320) and out.dtype == np.float32

    signal = torch.from_numpy(imu.T.copy())[:, None]  # [12, 1, 120]
    signal = F.interpolate(signal, size=250, mode="linear", align_corners=False)[:, 0]
    spec = torch.stft(
        signal, 256, hop_length=1, win_length=24, window=torch.hann_window(24), center=True,
        pad_mode="reflect", onesided=True, return_complex=True,
    ).abs() ** 2  # [12, 129, 251]
    spec = torch.log(spec + 1e-6)
    spec = F.interpolate(spec[:, None], size=(128, 320), mode="bilinear", align_corners=False)[:, 0]
    ref = ((spec - mean) / std).numpy()
    # float32 round-off dominates the weakest bins in log scale; the strong ones must agree tightly.
    strong = ref * std + mean > np.log(1e-4) + (ref * std + mean).max()
    assert strong.mean() > 0.5
    assert np.abs(out - ref)[strong].max() < 1e-3
    assert np.median(np.abs(out - ref)) < 1e-5


def test_linear_resize_matches_torch_interpolate_float64():
    x = np.random.default_rng(8).normal(size=(3, 129, 251))
    ours = linear_resize(linear_resize(x, 128, axis=1), 320, axis=2)
    ref = F.interpolate(torch.from_numpy(x)[:, None], size=(128, 320), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(ours, ref[:, 0].numpy(), atol=1e-12)
    ours_1d = linear_resize(x[:, 0, :120], 250, axis=-1)
    ref_1d = F.interpolate(torch.from_numpy(x[:, :1, :120]), size=250, mode="linear", align_corners=False)
    np.testing.assert_allclose(ours_1d, ref_1d[:, 0].numpy(), atol=1e-12)


# -- video ----------------------------------------------------------------------------------------


def upstream_frame_ids(num_frames_in_clip, start, num=16, step=4):
    """EVI-MAE's 1-based loop, written out literally."""
    offset, ids = start + 1, []
    for _ in range(num):
        ids.append(offset - 1)
        if offset + step < num_frames_in_clip:
            offset += step
    return ids


def test_sample_frame_indices_windows():
    eval_ids = video_t.sample_frame_indices(200, 16, 4, None)
    np.testing.assert_array_equal(eval_ids, upstream_frame_ids(200, (200 - 64) // 2))
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        ids = video_t.sample_frame_indices(100, 16, 4, rng)
        assert 0 <= ids[0] <= 36
        np.testing.assert_array_equal(ids, upstream_frame_ids(100, int(ids[0])))
        starts.add(int(ids[0]))
    assert min(starts) == 0 and max(starts) == 36
    short = video_t.sample_frame_indices(30, 16, 4, np.random.default_rng(1))
    np.testing.assert_array_equal(short, upstream_frame_ids(30, 0))
    assert short.max() <= 29 and short[-1] == 28
    np.testing.assert_array_equal(video_t.linspace_frame_indices(61, 16), (np.arange(16) * 4))
    np.testing.assert_array_equal(video_t.linspace_frame_indices(10, 4), [0, 3, 6, 9])


def _frames(n=3, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_resize_and_center_crop():
    frames = _frames()
    out = video_t.resize_frames(frames, 32)
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(frames[1]).resize((32, 32), Image.BILINEAR))
    np.testing.assert_array_equal(out[1], expected)
    crop = video_t.center_crop(frames, (20, 30))
    np.testing.assert_array_equal(crop, frames[:, 14:34, 17:47])
    # float frames follow torch's bilinear interpolate (align_corners=False).
    as_float = frames.astype(np.float32)
    ours = video_t.resize_frames(as_float, (20, 26))
    ref = F.interpolate(torch.from_numpy(as_float).permute(0, 3, 1, 2), size=(20, 26), mode="bilinear",
                        align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    with pytest.raises(ValueError, match="outside"):
        video_t.center_crop(frames, 60)


def test_random_resized_crop_is_deterministic_and_in_bounds():
    frames = _frames()
    a = video_t.random_resized_crop(frames, 24, np.random.default_rng(5), scale=(0.8, 1.0))
    b = video_t.random_resized_crop(frames, 24, np.random.default_rng(5), scale=(0.8, 1.0))
    assert a.shape == (3, 24, 24, 3)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    for _ in range(100):
        top, left, h, w = video_t.random_resized_crop_box(48, 64, rng, scale=(0.8, 1.0), ratio=(0.75, 4 / 3))
        assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 64
        assert 0.8 * 48 * 64 * 0.9 <= h * w <= 48 * 64


def test_multi_scale_crop_picks_one_of_the_videomae_candidates():
    frames = _frames(2, 48, 64)
    size = 24
    # Candidates written from the recipe: sides int(48 * s), snap within 3 px of 24, |i - j| <= 1.
    sides = [int(48 * s) for s in (1, 0.875, 0.75, 0.66)]  # 48, 42, 36, 31
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    candidates = []
    for i, ch in enumerate(sides):
        for j, cw in enumerate(sides):
            if abs(i - j) <= 1:
                for gx, gy in grid:
                    left, top = gx * ((64 - cw) // 4), gy * ((48 - ch) // 4)
                    crop = frames[:, top : top + ch, left : left + cw]
                    candidates.append(np.stack([
                        np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in crop
                    ]))
    assert len(candidates) == 10 * 13
    seen = set()
    for seed in range(40):
        out = video_t.multi_scale_crop(frames, size, np.random.default_rng(seed))
        assert out.shape == (2, size, size, 3)
        matches = [k for k, c in enumerate(candidates) if np.array_equal(c, out)]
        assert matches, f"seed {seed}: output is not a GroupMultiScaleCrop candidate"
        seen.add(matches[0])
        np.testing.assert_array_equal(out, video_t.multi_scale_crop(frames, size, np.random.default_rng(seed)))
    assert len(seen) > 10


def test_normalize_and_channels_first():
    frames = _frames(2, 4, 5)
    out = video_t.normalize(frames)
    assert out.dtype == np.float32
    r, g, b = frames[1, 2, 3].astype(np.float64) / 255.0
    np.testing.assert_allclose(out[1, 2, 3], [(r - 0.485) / 0.229, (g - 0.456) / 0.224, (b - 0.406) / 0.225],
                               rtol=1e-6)
    cf = video_t.to_channels_first(out)
    assert cf.shape == (3, 2, 4, 5)
    np.testing.assert_array_equal(cf[2, 1, 3, 4], out[1, 3, 4, 2])


def test_training_batch_video_layout_matches_the_upstream_clip():
    """uint8 patch vectors cut from channels-last frames, normalised as `System.model_inputs` does on the device,
    are the normalised channels-first clip's `patches.video_patches`."""
    import jax.numpy as jnp
    from imujax.systems.evi_mae import System
    from imujax import patch_layout as patches

    clip, _ = video_t.strided_crop_clip(_frames(40, 48, 64, seed=4), train=True, rng=np.random.default_rng(1),
                                   img_size=32)
    vectors = patches.video_patches_from_frames(clip, 2, 16)
    assert vectors.dtype == np.uint8 and vectors.shape == (8 * 2 * 2, 2 * 16 * 16 * 3)
    _, on_device = System.model_inputs({"imu": None, "video": jnp.asarray(vectors[None])})
    upstream = video_t.to_channels_first(video_t.normalize(clip))
    np.testing.assert_allclose(np.asarray(on_device[0]), patches.video_patches(upstream, 2, 16), atol=1e-6)
    np.testing.assert_array_equal(patches.video_from_patches(patches.video_patches(upstream, 2, 16), 16, 32, 2, 16),
                                  upstream)


def test_strided_crop_clip_shapes_determinism_and_encoded_input():
    clip = _frames(80, 48, 64, seed=3)
    video, ids = video_t.strided_crop_clip(clip, train=True, rng=np.random.default_rng(0), img_size=32)
    assert video.shape == (16, 32, 32, 3)
    assert len(ids) == 16 and np.all(np.diff(ids) == 4)
    again, ids2 = video_t.strided_crop_clip(clip, train=True, rng=np.random.default_rng(0), img_size=32)
    np.testing.assert_array_equal(video, again)
    np.testing.assert_array_equal(ids, ids2)
    eval_video, eval_ids = video_t.strided_crop_clip(clip, train=False, rng=None, img_size=32)
    np.testing.assert_array_equal(eval_ids, 8 + 4 * np.arange(16))
    expected = video_t.resize_frames(clip[eval_ids][:, :, 8:56], 32)
    np.testing.assert_allclose(video_t.normalize(eval_video), video_t.normalize(expected))
    encoded = []
    for frame in clip:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    from_bytes, _ = video_t.strided_crop_clip(encoded, train=False, rng=None, img_size=32)
    np.testing.assert_array_equal(from_bytes, eval_video)
    with pytest.raises(ValueError, match="rng"):
        video_t.strided_crop_clip(clip, train=True, rng=None)
