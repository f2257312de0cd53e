"""egoexo4d_imu and wear builders on tiny fixtures written here in the exact manual-dir layouts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
import torch

from data_builders import egoexo4d_imu, wear
from data_builders.wear import wear_dataset_builder as wb


def _build(builder_cls, manual, data_dir, config):
    builder = builder_cls(config=config, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder


def _records(builder, split):
    source = builder.as_data_source(split=split)
    return sorted((source[i] for i in range(len(source))), key=lambda r: r["id"])


# -- Ego-Exo4D ------------------------------------------------------------------------------------------------------
def _egoexo_fixture(root):
    os.makedirs(root / "annotations")
    takes = [{"take_uid": "uidA", "take_name": "cooking_1", "task_start_sec": 1.0, "parent_task_name": "Cooking"},
             {"take_uid": "uidB", "take_name": "bike_2", "parent_task_name": "Bike Repair"},
             {"take_uid": "uidC", "take_name": "noimu_3"}]
    (root / "takes.json").write_text(json.dumps(takes))
    train = {"annotations": {"uidA": {"segments": [{"start_time": 1.0, "end_time": 2.0, "step_unique_id": 7},
                                                   {"start_time": 2.0, "end_time": 9.0, "step_unique_id": 3}]}}}
    val = {"annotations": {"uidB": {"segments": [{"start_time": 0.0, "end_time": 1.0, "step_unique_id": 5}]}}}
    (root / "annotations" / "keystep_train.json").write_text(json.dumps(train))
    (root / "annotations" / "keystep_val.json").write_text(json.dumps(val))
    feats = root / "features" / "omnivore_video"
    os.makedirs(feats)
    rng = np.random.default_rng(0)
    for uid, n in (("uidA", 6), ("uidB", 3), ("uidC", 2)):
        torch.save(torch.from_numpy(rng.normal(size=(n, 1, 1536)).astype(np.float32)), feats / f"{uid}_aria01_rgb.pt")
    for name, seconds in (("cooking_1", 4.0), ("bike_2", 3.0)):  # 800 Hz left IMU tables
        os.makedirs(root / "features" / "imu_aria01" / name)
        n = int(seconds * 800)
        ts = 5_000_000_000 + np.arange(n) * 1_250_000
        table = np.concatenate([ts[:, None], rng.normal(size=(n, 6))], axis=1)
        np.save(root / "features" / "imu_aria01" / name / "left.npy", table)
    return takes


@pytest.fixture(scope="module")
def egoexo(tmp_path_factory):
    root = tmp_path_factory.mktemp("egoexo_manual")
    _egoexo_fixture(root)
    builder = _build(egoexo4d_imu.Builder, root, tmp_path_factory.mktemp("egoexo_data"), "default")
    return root, builder


def test_egoexo_windows_follow_feature_timing(egoexo):
    root, builder = egoexo
    train = _records(builder, "train")
    table = np.load(root / "features" / "imu_aria01" / "cooking_1" / "left.npy")
    seconds = (table[:, 0] - table[0, 0]) / 1e9
    feats = torch.load(root / "features" / "omnivore_video" / "uidA_aria01_rgb.pt").numpy()
    take_a = [r for r in train if r["id"].startswith(b"uidA")]
    # Windows centred on 1 + 16/30 i + 16/30 (s); they run until a window has no IMU sample (4 s of data).
    assert len(take_a) == 6
    for i, rec in enumerate(take_a):
        mid = 1.0 + 16 / 30 * i + 16 / 30
        rows = (seconds >= mid - 1) & (seconds < mid + 1)
        np.testing.assert_allclose(rec["imu"], table[rows, 1:7].astype(np.float32))
        np.testing.assert_allclose(rec["video_features"][0], feats[i, 0])
        np.testing.assert_allclose(rec["window_start_sec"], mid - 1, atol=1e-6)
    ids = builder.info.metadata["keystep_ids"]
    assert ids == ["3", "5", "7"]
    assert [r["label"] for r in take_a[:2]] == [ids.index("7"), ids.index("3")]  # centre 1.53 s, then 2.07 s
    assert take_a[0]["channels"][0] == b"imu_left/acc_x" and take_a[0]["imu_rate_hz"] == 800.0
    assert take_a[0]["scenario"] == b"Cooking"


def test_egoexo_splits_and_unusable_takes(egoexo):
    _, builder = egoexo
    val = _records(builder, "validation")
    assert {r["id"][:4] for r in val} == {b"uidB"}
    assert val[0]["label"] == builder.info.metadata["keystep_ids"].index("5")
    assert not [r for r in _records(builder, "train") if r["id"].startswith(b"uidC")]  # no IMU table


def test_egoexo_bad_layout_is_named(tmp_path):
    (tmp_path / "takes.json").write_text(json.dumps([{"take_name": "x"}]))
    with pytest.raises(ValueError, match="takes.json: take #0 has no field 'take_uid'"):
        _build(egoexo4d_imu.Builder, tmp_path, tmp_path / "data", "default")


# -- WEAR -------------------------------------------------------------------------------------------------------------
def _wear_fixture(root):
    os.makedirs(root / "raw" / "inertial")
    os.makedirs(root / "annotations")
    split = {"database": {"sbj_0": {"subset": "Training"}, "sbj_1": {"subset": "Validation"}}}
    (root / "annotations" / "wear_split_1.json").write_text(json.dumps(split))
    rng = np.random.default_rng(1)
    data = {}
    for subject, n in (("sbj_0", 250), ("sbj_1", 150)):
        values = rng.normal(size=(n, 12)).round(4)
        labels = ["jogging"] * (n // 2) + ["null"] * (n - n // 2 - 20) + [""] * 20
        header = ["sbj_id", *wb.CSV_CHANNELS, "label"]
        lines = [",".join(header)] + [",".join([subject[-1], *map(str, v), lab]) for v, lab in zip(values, labels)]
        (root / "raw" / "inertial" / f"{subject}.csv").write_text("\n".join(lines) + "\n")
        data[subject] = (values.astype(np.float32), labels)
    return data


def test_wear_windows_and_labels(tmp_path):
    data = _wear_fixture(tmp_path / "manual")
    builder = _build(wear.Builder, tmp_path / "manual", tmp_path / "data", "split_1")
    train = _records(builder, "train")
    values, labels = data["sbj_0"]
    assert len(train) == 1 + (250 - 100) // 50
    for rec in train:
        start = int(round(rec["start_sec"] * 50))
        np.testing.assert_allclose(rec["imu"], values[start:start + 100])
        names = [lab or "null" for lab in labels[start:start + 100]]
        assert wb.ACTIVITIES[rec["label"]] == max(set(names), key=names.count)
    assert train[0]["label"] == wb.ACTIVITIES.index("jogging")
    assert [c.decode() for c in train[0]["channels"]][:3] == ["right_arm/acc_x", "right_arm/acc_y", "right_arm/acc_z"]
    assert len(_records(builder, "validation")) == 1 + (150 - 100) // 50


def test_wear_bad_cell_is_named(tmp_path):
    _wear_fixture(tmp_path / "manual")
    path = tmp_path / "manual" / "raw" / "inertial" / "sbj_1.csv"
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[2] = "abc"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(wb.WearFormatError, match=r"sbj_1.csv:4: column 'right_arm_acc_y' is not a number"):
        wb.read_inertial_csv(str(path))
