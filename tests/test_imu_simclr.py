"""The real-data contrastive recipe (configs/imu_simclr.py): its views keep what the probe needs, its system trains."""

import jax
import numpy as np
import pytest
from flax import nnx

from configs import imu_simclr
from imujax import systems
from imujax.objectives import infonce
from imujax.transforms import imu_views


def _record(channels, rate=50.0, length=100, seed=0):
    rng = np.random.default_rng(seed)
    imu = rng.normal(size=(length, len(channels))).astype(np.float32)
    imu[:, 2] += 9.81  # gravity on z of the first sensor
    return {"imu": imu, "imu_rate_hz": np.float32(rate), "channels": [c.encode() for c in channels], "label": 3,
            "id": "r0"}


def test_views_keep_levels_and_small_rotations_keep_gravity_direction():
    rng = np.random.default_rng(0)
    x = np.zeros((6, 100), np.float32)
    x[2] = 9.80665
    unit = imu_views.scale_units(x)
    assert np.allclose(unit[2], 1.0) and np.allclose(unit[:2], 0.0)      # acc in g, level kept (no z-score)
    for _ in range(20):
        view = imu_views.random_view(unit, rng, max_rotation_degrees=20.0, jitter_sigma=0.0, scale_sigma=0.0,
                                     sensor_dropout=0.0)
        gravity = view[:3].mean(axis=1)
        assert view.shape == unit.shape
        assert np.degrees(np.arccos(gravity[2] / np.linalg.norm(gravity))) <= 20.0 + 1e-3
    matrix = imu_views.random_rotation(rng)
    assert np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-6) and np.isclose(np.linalg.det(matrix), 1.0)


def test_system_picks_a_present_sensor_group_and_trains():
    config = imu_simclr.get_config("own:hapt")
    config.model.update(widths=(8, 8), dim=8, proj_dim=8)
    system = systems.make_system(config)
    dsads_like = [f"{u}/{s}_{a}" for u in ("torso", "left_leg") for s in ("acc", "gyro", "mag") for a in "xyz"]
    record = _record(dsads_like, rate=25.0, length=50)  # 25 Hz sinc-resampled to 50 Hz, 2 s
    example = system.preprocess(record, np.random.default_rng(0))
    assert example["imu"].shape == example["imu_view"].shape == (6, 100)
    assert np.allclose(system.preprocess(record, None)["imu"][2].mean(), 9.81 / 9.80665, atol=0.1)  # torso first
    with pytest.raises(KeyError, match="imu_channel_groups"):
        system.preprocess(_record(["wrist/acc_x"] * 6), None)
    model = system.make_model(nnx.Rngs(0))
    batch = {k: np.stack([system.preprocess(_record(dsads_like, seed=i), np.random.default_rng(i))[k]
                          for i in range(8)]) for k in ("imu", "imu_view")}
    loss, metrics = system.loss(model, jax.tree.map(np.asarray, batch), jax.random.key(0))
    assert np.isfinite(float(loss)) and abs(float(loss) - np.log(8)) < 1.5
    assert system.embed(model, {"imu": batch["imu"]})["fused"].shape == (8, 8)


def test_sp_sw_har_is_a_real_set_with_its_own_cross_subject_config():
    assert imu_simclr.get_config("own:sp_sw_har").data.name == "sp_sw_har/holdout"
    mixture = imu_simclr.get_config("transfer:hapt").data.mixture
    assert "sp_sw_har/holdout" in mixture and not any(m.startswith("hapt/") for m in mixture)
    assert imu_simclr.SYNTHETIC_MOTION in mixture and imu_simclr.get_config("transfer:hapt").loss.label_weight > 0
    real_only = imu_simclr.get_config("transfer_real:hapt")  # row j: the same real sets, no corpus, no label
    assert real_only.data.mixture == tuple(m for m in mixture if m != imu_simclr.SYNTHETIC_MOTION)
    assert real_only.loss.label_weight == 0 and real_only.data.train_split == "train+test"
    assert real_only.total_steps == imu_simclr.get_config("transfer:hapt").total_steps  # e - j: like with like
    assert {"phone/acc_x", "watch/gyro_z"} <= {c for g in imu_simclr.CHANNEL_GROUPS for c in g}


def test_label_positives_only_from_synthetic_records():
    config = imu_simclr.get_config("own:hapt")
    config.loss.label_weight = 0.5
    with pytest.raises(ValueError, match="no source of this run is synthetic"):
        systems.make_system(config)
    # a mixture of a real set and the synthetic corpus: only the synthetic records' labels reach the loss
    config = imu_simclr.get_config("synthetic_own:dsads")
    config.loss.label_weight = 0.5
    config.model.update(widths=(8, 8), dim=8, proj_dim=8)
    system = systems.make_system(config)
    channels = [f"torso/{s}_{a}" for s in ("acc", "gyro") for a in "xyz"]
    real, synthetic = (dict(_record(channels), dataset_index=np.int32(i)) for i in (0, 1))
    assert int(system.preprocess(real, np.random.default_rng(0))["supcon_label"]) == -1
    assert int(system.preprocess(synthetic, np.random.default_rng(0))["supcon_label"]) == 3
    assert int(system.preprocess(_record(channels), None)["supcon_label"]) == -1  # evaluation: the real set

    config = imu_simclr.get_config("synthetic")
    config.loss.label_weight = 1.0
    config.model.update(widths=(8, 8), dim=8, proj_dim=8)
    system = systems.make_system(config)
    model = system.make_model(nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(8, 6, 100)).astype(np.float32)
    batch = {"imu": x, "imu_view": x + 0.01, "label": np.zeros(8, np.int32),
             "supcon_label": np.array([0, 0, 0, 0, 1, 1, 1, 1], np.int32)}
    loss, metrics = system.loss(model, batch, jax.random.key(0))
    # with weight 1 the loss is the label term: 16 embeddings, 7 positives each among 15 others
    assert np.isclose(float(loss), float(metrics["label_loss"])) and float(loss) > np.log(15 / 7) - 1e-4
    assert not np.isclose(float(metrics["label_loss"]), float(metrics["view_loss"]))
    # unlabelled windows (-1) are positives of their own other view only, not of each other
    unlabelled = system.loss(model, dict(batch, supcon_label=np.full(8, -1, np.int32)), jax.random.key(0))[1]
    z = model.project(model(np.concatenate([batch["imu"], batch["imu_view"]])))
    view_pairs = infonce.supervised_contrastive(z, np.tile(np.arange(8), 2), config.loss.temperature)
    np.testing.assert_allclose(float(unlabelled["label_loss"]), float(view_pairs), rtol=1e-6)
