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
def _take(uid, name, start, end, scenario="Cooking"):
    """A takes.json entry with the official field names (docs/data/metadata.md)."""
    return {"root_dir": f"takes/{name}", "take_name": name, "take_uid": uid, "parent_task_name": scenario,
            "task_start_sec": start, "task_end_sec": end, "duration_sec": 12.0,
            "task_timing_annotation_uid": None if start is None else f"timing-{uid}"}


def _segment(start, end, step):
    return {"start_time": start, "end_time": end, "step_id": 1, "step_name": f"step {step}",
            "step_description": "", "is_essential": True, "step_unique_id": step}


def _imu_table(first_ns, seconds, rate, rng):
    n = int(seconds * rate)
    ts = first_ns + np.arange(n) * int(1e9 / rate)
    return np.concatenate([ts[:, None], rng.normal(size=(n, 6))], axis=1)


def _egoexo_fixture(root):
    os.makedirs(root / "annotations")
    takes = [_take("uidA", "cooking_1", 1.0, 10.0),
             _take("uidB", "bike_2", 0.5, 2.0, "Bike Repair"),
             _take("uidC", "noimu_3", 0.0, 5.0),
             _take("uidD", "notiming_4", None, None)]
    (root / "takes.json").write_text(json.dumps(takes))
    segments_a = [_segment(0.0, 3.0, 7), _segment(2.0, 9.0, 3), _segment(0.5, 2.6, 9)]
    train = {"annotations": {"uidA": {"take_uid": "uidA", "take_name": "cooking_1", "scenario": "Cooking",
                                      "segments": segments_a}},
             "taxonomy": {}, "vocabulary": {"3": "Stir", "7": "Add salt", "9": "Wash hands"}}
    val = {"annotations": {"uidB": {"take_uid": "uidB", "take_name": "bike_2", "scenario": "Bike Repair",
                                    "segments": [_segment(0.0, 3.0, 5)]}},
           "taxonomy": {}, "vocabulary": {"5": "Remove wheel"}}
    (root / "annotations" / "keystep_train.json").write_text(json.dumps(train))
    (root / "annotations" / "keystep_val.json").write_text(json.dumps(val))
    feats = root / "features" / "omnivore_video"
    os.makedirs(feats)
    rng = np.random.default_rng(0)
    for uid, n in (("uidA", 8), ("uidB", 3), ("uidC", 2), ("uidD", 2)):
        torch.save(torch.from_numpy(rng.normal(size=(n, 1, 1536)).astype(np.float32)), feats / f"{uid}_aria01_rgb.pt")
    # HIMU-MAE's extraction: 800 Hz left, 1 kHz right; take A's right IMU starts 0.25 s after its left one.
    tables = {"cooking_1": (_imu_table(5_000_000_000, 4.25, 800, rng), _imu_table(5_250_000_000, 4.0, 1000, rng)),
              "bike_2": (_imu_table(7_000_000_000, 3.0, 800, rng), None),
              "notiming_4": (_imu_table(0, 3.0, 800, rng), None)}
    for name, (left, right) in tables.items():
        os.makedirs(root / "features" / "imu_aria01" / name)
        np.save(root / "features" / "imu_aria01" / name / "left.npy", left)
        if right is not None:
            np.save(root / "features" / "imu_aria01" / name / "right.npy", right)
    return takes


@pytest.fixture(scope="module")
def egoexo(tmp_path_factory):
    root = tmp_path_factory.mktemp("egoexo_manual")
    _egoexo_fixture(root)
    builder = _build(egoexo4d_imu.Builder, root, tmp_path_factory.mktemp("egoexo_data"), "default")
    return root, builder


def _window_rows(table, origin, lo, hi):
    return (table[:, 0] >= lo * 1e9 + origin) & (table[:, 0] < hi * 1e9 + origin)


def test_egoexo_windows_follow_feature_timing(egoexo):
    root, builder = egoexo
    train = _records(builder, "train")
    imu = root / "features" / "imu_aria01" / "cooking_1"
    left, right = np.load(imu / "left.npy"), np.load(imu / "right.npy")
    origin = max(left[0, 0], right[0, 0])  # the later first timestamp (the right IMU's here)
    feats = torch.load(root / "features" / "omnivore_video" / "uidA_aria01_rgb.pt").numpy()
    take_a = [r for r in train if r["id"].startswith(b"uidA")]
    # Clip i = [1 + 16/30 i, + 32/30) s; clip 6 starts at 4.2 s, after the IMU data (left ends at 4.0 s): 6 windows.
    assert len(take_a) == 6
    for i, rec in enumerate(take_a):
        mid = 1.0 + 16 / 30 * i + 16 / 30
        rows = _window_rows(left, origin, mid - 1, mid + 1)
        np.testing.assert_allclose(rec["imu"], left[rows, 1:7].astype(np.float32))
        np.testing.assert_allclose(rec["video_features"][0], feats[i, 0])
        np.testing.assert_allclose(rec["window_start_sec"], mid - 1, atol=1e-6)
    ids = builder.info.metadata["keystep_ids"]
    assert ids == ["3", "5", "7", "9"]
    assert builder.info.metadata["keystep_names"] == ["Stir", "Remove wheel", "Add salt", "Wash hands"]
    # The last segment holding the whole 2 s window: [0.53, 2.53] lies in segments 7 and 9 -> 9; the next two windows
    # straddle segment edges -> -1; from [2.13, 4.13] on, segment 3.
    assert [r["label"] for r in take_a] == [ids.index("9"), -1, -1] + [ids.index("3")] * 3
    assert [r["keystep"] for r in take_a[:2]] == [b"9", b""]
    assert take_a[0]["channels"][0] == b"imu_left/acc_x" and take_a[0]["imu_rate_hz"] == 800.0
    assert take_a[0]["scenario"] == b"Cooking"


def test_egoexo_last_clip_is_shifted_to_task_end(egoexo):
    root, builder = egoexo
    val = _records(builder, "validation")
    assert {r["id"][:4] for r in val} == {b"uidB"} and len(val) == 3
    # task 0.5 .. 2.0 s: clip 1 ends at 2.1 s but stays; the last clip (2) is moved to [2.0 - 32/30, 2.0].
    mids = [0.5 + 16 / 30, 0.5 + 16 / 30 + 16 / 30, 2.0 - 16 / 30]
    np.testing.assert_allclose([r["window_start_sec"] for r in val], [m - 1 for m in mids], atol=1e-6)
    assert [r["label"] for r in val] == [builder.info.metadata["keystep_ids"].index("5")] * 3  # all inside [0, 3]
    assert val[0]["scenario"] == b"Bike Repair"


def test_egoexo_unusable_takes_are_skipped(egoexo):
    _, builder = egoexo
    train_ids = {r["id"][:4] for r in _records(builder, "train")}
    assert train_ids == {b"uidA"}  # uidC: no IMU table; uidD: no task timing (HIMU-MAE skips it)


def test_egoexo_keystep_at_uses_whole_window():
    from data_builders.egoexo4d_imu import egoexo4d_imu_dataset_builder as eb
    segs = [_segment(0.0, 3.0, 7), _segment(1.0, 2.5, 8)]
    assert eb.keystep_at(segs, 1.0, 2.5) == "8"
    assert eb.keystep_at(segs, 0.5, 2.5) == "7"
    assert eb.keystep_at(segs, 2.0, 3.5) is None


def test_egoexo_bad_layout_is_named(tmp_path):
    (tmp_path / "takes.json").write_text(json.dumps([{"take_name": "x"}]))
    with pytest.raises(ValueError, match="takes.json: take #0 has no field 'take_uid'"):
        _build(egoexo4d_imu.Builder, tmp_path, tmp_path / "data", "default")


def test_egoexo_bad_segment_is_named(tmp_path):
    from data_builders.egoexo4d_imu import layout
    os.makedirs(tmp_path / "annotations")
    bad = {"annotations": {"u": {"segments": [{"start_time": 0.0, "end_time": 1.0}]}}}
    (tmp_path / "annotations" / "keystep_val.json").write_text(json.dumps(bad))
    with pytest.raises(layout.EgoExo4DLayoutError,
                       match=r"keystep_val.json: annotations\['u'\].segments\[0\] has no field 'step_unique_id'"):
        layout.read_keysteps(str(tmp_path), "val")


# -- WEAR -------------------------------------------------------------------------------------------------------------
# The release's header (WEAR data_creation/3_create_raw_inertial_dataset.py), written out here on purpose.
WEAR_HEADER = ["sbj_id", "right_arm_acc_x", "right_arm_acc_y", "right_arm_acc_z", "right_leg_acc_x", "right_leg_acc_y",
               "right_leg_acc_z", "left_leg_acc_x", "left_leg_acc_y", "left_leg_acc_z", "left_arm_acc_x",
               "left_arm_acc_y", "left_arm_acc_z", "label"]
WEAR_LABEL_DICT = {name: i for i, name in enumerate(wb.ACTIVITIES[1:])}


def _wear_split(validation, subjects=("sbj_0", "sbj_1")):
    database = {s: {"subset": "Validation" if s in validation else "Training", "duration": 5.0, "fps": 60,
                    "annotations": []} for s in subjects}
    return {"version": "Wear", "database": database, "label_dict": WEAR_LABEL_DICT}


def _write_wear_csv(path, subject, values, labels, header=WEAR_HEADER):
    order = [WEAR_HEADER.index(name) for name in header]
    rows = [[subject.split("_")[-1], *map(str, v), lab] for v, lab in zip(values, labels)]
    lines = [",".join(header)] + [",".join(row[k] for k in order) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def _wear_fixture(root, split_dir=("annotations",), csv_dir=("raw", "inertial"), split_name="wear_split_1.json"):
    os.makedirs(root.joinpath(*csv_dir))
    os.makedirs(root.joinpath(*split_dir), exist_ok=True)
    root.joinpath(*split_dir, split_name).write_text(json.dumps(_wear_split({"sbj_1"})))
    rng = np.random.default_rng(1)
    data = {}
    for subject, n in (("sbj_0", 250), ("sbj_1", 150)):
        values = rng.normal(size=(n, 12)).round(4)
        labels = ["jogging"] * (n // 2) + ["null"] * (n - n // 2 - 20) + [""] * 20
        _write_wear_csv(root.joinpath(*csv_dir, f"{subject}.csv"), subject, values, labels)
        data[subject] = (values.astype(np.float32), labels)
    return data


def test_wear_windows_and_labels(tmp_path):
    data = _wear_fixture(tmp_path / "manual")
    builder = _build(wear.Builder, tmp_path / "manual", tmp_path / "data", "split_1")
    train = _records(builder, "train")
    values, labels = data["sbj_0"]
    assert len(train) == 3  # WEAR's rule: starts 0, 50, 100 (< 250 - 100)
    for rec in train:
        start = int(round(rec["start_sec"] * 50))
        np.testing.assert_allclose(rec["imu"], values[start:start + 100])  # CSV column order
        names = [lab or "null" for lab in labels[start:start + 100]]
        assert wb.ACTIVITIES[rec["label"]] == max(set(names), key=names.count)
    assert train[0]["label"] == wb.ACTIVITIES.index("jogging")
    assert [c.decode() for c in train[0]["channels"]] == [
        f"{slot}/acc_{axis}" for slot in ("right_arm", "right_leg", "left_leg", "left_arm") for axis in "xyz"]
    assert len(_records(builder, "validation")) == 1  # start 0 only (< 150 - 100)
    assert builder.info.metadata["split_file"] == os.path.join("annotations", "wear_split_1.json")


def test_wear_imwut_layout(tmp_path):
    data = _wear_fixture(tmp_path / "manual", split_dir=("annotations", "60fps"), csv_dir=("raw", "inertial", "50hz"),
                         split_name="wear_split_18.json")
    builder = _build(wear.Builder, tmp_path / "manual", tmp_path / "data", "split_18")
    val = _records(builder, "validation")
    np.testing.assert_allclose(val[0]["imu"], data["sbj_1"][0][:100])
    assert builder.info.metadata["split_file"] == os.path.join("annotations", "60fps", "wear_split_18.json")


def test_wear_columns_by_name_and_missing_cells(tmp_path):
    rng = np.random.default_rng(2)
    values = rng.normal(size=(5, 12)).round(3)
    header = [WEAR_HEADER[0], *WEAR_HEADER[1:13][::-1], "label"]  # shuffled columns
    path = tmp_path / "sbj_3.csv"
    _write_wear_csv(path, "sbj_3", values, ["burpees"] * 5, header=header)
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[header.index("left_leg_acc_y")] = ""
    lines[2] = ",".join(cells)
    cells = lines[3].split(",")
    cells[header.index("right_arm_acc_x")] = "NaN"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    got, labels = wb.read_inertial_csv(str(path))
    expected = values.astype(np.float32)
    expected[1, wb.CSV_CHANNELS.index("left_leg_acc_y")] = -1.0
    expected[2, wb.CSV_CHANNELS.index("right_arm_acc_x")] = -1.0
    np.testing.assert_allclose(got, expected)
    assert labels == ["burpees"] * 5


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


def test_wear_split_errors_are_named(tmp_path):
    split = _wear_split({"sbj_1"})
    split["label_dict"] = {"jogging": 0, "walking": 1}
    path = tmp_path / "wear_split_2.json"
    path.write_text(json.dumps(split))
    with pytest.raises(wb.WearFormatError, match="wear_split_2.json: label_dict"):
        wb.read_split(str(path))
    with pytest.raises(FileNotFoundError, match="WEAR split file for split 5 is missing"):
        wb.find_layout(str(tmp_path), 5)
