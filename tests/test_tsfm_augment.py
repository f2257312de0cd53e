"""TSFM augmentations and masks: rotation geometry, per-location sharing, signal transforms, mask budgets."""

from __future__ import annotations

import numpy as np
import pytest

from imujax.transforms import tsfm_augment as aug

NAMES = [f"{loc}/{s}_{a}" for loc in ("left_arm", "head") for s in ("acc", "gyro") for a in "xyz"] + ["head/baro"]


def _signal(t=200, seed=0):
    return np.random.default_rng(seed).normal(size=(t, len(NAMES))).astype(np.float64)


def test_random_rotation_is_proper_orthogonal():
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = aug.random_rotation(rng)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(r), 1.0)


def test_rotation_preserves_norms_and_shares_one_rotation_per_location():
    x = _signal()
    y, rotations = aug.rotate_triads(x, NAMES, np.random.default_rng(1))
    assert set(rotations) == {"left_arm", "head"}
    for loc in ("left_arm", "head"):
        for sensor in ("acc", "gyro"):
            idx = [NAMES.index(f"{loc}/{sensor}_{a}") for a in "xyz"]
            np.testing.assert_allclose(np.linalg.norm(y[:, idx], axis=1), np.linalg.norm(x[:, idx], axis=1),
                                       rtol=1e-12)
            # the rotation recovered by least squares from the data itself is the same for both sensors
            fitted, *_ = np.linalg.lstsq(x[:, idx], y[:, idx], rcond=None)
            np.testing.assert_allclose(fitted.T, rotations[loc], atol=1e-10)
    assert not np.allclose(rotations["left_arm"], rotations["head"])
    np.testing.assert_array_equal(y[:, NAMES.index("head/baro")], x[:, NAMES.index("head/baro")])


def test_rotation_rejects_name_mismatch():
    with pytest.raises(ValueError, match="channel names"):
        aug.rotate_triads(_signal(), NAMES[:-1], np.random.default_rng(0))


def test_jitter_and_scaling_statistics():
    rng = np.random.default_rng(0)
    x = np.ones((20000, 3))
    noise = aug.jitter(x, rng, sigma=0.05) - x
    assert abs(noise.std() - 0.05) < 2e-3 and abs(noise.mean()) < 2e-3
    y = aug.scaling(_signal(), rng, 0.9, 1.1)
    ratio = y / _signal()
    assert np.allclose(ratio, ratio[:1]) and np.all((ratio[0] >= 0.9) & (ratio[0] <= 1.1))


def test_time_shift_moves_signal_and_fills_with_mean():
    x = np.arange(100, dtype=np.float64)[:, None].repeat(2, axis=1)
    for seed in range(20):
        y = aug.time_shift(x, np.random.default_rng(seed), 0.05)
        moved = np.flatnonzero(y[:, 0] != x[:, 0])
        if len(moved):
            shift = int(y[50, 0] - x[50, 0]) * -1
            assert abs(shift) <= 5
            filled = y[:shift, 0] if shift > 0 else y[shift:, 0]
            np.testing.assert_allclose(filled, x[:, 0].mean())


def test_time_warp_keeps_endpoints_and_order():
    x = np.linspace(0, 1, 300)[:, None]
    y = aug.time_warp(x, np.random.default_rng(3), sigma=0.2)
    assert y[0, 0] == pytest.approx(0.0) and y[-1, 0] == pytest.approx(1.0)
    assert np.all(np.diff(y[:, 0]) >= -1e-12)  # a monotone ramp stays monotone under a monotone time map
    assert not np.allclose(y, x)


def test_magnitude_warp_is_a_smooth_positive_gain():
    x = np.ones((400, 2))
    y = aug.magnitude_warp(x, np.random.default_rng(0), sigma=0.1)
    assert np.all(y > 0.3) and not np.allclose(y[:, 0], y[:, 1])
    assert np.abs(np.diff(y, axis=0)).max() < 0.05


def test_resample_changes_speed_and_keeps_length():
    t = np.arange(500)
    x = np.sin(2 * np.pi * t / 50.0)[:, None]
    y = aug.resample(x, np.random.default_rng(0), 1.2, 1.2)  # 20% faster: period 50 -> ~41.7 samples
    assert y.shape == x.shape
    spectrum = np.abs(np.fft.rfft(y[:400, 0]))
    assert abs(400 / np.argmax(spectrum) - 50 / 1.2) < 2.5


def test_channel_shuffle_is_a_permutation_with_names():
    x = _signal()
    y, names = aug.channel_shuffle(x, NAMES, np.random.default_rng(0))
    assert sorted(names) == sorted(NAMES)
    for i, n in enumerate(names):
        np.testing.assert_array_equal(y[:, i], x[:, NAMES.index(n)])


def test_span_mask_budget_and_contiguity():
    rng = np.random.default_rng(0)
    for valid in (5, 10, 30):
        m = aug.span_mask(40, valid, rng, ratio=0.3)
        assert m.sum() >= int(0.3 * valid) and not m[valid:].any()


def test_channel_dropout_keeps_one_and_drops_the_spec_count():
    rng = np.random.default_rng(0)
    valid = np.array([True] * 10 + [False] * 3)
    drop = aug.channel_dropout(valid, rng, 0.3)
    assert drop.sum() == 3 and not drop[10:].any()
    single = aug.channel_dropout(np.array([True, False]), rng, 0.3)
    assert not single.any()  # one valid channel: nothing may be dropped


def test_structured_mask_strategy_frequencies():
    rng = np.random.default_rng(0)
    kinds = [aug.structured_mask(12, 10, np.ones(6, bool), rng)[2] for _ in range(3000)]
    freq = {k: kinds.count(k) / len(kinds) for k in ("random", "span", "channel")}
    assert abs(freq["random"] - 0.4) < 0.03 and abs(freq["span"] - 0.4) < 0.03 and abs(freq["channel"] - 0.2) < 0.03
