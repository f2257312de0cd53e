"""Synthetic egomotion builder: TF-free build/read, determinism, physics of the IMU, video/IMU consistency."""
import dataclasses
import glob
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy.spatial.transform import Rotation

from data_builders import synthetic_egomotion as se
from data_builders.synthetic_egomotion import clips, imu, kinematics, render

TINY = se.TINY
G = 9.81
CLASS = {name: i for i, name in enumerate(se.CLASS_NAMES)}


def _records(data_dir, split):
    ds = tfds.data_source("synthetic_egomotion/tiny", data_dir=str(data_dir), split=split)
    return {ex["id"].decode(): ex for ex in (ds[i] for i in range(len(ds)))}


def _shards(data_dir, split):
    version_dir = os.path.join(str(data_dir), "synthetic_egomotion", "tiny", str(se.Builder.VERSION))
    return sorted(glob.glob(os.path.join(version_dir, f"synthetic_egomotion-{split}.array_record-*")))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("egomotion")
    se.build(str(data_dir), "tiny")
    return data_dir


@pytest.fixture(scope="module")
def records(built):
    return {split: _records(built, split) for split in ("train", "test")}


def _id(subject, name, clip):
    return clips.clip_id(subject, CLASS[name], clip)


def test_build_and_read_without_tensorflow(built, records):
    assert "tensorflow" not in sys.modules
    n_classes = len(se.CLASS_NAMES)
    expected = {"train": 2 * n_classes * TINY.clips_per_class, "test": 1 * n_classes * TINY.clips_per_class}
    for split, recs in records.items():
        assert len(recs) == expected[split]
        assert len(_shards(built, split)) == TINY.num_shards > 1
        for key, ex in recs.items():
            assert ex["id"].decode() == key
            assert ex["imu"].shape == (200, 30) and ex["imu"].dtype == np.float32
            assert [c.decode() for c in ex["channels"]] == list(se.CHANNEL_NAMES)
            assert ex["imu_rate_hz"] == 100.0 and ex["video_fps"] == 8.0
            video = np.stack(ex["video"])
            assert video.shape == (16, 32, 32, 3) and video.dtype == np.uint8
            name = se.CLASS_NAMES[ex["label"]]
            assert ex["text"].decode() == se.CLASS_DESCRIPTIONS[name]
            assert key.startswith(f"s{ex['subject']:02d}_{name}_")
            assert ex["subject"] in (TINY.train_subjects if split == "train" else TINY.test_subjects)
    assert not set(records["train"]) & set(records["test"])
    assert se.CHANNEL_NAMES[0] == "left_arm/acc_x" and se.CHANNEL_NAMES[-1] == "head/gyro_z"
    assert tuple(se.SLOTS) == ("left_arm", "right_arm", "left_leg", "right_leg", "head")
    assert "tensorflow" not in sys.modules


def test_records_match_the_simulator(records):
    ex = records["test"][_id(2, "walk", 1)]
    np.testing.assert_array_equal(ex["imu"], clips.clip_imu(TINY, 2, CLASS["walk"], 1))
    frames = clips.clip_frames(TINY, 2, CLASS["walk"], 1).astype(float)
    assert np.abs(np.stack(ex["video"]).astype(float) - frames).mean() < 4.0  # JPEG is lossy


def test_build_is_deterministic_and_not_repeated(built, records, tmp_path):
    before = {p: os.path.getmtime(p) for p in _shards(built, "train")}
    se.build(str(built), "tiny")  # already there: must not rebuild
    assert {p: os.path.getmtime(p) for p in _shards(built, "train")} == before

    se.build(str(tmp_path), "tiny")
    for split in ("train", "test"):
        again = _records(tmp_path, split)
        assert again.keys() == records[split].keys()
        for key, ex in records[split].items():
            np.testing.assert_array_equal(ex["imu"], again[key]["imu"])
            np.testing.assert_array_equal(np.stack(ex["video"]), np.stack(again[key]["video"]))
            assert ex["label"] == again[key]["label"]
        for a, b in zip(_shards(built, split), _shards(tmp_path, split)):
            assert open(a, "rb").read() == open(b, "rb").read()


def _debiased(ex, subject):
    motion = clips.clip_motion(TINY, subject, 0, 0)
    return ex["imu"].astype(np.float64) - imu.sensor_bias(motion)


def test_standing_sensors_read_gravity_and_no_rotation(records):
    for subject in TINY.train_subjects:
        x = _debiased(records["train"][_id(subject, "stand", 0)], subject).mean(0).reshape(5, 6)
        np.testing.assert_allclose(np.linalg.norm(x[:, :3], axis=-1), G, atol=0.02)
        np.testing.assert_allclose(x[:, 3:], 0.0, atol=3e-3)
        # Specific force points up: the head (nearly level) reads about +g on its z axis.
        assert x[4, 2] > 0.95 * G


def test_turn_yaw_rate_integrates_to_turned_angle(records):
    for name, sign in (("turn_left", 1.0), ("turn_right", -1.0)):
        for clip in range(TINY.clips_per_class):
            motion = clips.clip_motion(TINY, 2, CLASS[name], clip)
            yaw_rate = _debiased(records["test"][_id(2, name, clip)], 2)[:, se.CHANNEL_NAMES.index("head/gyro_z")]
            turned = np.trapezoid(yaw_rate, dx=1.0 / TINY.imu_rate_hz)
            assert np.sign(turned) == sign and abs(motion.turn_angle) > np.deg2rad(60)
            assert turned == pytest.approx(motion.turn_angle, abs=0.05)


def _peak_frequency(signal, rate):
    signal = (signal - signal.mean()) * np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(signal, 8192))
    freqs = np.fft.rfftfreq(8192, 1.0 / rate)
    band = (freqs > 1.0) & (freqs < 5.0)
    return freqs[band][np.argmax(spectrum[band])]


def test_gait_cadence_is_the_acc_spectrum_peak(records):
    az = se.CHANNEL_NAMES.index("head/acc_z")
    peaks = {}
    for name in ("walk", "run"):
        for subject in TINY.train_subjects:
            for clip in range(TINY.clips_per_class):
                motion = clips.clip_motion(TINY, subject, CLASS[name], clip)
                expected = motion.subject.walk_cadence_hz if name == "walk" else motion.subject.run_cadence_hz
                assert motion.cadence_hz == pytest.approx(expected, rel=0.05)
                peak = _peak_frequency(records["train"][_id(subject, name, clip)]["imu"][:, az], TINY.imu_rate_hz)
                assert peak == pytest.approx(motion.cadence_hz, abs=0.1)
                peaks.setdefault(name, []).append(peak)
    assert min(peaks["run"]) > max(peaks["walk"]) + 0.3


@pytest.mark.parametrize("name", se.CLASS_NAMES)
def test_analytic_imu_matches_finite_differences_of_poses(name):
    motion = clips.clip_motion(TINY, 1, CLASS[name], 0)
    t = np.linspace(0.05, 1.95, 39)
    h = 1e-3
    before, now, after = (kinematics.body_poses(motion, t + dt) for dt in (-h, 0.0, h))
    for slot in se.SLOTS:
        p = [pose[slot].position.value for pose in (before, now, after)]
        r = [pose[slot].rotation.value for pose in (before, now, after)]
        fd_acc = (p[2] - 2.0 * p[1] + p[0]) / h**2
        np.testing.assert_allclose(now[slot].position.d2, fd_acc, atol=5e-3)
        acc, gyro = imu.specific_force_and_rate(now[slot])
        expected_acc = np.einsum("tji,tj->ti", r[1], fd_acc + np.array([0.0, 0.0, G]))
        np.testing.assert_allclose(acc, expected_acc, atol=5e-3)
        # Body-frame rate from the relative rotation between neighbouring poses (scipy log map).
        expected_gyro = Rotation.from_matrix(np.einsum("tji,tjk->tik", r[0], r[2])).as_rotvec() / (2 * h)
        np.testing.assert_allclose(gyro, expected_gyro, atol=2e-4)
        np.testing.assert_allclose(np.linalg.det(r[1]), 1.0, atol=1e-9)


def test_noise_is_white_with_the_subject_level(records):
    subject, name = 2, "run"
    motion = clips.clip_motion(TINY, subject, CLASS[name], 0)
    t = np.arange(TINY.num_imu_samples) / TINY.imu_rate_hz
    residual = records["test"][_id(subject, name, 0)]["imu"] - imu.clean_imu(motion, t) - imu.sensor_bias(motion)
    std = imu.noise_std(motion)
    np.testing.assert_allclose(residual.std(0) / std, 1.0, atol=0.3)
    assert np.all(np.abs(residual.mean(0)) < 4 * std / np.sqrt(len(t)))


def _frame_change(ex):
    video = np.stack(ex["video"]).astype(float)
    return np.abs(np.diff(video, axis=0)).mean()


def test_video_moves_with_the_camera(records):
    for subject in TINY.train_subjects:
        walk = _frame_change(records["train"][_id(subject, "walk", 0)])
        stand = _frame_change(records["train"][_id(subject, "stand", 0)])
        assert walk > 2.0 and stand < 0.5 and walk > 10 * stand


def _pixel_column(direction_world, camera_to_world, focal, size):
    d = camera_to_world.T @ direction_world  # camera frame: x forward, y left, z up
    return size / 2 - focal * d[1] / d[0]


def test_turning_shifts_the_image_as_the_head_rotates():
    """Frame-to-frame horizontal image shift agrees with the pinhole projection of the head rotation."""
    size = 96
    config = dataclasses.replace(TINY, frame_size=size)
    focal = 0.5 * size / np.tan(0.5 * render.HORIZONTAL_FOV)
    for name in ("turn_left", "turn_right"):
        motion = clips.clip_motion(config, 0, CLASS[name], 0)
        gray = clips.clip_frames(config, 0, CLASS[name], 0).astype(float).mean(-1)
        times = np.arange(config.num_frames) / config.video_fps
        heads = kinematics.body_poses(motion, times)["head"].rotation.value
        mount = Rotation.from_euler("y", render.CAMERA_PITCH_DOWN).as_matrix()
        measured = predicted = 0.0
        rows, shifts = slice(10, 40), np.arange(-25, 26)
        for k in range(len(times) - 1):
            a, b = gray[k, rows], gray[k + 1, rows]
            errors = np.array([np.mean((np.roll(a, s, axis=1)[:, 25:-25] - b[:, 25:-25]) ** 2) for s in shifts])
            best = int(np.clip(np.argmin(errors), 1, len(shifts) - 2))
            e0, e1, e2 = errors[best - 1:best + 2]
            measured += shifts[best] + 0.5 * (e0 - e2) / (e0 - 2 * e1 + e2)  # sub-pixel parabola vertex
            # Far-away points seen in the compared window in frame k: how far do their columns move in frame k + 1?
            cam0, cam1 = heads[k] @ mount, heads[k + 1] @ mount
            predicted += np.mean([
                _pixel_column(cam0 @ np.array([focal, size / 2 - col - 0.5, size / 2 - row - 0.5]), cam1, focal, size)
                - (col + 0.5)
                for row in range(rows.start, rows.stop, 3) for col in range(25, size - 25, 3)])
        assert np.sign(measured) == np.sign(motion.turn_angle)
        assert measured == pytest.approx(predicted, rel=0.06)


def test_linear_classifier_on_imu_features_beats_chance_on_unseen_subjects():
    config = dataclasses.replace(se.DEFAULT, clips_per_class=3)

    def dataset(subjects):
        features, labels = [], []
        for subject in subjects:
            for label in range(len(se.CLASS_NAMES)):
                for clip in range(config.clips_per_class):
                    x = clips.clip_imu(config, subject, label, clip)
                    features.append(np.concatenate([x.mean(0), x.std(0)]))
                    labels.append(label)
        return np.array(features), np.array(labels)

    x_train, y_train = dataset(config.train_subjects)
    x_test, y_test = dataset(config.test_subjects)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    design = lambda x: np.c_[(x - mean) / std, np.ones(len(x))]
    a = design(x_train)
    weights = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ np.eye(len(se.CLASS_NAMES))[y_train])
    accuracy = np.mean(np.argmax(design(x_test) @ weights, axis=1) == y_test)
    assert accuracy > 0.7  # chance is 1/8


def test_bad_config_is_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="num_test_subjects"):
        dataclasses.replace(TINY, num_test_subjects=3)
    with pytest.raises(ValueError, match="activity"):
        kinematics.sample_motion("jump", kinematics.subject_params(0, 0), 2.0, np.random.default_rng(0))
