"""HAR dataset builders on tiny fixtures written here in each dataset's original file format.

Each fixture has a few seconds of signal whose values are known in closed form (ramps, constants, sines), written in
the dataset's own units, so the tests can check unit conversions, channel order, label-code mapping, subjects and
window counts against values computed here, independently of the builders.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from imujax.io import har

G = 9.80665
D2R = math.pi / 180.0


def build(builder_cls, root, data_dir, config=None, **config_overrides):
    config = config or builder_cls.BUILDER_CONFIGS[0].name
    if config_overrides:
        base = next(c for c in builder_cls.BUILDER_CONFIGS if c.name == config)
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)
                  if f.name not in ("version", "release_notes", "supported_versions", "tags")}
        config = type(base)(**{**fields, **config_overrides, "name": f"{config}_custom"})
    builder = builder_cls(config=config, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    return builder


def records_of(builder, split="train"):
    source = builder.as_data_source()[split]
    return sorted((source[i] for i in range(len(source))), key=lambda r: r["id"])


def names(record):
    return [c.decode() for c in record["channels"]]


def label_name(builder, record):
    return builder.info.features["label"].int2str(record["label"])


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def build_error(builder_cls, root, tmp_path):
    with pytest.raises(Exception) as info:
        build(builder_cls, root, tmp_path / "out")
    return str(info.value)


# ============================================================================ UCI HAR

from data_builders.uci_har import Builder as UciHarBuilder  # noqa: E402


def write_uci_har(root, rows_per_split=((1, 1), (2, 5)), break_y=False):
    """rows_per_split: per split, (subject, label code) per window; window w's total_acc_x is w + t/1000 (in g)."""
    base = os.path.join(root, "UCI HAR Dataset")
    write(os.path.join(base, "activity_labels.txt"), "1 WALKING\n2 WALKING_UPSTAIRS\n3 WALKING_DOWNSTAIRS\n"
                                                     "4 SITTING\n5 STANDING\n6 LAYING\n")
    t = np.arange(128)
    for split, rows in (("train", rows_per_split[:1]), ("test", rows_per_split[1:])):
        folder = os.path.join(base, split)
        write(os.path.join(folder, f"subject_{split}.txt"), "".join(f"{s}\n" for s, _ in rows))
        write(os.path.join(folder, f"y_{split}.txt"), "".join(f"{7 if break_y else c}\n" for _, c in rows))
        for k, (sensor, axis) in enumerate([(s, a) for s in ("total_acc", "body_acc", "body_gyro") for a in "xyz"]):
            lines = []
            for w in range(len(rows)):
                values = w + k * 0.1 + t / 1000.0
                lines.append(" " + " ".join(f"{v: .8e}" for v in values))
            write(os.path.join(folder, "Inertial Signals", f"{sensor}_{axis}_{split}.txt"), "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def uci_har(tmp_path_factory):
    root = tmp_path_factory.mktemp("uci_har_raw")
    write_uci_har(root, rows_per_split=((1, 1), (2, 5), (2, 6)))
    builder = build(UciHarBuilder, root, tmp_path_factory.mktemp("uci_har"))
    return builder, records_of(builder)


def test_uci_har_windows_units_labels(uci_har):
    builder, records = uci_har
    assert len(records) == 3
    r = records[0]
    assert r["imu"].shape == (128, 6) and r["imu_rate_hz"] == 50.0
    assert names(r) == ["waist/acc_x", "waist/acc_y", "waist/acc_z", "waist/gyro_x", "waist/gyro_y", "waist/gyro_z"]
    t = np.arange(128) / 1000.0
    # total_acc (k=0..2) in g -> m/s²; body_gyro (k=6..8) stays rad/s
    np.testing.assert_allclose(r["imu"][:, 0], (0 + 0.0 + t) * G, rtol=1e-6)
    np.testing.assert_allclose(r["imu"][:, 3], 0 + 0.6 + t, rtol=1e-6)
    by_session = {x["session"].decode(): x for x in records}
    assert label_name(builder, by_session["train_00000"]) == "WALKING"
    assert label_name(builder, by_session["test_00000"]) == "STANDING"
    assert label_name(builder, by_session["test_00001"]) == "LAYING"
    np.testing.assert_allclose(by_session["test_00001"]["imu"][:, 2], (1 + 0.2 + t) * G, rtol=1e-6)
    assert sorted(int(x["subject"]) for x in records) == [1, 2, 2]


def test_uci_har_original_split_and_short_windows(tmp_path):
    root = tmp_path / "raw"
    write_uci_har(root, rows_per_split=((1, 1), (2, 5)))
    builder = build(UciHarBuilder, root, tmp_path / "split", config="original_split")
    assert [int(r["subject"]) for r in records_of(builder, "test")] == [2]
    assert [int(r["subject"]) for r in records_of(builder, "train")] == [1]
    short = build(UciHarBuilder, root, tmp_path / "short", window_seconds=1.0, stride_seconds=0.5)
    # 128 samples -> windows of 50 every 25: starts 0, 25, 50, 75
    assert len(records_of(short)) == 2 * 4


def test_uci_har_bad_inputs(tmp_path):
    root = tmp_path / "raw"
    write_uci_har(root, break_y=True)
    message = build_error(UciHarBuilder, root, tmp_path)
    assert "y_train.txt" in message and "unknown label code 7" in message
    os.remove(root / "UCI HAR Dataset" / "train" / "Inertial Signals" / "body_gyro_y_train.txt")
    message = build_error(UciHarBuilder, root, tmp_path)
    assert "body_gyro_y_train.txt" in message and "not found" in message
    write(str(root / "UCI HAR Dataset" / "train" / "Inertial Signals" / "body_gyro_y_train.txt"), "1 2 3\n")
    message = build_error(UciHarBuilder, root, tmp_path)
    assert "body_gyro_y_train.txt: line 1 has 3 columns, expected 128" in message


# ============================================================================ WISDM 2019

from data_builders.wisdm import Builder as WisdmBuilder  # noqa: E402


def write_wisdm(root, subjects=(1600, 1601), codes=("A", "D"), seconds=4.0, bad_code=None):
    """Per subject and activity a block of `seconds` at 20 Hz; acc x = 1 + t, gyro z = 0.5 t (ns timestamps)."""
    raw = os.path.join(root, "wisdm-dataset", "raw")
    for device in ("phone", "watch"):
        for sensor in ("accel", "gyro"):
            for subject in subjects:
                lines, t0 = [], 1_000_000_000_000
                for k, code in enumerate(codes):
                    n = int(seconds * 20)
                    for i in range(n):
                        t = i / 20.0
                        stamp = t0 + k * 10**12 + int(round(t * 1e9)) + (3_000_000 if sensor == "gyro" else 0)
                        x, z = (1.0 + t, 9.8) if sensor == "accel" else (0.1, 0.5 * t)
                        written = bad_code if (bad_code and k == 1 and i == 3) else code
                        lines.append(f"{subject},{written},{stamp},{x:.6f},{0.25:.6f},{z:.6f};")
                write(os.path.join(raw, device, sensor, f"data_{subject}_{sensor}_{device}.txt"),
                      "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def wisdm(tmp_path_factory):
    root = tmp_path_factory.mktemp("wisdm_raw")
    write_wisdm(root)
    builder = build(WisdmBuilder, root, tmp_path_factory.mktemp("wisdm"))
    return builder, records_of(builder)


def test_wisdm_alignment_labels_subjects(wisdm):
    builder, records = wisdm
    # common span per block: 0.003..3.95 s -> 79 grid points at 20 Hz -> 2 s windows every 1 s: starts 0, 20
    assert len(records) == 2 * 2 * 2
    r = records[0]
    assert names(r) == [f"pocket/{s}_{a}" for s in ("acc", "gyro") for a in "xyz"]
    assert r["imu"].shape == (40, 6)
    grid = 0.003 + np.arange(40) / 20.0  # the common span starts at the first gyro sample
    np.testing.assert_allclose(r["imu"][:, 0], 1.0 + grid, atol=1e-5)
    np.testing.assert_allclose(r["imu"][:, 5], 0.5 * (grid - 0.003), atol=1e-5)
    assert collections.Counter(label_name(builder, x) for x in records) == {"walking": 4, "sitting": 4}
    assert collections.Counter(int(x["subject"]) for x in records) == {1600: 4, 1601: 4}


def test_wisdm_watch_config_and_errors(tmp_path):
    root = tmp_path / "raw"
    write_wisdm(root, subjects=(1600,), codes=("B",))
    watch = build(WisdmBuilder, root, tmp_path / "w", config="watch")
    assert names(records_of(watch)[0])[0] == "wrist/acc_x"
    write_wisdm(root, subjects=(1600,), codes=("B", "C"), bad_code="N")
    message = build_error(WisdmBuilder, root, tmp_path)
    assert "data_1600_accel_phone.txt" in message and "unknown activity code 'N'" in message
    path = root / "wisdm-dataset" / "raw" / "phone" / "accel" / "data_1600_accel_phone.txt"
    write(str(path), "1600,A,1000,1.0,2.0;\n")
    assert "line 1 has 5 fields, expected 6" in build_error(WisdmBuilder, root, tmp_path)
    os.remove(root / "wisdm-dataset" / "raw" / "phone" / "gyro" / "data_1600_gyro_phone.txt")
    assert "subject 1600 has no phone gyro file" in build_error(WisdmBuilder, root, tmp_path)


# ============================================================================ PAMAP2

from data_builders.pamap2 import Builder as Pamap2Builder  # noqa: E402
from data_builders.pamap2 import parsing as pamap2_parsing  # noqa: E402


def pamap2_rows(seconds=5.0, codes=(0, 1, 4), nan_rows=(), hr_every=11):
    """54-column rows at 100 Hz; per IMU i: acc16 = (i + t, 2, 9.8), gyro = (0.1 i, 0, t), mag = (30, -5, 20 + i)."""
    n = int(seconds * 100)
    rows = []
    for j in range(n):
        t = j / 100.0
        code = codes[min(j * len(codes) // n, len(codes) - 1)]
        row = [5.0 + t, code, (80 + j / 10) if j % hr_every == 0 else math.nan]
        for i in range(3):
            row += [32.0, i + t, 2.0, 9.8, i + t + 0.01, 2.0, 9.8, 0.1 * i, 0.0, t, 30.0, -5.0, 20.0 + i,
                    1.0, 0.0, 0.0, 0.0]
        if j in nan_rows:
            row[3:20] = [math.nan] * 17
        rows.append(row)
    return rows


def write_pamap2(root, subject, rows):
    write(os.path.join(root, "PAMAP2_Dataset", "Protocol", f"subject{subject}.dat"),
          "\n".join(" ".join("NaN" if isinstance(v, float) and math.isnan(v) else f"{v:.6f}" if isinstance(v, float)
                             else str(v) for v in row) for row in rows) + "\n")


@pytest.fixture(scope="module")
def pamap2(tmp_path_factory):
    root = tmp_path_factory.mktemp("pamap2_raw")
    write_pamap2(root, 101, pamap2_rows(nan_rows=(250, 251, 252)))
    write_pamap2(root, 102, pamap2_rows(codes=(24,)))
    builder = build(Pamap2Builder, root, tmp_path_factory.mktemp("pamap2"))
    return builder, records_of(builder)


def test_pamap2_channels_nan_interpolation_heart_rate(pamap2):
    builder, records = pamap2
    r = records[0]
    assert r["imu"].shape == (200, 27)
    assert names(r)[:9] == [f"hand/{s}_{a}" for s in ("acc", "gyro", "mag") for a in "xyz"]
    assert names(r)[9] == "chest/acc_x" and names(r)[-1] == "ankle/mag_z"
    by_id = {x["id"].decode(): x for x in records}
    # subject 101: 5 s = 500 samples, starts 0..300 step 100 -> 4 windows; first third (code 0) is unannotated,
    # so window 0 (samples 0-199, 167 unannotated) is dropped.
    s101 = sorted(k for k in by_id if k.startswith("protocol_101"))
    assert s101 == ["protocol_101_00_w0001", "protocol_101_00_w0002", "protocol_101_00_w0003"]
    w = by_id["protocol_101_00_w0001"]  # samples 100..299, includes the interpolated NaN rows 250-252
    t = (100 + np.arange(200)) / 100.0
    np.testing.assert_allclose(w["imu"][:, 0], 0 + t, atol=1e-5)          # hand acc x (linear, so exact)
    np.testing.assert_allclose(w["imu"][:, 5], t, atol=1e-5)              # hand gyro z
    np.testing.assert_allclose(w["imu"][:, 18 + 8], 22.0, atol=1e-5)      # ankle mag z
    assert label_name(builder, w) == "lying"  # samples 167..332 lying, 333.. walking: majority lying
    assert label_name(builder, by_id["protocol_101_00_w0003"]) == "walking"
    # heart rate held between readings every 11 samples, averaged over the window
    j = np.arange(100, 300)
    np.testing.assert_allclose(w["heart_rate_bpm"], np.mean(80 + (j - j % 11) / 10), rtol=1e-5)
    assert {int(x["subject"]) for x in records} == {101, 102}
    assert {label_name(builder, x) for x in records if x["subject"] == 102} == {"rope_jumping"}


def test_pamap2_long_gap_splits_and_errors(tmp_path):
    rows = pamap2_rows(seconds=5.0, codes=(3,), nan_rows=tuple(range(230, 260)))
    sessions = pamap2_parsing.read_dat(_written(tmp_path, rows), 105, "Protocol")
    assert [len(s.signals) for s in sessions] == [230, 240]
    bad = pamap2_rows(seconds=1.0, codes=(8,))
    root = tmp_path / "raw"
    write_pamap2(root, 103, bad)
    message = build_error(Pamap2Builder, root, tmp_path)
    assert "subject103.dat" in message and "unknown activity id 8" in message
    write_pamap2(root, 103, [r[:53] for r in pamap2_rows(seconds=1.0)])
    assert "subject103.dat: line 1 has 53 columns, expected 54" in build_error(Pamap2Builder, root, tmp_path)


def _written(tmp_path, rows):
    write_pamap2(tmp_path / "single", 105, rows)
    return str(tmp_path / "single" / "PAMAP2_Dataset" / "Protocol" / "subject105.dat")


# ============================================================================ MHEALTH

from data_builders.mhealth import Builder as MhealthBuilder  # noqa: E402


def write_mhealth(root, subject, seconds=4.0, codes=(0, 4, 11), bad_code=None, columns=24):
    n = int(seconds * 50)
    lines = []
    for j in range(n):
        t = j / 50.0
        code = bad_code if (bad_code is not None and j == 7) else codes[min(j * len(codes) // n, len(codes) - 1)]
        row = [1 + t, 2.0, 9.8, 0.1, -0.2,                 # chest acc, ECG 1-2
               3 + t, 0.0, 9.8, 90.0, -45.0, 10 * t, 0.5, 0.6, 0.7,   # ankle acc, gyro (deg/s), mag
               5 + t, 1.0, 9.8, 180.0, 0.0, -30.0, 0.1, 0.2, 0.3, code]
        lines.append("\t".join(f"{v:.6g}" for v in row[:columns]))
    write(os.path.join(root, "MHEALTHDATASET", f"mHealth_subject{subject}.log"), "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def mhealth(tmp_path_factory):
    root = tmp_path_factory.mktemp("mhealth_raw")
    write_mhealth(root, 1)
    write_mhealth(root, 2, codes=(9,))
    builder = build(MhealthBuilder, root, tmp_path_factory.mktemp("mhealth"))
    return builder, records_of(builder)


def test_mhealth_units_channels_labels(mhealth):
    builder, records = mhealth
    r = records[0]
    assert r["imu"].shape == (100, 21)
    assert names(r)[:3] == ["chest/acc_x", "chest/acc_y", "chest/acc_z"]
    assert names(r)[3:12] == [f"left_ankle/{s}_{a}" for s in ("acc", "gyro", "mag") for a in "xyz"]
    assert names(r)[12] == "right_lower_arm/acc_x"
    s1 = {x["id"].decode(): x for x in records if x["subject"] == 1}
    # 200 samples, windows of 100 every 50: starts 0,50,100 (start 0: 67 of 100 null -> dropped)
    assert sorted(s1) == ["subject1_w0001", "subject1_w0002"]
    w = s1["subject1_w0001"]
    t = (50 + np.arange(100)) / 50.0
    np.testing.assert_allclose(w["imu"][:, 0], 1 + t, atol=1e-4)
    np.testing.assert_allclose(w["imu"][:, 6:9], np.broadcast_to([90 * D2R, -45 * D2R, 0], (100, 3)) +
                               np.stack([0 * t, 0 * t, 10 * t * D2R], 1), atol=1e-4)   # ankle gyro deg/s -> rad/s
    np.testing.assert_allclose(w["imu"][:, 15], 180 * D2R, atol=1e-5)
    np.testing.assert_allclose(w["imu"][:, 18:21], np.broadcast_to([0.1, 0.2, 0.3], (100, 3)), atol=1e-6)
    assert label_name(builder, w) == "walking"
    assert label_name(builder, s1["subject1_w0002"]) == "running"
    assert {label_name(builder, x) for x in records if x["subject"] == 2} == {"cycling"}


def test_mhealth_errors(tmp_path):
    root = tmp_path / "raw"
    write_mhealth(root, 3, bad_code=13)
    message = build_error(MhealthBuilder, root, tmp_path)
    assert "mHealth_subject3.log" in message and "unknown label code 13 (row 8)" in message
    write_mhealth(root, 3, columns=23)
    assert "mHealth_subject3.log: line 1 has 23 columns, expected 24" in build_error(MhealthBuilder, root, tmp_path)


# ============================================================================ UniMiB SHAR

from scipy import io as scipy_io  # noqa: E402

from data_builders.unimib_shar import Builder as UnimibBuilder  # noqa: E402


def write_unimib(root, labels, data=None):
    folder = os.path.join(root, "UniMiB-SHAR", "data")
    os.makedirs(folder, exist_ok=True)
    n = len(labels)
    if data is None:  # row r: x = r + t, y = -9.8, z = sin(t) with t in seconds
        t = np.arange(151) / 50.0
        data = np.stack([np.concatenate([r + t, np.full(151, -9.8), np.sin(t)]) for r in range(n)])
    scipy_io.savemat(os.path.join(folder, "acc_data.mat"), {"acc_data": data})
    scipy_io.savemat(os.path.join(folder, "acc_labels.mat"), {"acc_labels": np.asarray(labels, np.float64)})
    scipy_io.savemat(os.path.join(folder, "acc_names.mat"), {"acc_names": np.array(["x"], dtype=object)})


@pytest.fixture(scope="module")
def unimib(tmp_path_factory):
    root = tmp_path_factory.mktemp("unimib_raw")
    write_unimib(root, [(3, 1, 1), (16, 2, 1), (17, 2, 2)])
    builder = build(UnimibBuilder, root, tmp_path_factory.mktemp("unimib"))
    return builder, records_of(builder)


def test_unimib_mat_windows(unimib):
    builder, records = unimib
    assert len(records) == 3
    t = np.arange(151) / 50.0
    for row, (r, (name, subject)) in enumerate(zip(records, [("Walking", 1), ("Syncope", 2), ("FallingLeft", 2)])):
        assert r["imu"].shape == (151, 3) and names(r) == ["pocket/acc_x", "pocket/acc_y", "pocket/acc_z"]
        np.testing.assert_allclose(r["imu"][:, 0], row + t, atol=1e-5)
        np.testing.assert_allclose(r["imu"][:, 2], np.sin(t), atol=1e-6)
        assert label_name(builder, r) == name and int(r["subject"]) == subject


def test_unimib_errors(tmp_path):
    root = tmp_path / "raw"
    write_unimib(root, [(18, 1, 1)])
    message = build_error(UnimibBuilder, root, tmp_path)
    assert "acc_labels.mat" in message and "unknown activity id 18" in message
    write_unimib(root, [(1, 1, 1)], data=np.zeros((1, 450)))
    assert "acc_data.mat: acc_data has shape (1, 450), expected [N, 453]" in build_error(UnimibBuilder, root, tmp_path)
    os.remove(root / "UniMiB-SHAR" / "data" / "acc_labels.mat")
    assert "acc_labels.mat: file not found" in build_error(UnimibBuilder, root, tmp_path)


# ============================================================================ DSADS

from data_builders.dsads import Builder as DsadsBuilder  # noqa: E402


def write_dsads(root, activity, subject, segments=2, columns=45, rows=125):
    """Segment k row i: column c = c + (k * 125 + i) / 25 (a ramp continuing across segments)."""
    for k in range(segments):
        n = k * 125 + np.arange(rows)
        table = np.arange(columns)[None, :] + (n / 25.0)[:, None]
        write(os.path.join(root, "data", f"a{activity:02d}", f"p{subject}", f"s{k + 1:02d}.txt"),
              "\n".join(",".join(f"{v:.5f}" for v in row) for row in table) + "\n")


@pytest.fixture(scope="module")
def dsads(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsads_raw")
    write_dsads(root, 1, 1)
    write_dsads(root, 19, 1)
    write_dsads(root, 12, 8, segments=3)
    builder = build(DsadsBuilder, root, tmp_path_factory.mktemp("dsads"))
    return builder, records_of(builder)


def test_dsads_segments_joined(dsads):
    builder, records = dsads
    # 2 segments = 10 s -> 5 s windows every 2.5 s: 3; 3 segments = 15 s: 5
    assert collections.Counter(r["session"].decode() for r in records) == {"a01_p1": 3, "a19_p1": 3, "a12_p8": 5}
    r = next(x for x in records if x["id"] == b"a12_p8_w0003")   # stride round(62.5) = 62: starts at sample 186
    assert r["imu"].shape == (125, 45)
    assert names(r)[:9] == [f"torso/{s}_{a}" for s in ("acc", "gyro", "mag") for a in "xyz"]
    assert names(r)[36:39] == ["left_leg/acc_x", "left_leg/acc_y", "left_leg/acc_z"]
    assert r["start_seconds"] == pytest.approx(186 / 25.0)
    np.testing.assert_allclose(r["imu"][:, 44], 44 + (186 + np.arange(125)) / 25.0, atol=1e-4)
    assert label_name(builder, r) == "running_on_treadmill" and int(r["subject"]) == 8
    assert {label_name(builder, x) for x in records if x["session"] == b"a19_p1"} == {"playing_basketball"}


def test_dsads_errors(tmp_path):
    root = tmp_path / "raw"
    write_dsads(root, 2, 3, columns=44)
    assert "s01.txt: line 1 has 44 columns, expected 45" in build_error(DsadsBuilder, root, tmp_path)
    write_dsads(root, 2, 3, segments=3)
    os.remove(root / "data" / "a02" / "p3" / "s02.txt")
    assert "p3: segment file(s) ['s02.txt'] missing" in build_error(DsadsBuilder, root, tmp_path)
    write_dsads(root, 20, 3)
    assert "a20: unknown activity code 20" in build_error(DsadsBuilder, root, tmp_path)


# ============================================================================ MotionSense

from data_builders.motionsense import Builder as MotionSenseBuilder  # noqa: E402

MOTIONSENSE_HEADER = (",attitude.roll,attitude.pitch,attitude.yaw,gravity.x,gravity.y,gravity.z,rotationRate.x,"
                      "rotationRate.y,rotationRate.z,userAcceleration.x,userAcceleration.y,userAcceleration.z")


def write_motionsense(root, folder, subject, seconds=3.0, drop_column=False):
    lines = [MOTIONSENSE_HEADER]
    for i in range(int(seconds * 50)):
        t = i / 50.0
        row = [i, 0.1, 0.2, 0.3, 0.0, -1.0, 0.0, 2.0 * t, 0.5, -0.5, 0.1 * t, 0.05, -0.2]
        if drop_column:
            row = row[:-1]
        lines.append(",".join(str(v) for v in row))
    write(os.path.join(root, "A_DeviceMotion_data", folder, f"sub_{subject}.csv"), "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def motionsense(tmp_path_factory):
    root = tmp_path_factory.mktemp("motionsense_raw")
    write_motionsense(root, "wlk_7", 1)
    write_motionsense(root, "wlk_7", 24)
    write_motionsense(root, "std_14", 24)
    builder = build(MotionSenseBuilder, root, tmp_path_factory.mktemp("motionsense"))
    return builder, records_of(builder)


def test_motionsense_units_and_labels(motionsense):
    builder, records = motionsense
    assert len(records) == 3 * 2  # 3 s -> 2 s windows every 1 s
    r = next(x for x in records if x["id"] == b"wlk_7_sub24_w0001")
    assert names(r) == [f"pocket/{s}_{a}" for s in ("acc", "gyro") for a in "xyz"]
    t = (50 + np.arange(100)) / 50.0
    np.testing.assert_allclose(r["imu"][:, 0], 0.1 * t * G, atol=1e-4)       # (gravity + user) in g -> m/s²
    np.testing.assert_allclose(r["imu"][:, 1], (-1.0 + 0.05) * G, atol=1e-4)
    np.testing.assert_allclose(r["imu"][:, 3], 2.0 * t, atol=1e-5)            # rad/s as stored
    assert label_name(builder, r) == "walking"
    assert {label_name(builder, x) for x in records if x["session"] == b"std_14_sub24"} == {"standing"}
    assert collections.Counter(int(x["subject"]) for x in records) == {1: 2, 24: 4}


def test_motionsense_errors(tmp_path):
    root = tmp_path / "raw"
    write_motionsense(root, "wlk_7", 2, drop_column=True)
    assert "sub_2.csv: line 2 has 12 columns, the header has 13" in build_error(MotionSenseBuilder, root, tmp_path)
    write_motionsense(root, "wlk_7", 2)
    write_motionsense(root, "run_3", 2)
    assert "run_3: unknown activity code 'run'" in build_error(MotionSenseBuilder, root, tmp_path)


# ============================================================================ HHAR

from data_builders.hhar import Builder as HharBuilder  # noqa: E402

HHAR_HEADER = "Index,Arrival_Time,Creation_Time,x,y,z,User,Model,Device,gt"


def hhar_rows(user, model, device, sensor, rate, seconds, gts, t0_ns, offset_ns=0):
    """Rows at `rate` Hz; acc x = 2 t, gyro z = -t (t in s since t0); gt switches evenly through `gts`."""
    n = int(seconds * rate)
    rows = []
    for i in range(n):
        t = i / rate
        x, z = (2 * t, 9.8) if sensor == "acc" else (0.0, -t)
        gt = gts[min(i * len(gts) // n, len(gts) - 1)]
        rows.append((t0_ns + offset_ns + int(round(t * 1e9)), x, 0.5, z, user, model, device, gt))
    return rows


def write_hhar(root, phone_rows_acc, phone_rows_gyro, watch=True):
    base = os.path.join(root, "Activity recognition exp")
    for name, rows in (("Phones_accelerometer", phone_rows_acc), ("Phones_gyroscope", phone_rows_gyro),
                       ("Watch_accelerometer", phone_rows_acc if watch else []),
                       ("Watch_gyroscope", phone_rows_gyro if watch else [])):
        lines = [HHAR_HEADER]
        # rows arrive slightly out of creation order: swap each pair
        ordered = [r for pair in zip(rows[1::2], rows[0::2]) for r in pair] + (rows[-1:] if len(rows) % 2 else [])
        for k, (stamp, x, y, z, user, model, device, gt) in enumerate(ordered):
            lines.append(f"{k},{stamp // 10**6 + 7},{stamp},{x:.6f},{y},{z:.6f},{user},{model},{device},{gt}")
        write(os.path.join(base, f"{name}.csv"), "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def hhar(tmp_path_factory):
    root = tmp_path_factory.mktemp("hhar_raw")
    t0 = 1_424_696_633_908_000_000
    acc = (hhar_rows("a", "nexus4", "nexus4_1", "acc", 200, 4.0, ("stand", "walk"), t0)
           + hhar_rows("a", "nexus4", "nexus4_1", "acc", 200, 3.0, ("bike",), t0 + 60 * 10**9)  # after a pause
           + hhar_rows("c", "s3mini", "s3mini_2", "acc", 100, 3.0, ("null", "stairsup"), t0))
    gyro = (hhar_rows("a", "nexus4", "nexus4_1", "gyro", 200, 4.0, ("stand",), t0, offset_ns=2_000_000)
            + hhar_rows("a", "nexus4", "nexus4_1", "gyro", 200, 3.0, ("bike",), t0 + 60 * 10**9)
            + hhar_rows("c", "s3mini", "s3mini_2", "gyro", 100, 3.0, ("stairsup",), t0))
    write_hhar(root, acc, gyro)
    builder = build(HharBuilder, root, tmp_path_factory.mktemp("hhar"))
    return builder, records_of(builder)


def test_hhar_resampling_sessions_labels(hhar):
    builder, records = hhar
    sessions = collections.Counter(r["session"].decode() for r in records)
    # a/nexus4_1 first recording: common span 0.002..3.995 s -> 200 samples at 50 Hz -> starts 0, 50, 100 -> 3;
    # second recording (after the pause) 0..2.995 s -> 150 samples -> 2; c: 150 samples -> 2 windows, of which
    # window 0 (0..2 s) is 75 % null (first 1.5 s) and is dropped
    assert sessions == {"a_nexus4_1_000": 3, "a_nexus4_1_001": 2, "c_s3mini_2_000": 1}
    r = next(x for x in records if x["id"] == b"a_nexus4_1_000_w0001")
    assert r["imu"].shape == (100, 6) and r["imu_rate_hz"] == 50.0
    assert names(r) == [f"waist/{s}_{a}" for s in ("acc", "gyro") for a in "xyz"]
    grid = 0.002 + (50 + np.arange(100)) / 50.0
    np.testing.assert_allclose(r["imu"][:, 0], 2 * grid, atol=1e-4)       # linear, so interpolation is exact
    np.testing.assert_allclose(r["imu"][:, 5], -(grid - 0.002), atol=1e-4)
    # labels from the accelerometer rows: stand for t < 2 s, walk after. Window 1 (1.002..2.982 s) is a 50/50 tie,
    # which goes to the smaller class index (stand); window 2 is all walk.
    assert label_name(builder, r) == "stand"
    assert label_name(builder, next(x for x in records if x["id"] == b"a_nexus4_1_000_w0002")) == "walk"
    assert {label_name(builder, x) for x in records if x["session"] == b"a_nexus4_1_001"} == {"bike"}
    assert [x["id"] for x in records if x["subject"] == 3] == [b"c_s3mini_2_000_w0001"]


def test_hhar_watch_config_and_errors(tmp_path):
    t0 = 10**18
    acc = hhar_rows("i", "gear", "gear_1", "acc", 100, 3.0, ("sit",), t0)
    gyro = hhar_rows("i", "gear", "gear_1", "gyro", 100, 3.0, ("sit",), t0)
    root = tmp_path / "raw"
    write_hhar(root, acc, gyro)
    watch = build(HharBuilder, root, tmp_path / "w", config="watches")
    r = records_of(watch)[0]
    assert names(r)[0] == "wrist/acc_x" and int(r["subject"]) == 9 and label_name(watch, r) == "sit"
    write_hhar(root, acc[:5] + hhar_rows("i", "gear", "gear_1", "acc", 100, 0.1, ("jump",), t0 + 10**9), gyro)
    message = build_error(HharBuilder, root, tmp_path)
    assert "Phones_accelerometer.csv: line" in message and "unknown activity 'jump'" in message
    write_hhar(root, acc, gyro)
    path = root / "Activity recognition exp" / "Phones_gyroscope.csv"
    write(str(path), HHAR_HEADER + "\n1,2,3,0.1,0.2,i,gear,gear_1,sit\n")
    assert "Phones_gyroscope.csv: line 2 has 9 columns, expected 10" in build_error(HharBuilder, root, tmp_path)


# ============================================================================ RealWorld HAR

from data_builders.realworld_har import Builder as RealWorldBuilder  # noqa: E402
from data_builders.realworld_har import parsing as realworld_parsing  # noqa: E402


def write_realworld(root, proband, activity, seconds=4.0, positions=realworld_parsing.POSITIONS, part=None,
                    skip=()):
    """Per (sensor s, position p): x = 100 s_index + 10 p_index + t, y = t0 offset check, z = 1; 50 Hz, ms times."""
    folder = os.path.join(root, "realworld2016_dataset", f"proband{proband}", "data")
    os.makedirs(folder, exist_ok=True)
    suffix = f"_{part}" if part else ""
    for si, sensor in enumerate(("acc", "gyr", "mag")):
        with zipfile.ZipFile(os.path.join(folder, f"{sensor}_{activity}{suffix}_csv.zip"), "w") as archive:
            for pi, position in enumerate(positions):
                if (sensor, position) in skip:
                    continue
                lines = ["id,attr_time,attr_x,attr_y,attr_z"]
                start_ms = 1_435_000_000_000 + 7 * pi + 3 * si   # streams start a few ms apart
                for i in range(int(seconds * 50)):
                    t_ms = start_ms + 20 * i
                    t = (t_ms - 1_435_000_000_000) / 1000.0
                    lines.append(f"{i + 1},{t_ms},{100 * si + 10 * pi + t:.6f},{2.0 * t:.6f},1.0")
                member = ("Gyroscope" if sensor == "gyr" and proband == 2 else sensor)
                archive.writestr(f"{member}_{activity}{suffix}_{position}.csv", "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def realworld(tmp_path_factory):
    root = tmp_path_factory.mktemp("realworld_raw")
    write_realworld(root, 1, "walking")
    write_realworld(root, 2, "climbingup", part=2)
    builder = build(RealWorldBuilder, root, tmp_path_factory.mktemp("realworld"))
    waist = build(RealWorldBuilder, root, tmp_path_factory.mktemp("realworld_waist"), config="waist")
    return builder, records_of(builder), records_of(waist)


def test_realworld_alignment_channels(realworld):
    builder, records, waist = realworld
    # streams start up to 6*7 + 2*3 = 48 ms apart and end 3.98 s after their start:
    # common span 0.048..3.98 s -> 197 samples at 50 Hz -> 2 s windows every 1 s: starts 0 and 50
    assert collections.Counter(r["session"].decode() for r in records) == {"proband1_walking_1": 2,
                                                                           "proband2_climbingup_2": 2}
    r = next(x for x in records if x["id"] == b"proband1_walking_1_w0001")
    assert r["imu"].shape == (100, 63)
    assert names(r)[:9] == ["chest/acc_x", "chest/acc_y", "chest/acc_z", "chest/gyro_x", "chest/gyro_y",
                            "chest/gyro_z", "chest/mag_x", "chest/mag_y", "chest/mag_z"]
    assert names(r)[-3:] == ["waist/mag_x", "waist/mag_y", "waist/mag_z"]
    grid = 0.048 + (50 + np.arange(100)) / 50.0  # seconds after 1435000000000 ms
    for pi in range(7):
        for si in range(3):
            np.testing.assert_allclose(r["imu"][:, 9 * pi + 3 * si], 100 * si + 10 * pi + grid, atol=1e-4)
            np.testing.assert_allclose(r["imu"][:, 9 * pi + 3 * si + 1], 2 * grid, atol=1e-4)
    assert label_name(builder, r) == "walking"
    assert {label_name(builder, x) for x in records if x["subject"] == 2} == {"climbing_up"}
    assert names(waist[0]) == [f"waist/{s}_{a}" for s in ("acc", "gyro", "mag") for a in "xyz"]
    assert waist[0]["imu"].shape == (100, 9)


def test_realworld_errors(tmp_path):
    root = tmp_path / "raw"
    write_realworld(root, 3, "running", skip={("gyr", "head")})
    message = build_error(RealWorldBuilder, root, tmp_path)
    assert "gyr_running_csv.zip: no gyr csv for position 'head'" in message
    root = tmp_path / "raw2"
    write_realworld(root, 3, "swimming")
    assert "swimming_csv.zip: unknown activity 'swimming'" in build_error(RealWorldBuilder, root, tmp_path)


# ============================================================================ HAPT

from data_builders.hapt import Builder as HaptBuilder  # noqa: E402


def write_hapt(root, experiments, labels_rows, acc_rows=None):
    """experiments: (exp, user, n); acc x = 0.01 i (g), gyro z = -0.02 i (rad/s). labels_rows: 1-based inclusive."""
    raw = os.path.join(root, "RawData")
    for exp, user, n in experiments:
        i = np.arange(n)
        acc = np.stack([0.01 * i, np.zeros(n), np.ones(n)], 1)
        gyro = np.stack([np.zeros(n), np.full(n, 0.3), -0.02 * i], 1)
        for name, table in (("acc", acc if acc_rows is None else acc[:acc_rows]), ("gyro", gyro)):
            write(os.path.join(raw, f"{name}_exp{exp:02d}_user{user:02d}.txt"),
                  "\n".join(" ".join(f"{v:.8e}" for v in row) for row in table) + "\n")
    write(os.path.join(raw, "labels.txt"), "\n".join(" ".join(str(v) for v in row) for row in labels_rows) + "\n")


@pytest.fixture(scope="module")
def hapt(tmp_path_factory):
    root = tmp_path_factory.mktemp("hapt_raw")
    # exp 1 (user 1): 400 samples; walking 1-150, unannotated 151-200, STAND_TO_SIT 201-400
    # exp 2 (user 2): 250 samples, LAYING 1-250
    write_hapt(root, [(1, 1, 400), (2, 2, 250)], [(1, 1, 1, 1, 150), (1, 1, 7, 201, 400), (2, 2, 6, 1, 250)])
    builder = build(HaptBuilder, root, tmp_path_factory.mktemp("hapt"))
    return builder, records_of(builder)


def test_hapt_labels_units(hapt):
    builder, records = hapt
    by_id = {r["id"].decode(): r for r in records}
    # exp 1: windows of 100 every 50 -> starts 0..300 (7 windows); window 150-249 is 50 % unannotated: kept
    # (not more than half), label = majority of the annotated part (STAND_TO_SIT)
    assert [label_name(builder, by_id[f"exp01_user01_w{k:04d}"]) for k in range(7)] == \
        ["WALKING", "WALKING", "WALKING", "STAND_TO_SIT", "STAND_TO_SIT", "STAND_TO_SIT", "STAND_TO_SIT"]
    r = by_id["exp01_user01_w0001"]
    i = 50 + np.arange(100)
    assert names(r) == [f"waist/{s}_{a}" for s in ("acc", "gyro") for a in "xyz"]
    np.testing.assert_allclose(r["imu"][:, 0], 0.01 * i * G, rtol=1e-5)    # g -> m/s²
    np.testing.assert_allclose(r["imu"][:, 2], G, rtol=1e-6)
    np.testing.assert_allclose(r["imu"][:, 5], -0.02 * i, rtol=1e-5)       # rad/s as stored
    assert {label_name(builder, x) for x in records if x["subject"] == 2} == {"LAYING"}
    assert len(records) == 7 + 4


def test_hapt_errors(tmp_path):
    root = tmp_path / "raw"
    write_hapt(root, [(1, 1, 200)], [(1, 1, 13, 1, 100)])
    message = build_error(HaptBuilder, root, tmp_path)
    assert "labels.txt" in message and "unknown activity id 13" in message
    write_hapt(root, [(1, 1, 200)], [(1, 1, 1, 1, 300)])
    assert "interval 1-300 is outside its 200 samples" in build_error(HaptBuilder, root, tmp_path)
    write_hapt(root, [(1, 1, 200)], [(1, 1, 1, 1, 100)], acc_rows=150)
    assert "acc_exp01_user01.txt: 150 rows but" in build_error(HaptBuilder, root, tmp_path)


# ============================================================================ MobiAct

from data_builders.mobiact import Builder as MobiActBuilder  # noqa: E402

MOBIACT_HEADER = "timestamp,rel_time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z,azimuth,pitch,roll,label"


def write_mobiact(root, code, subject, trial, codes, seconds=4.0, rate=200.0, jitter=True):
    """Irregular rows (~rate Hz): acc x = 3 rel_time, gyro y = 1 - rel_time; label codes switch evenly."""
    n = int(seconds * rate)
    rel = np.arange(n) / rate + ((np.arange(n) % 3) * 0.0007 if jitter else 0.0)
    lines = [MOBIACT_HEADER]
    for i, t in enumerate(rel):
        label = codes[min(i * len(codes) // n, len(codes) - 1)]
        lines.append(f"{1_900_000_000_000 + int(t * 1e9)},{t:.6f},{3 * t:.6f},0.5,9.7,0.0,{1 - t:.6f},0.1,"
                     f"12.0,3.0,4.0,{label}")
    write(os.path.join(root, "Annotated Data", code, f"{code}_{subject}_{trial}_annotated.csv"),
          "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def mobiact(tmp_path_factory):
    root = tmp_path_factory.mktemp("mobiact_raw")
    write_mobiact(root, "WAL", 1, 1, ("WAL",))
    write_mobiact(root, "FOL", 7, 2, ("STD", "FOL", "LYI", "LYI"))
    builder = build(MobiActBuilder, root, tmp_path_factory.mktemp("mobiact"))
    return builder, records_of(builder)


def test_mobiact_resampling_and_labels(mobiact):
    builder, records = mobiact
    # rel_time 0 .. 3.995 (+ jitter) -> 200 grid points at 50 Hz -> starts 0, 50, 100 -> 3 windows per trial
    assert collections.Counter(r["session"].decode() for r in records) == {"WAL_1_1": 3, "FOL_7_2": 3}
    r = next(x for x in records if x["id"] == b"WAL_1_1_w0001")
    t = (50 + np.arange(100)) / 50.0
    np.testing.assert_allclose(r["imu"][:, 0], 3 * t, atol=1e-4)     # linear in time: interpolation is exact
    np.testing.assert_allclose(r["imu"][:, 4], 1 - t, atol=1e-4)
    assert names(r) == [f"pocket/{s}_{a}" for s in ("acc", "gyro") for a in "xyz"]
    fol = [label_name(builder, x) for x in records if x["session"] == b"FOL_7_2"]
    # samples: STD 0-1 s, FOL 1-2 s, LYI 2-4 s; window 0 (0-2 s) ties STD/FOL -> smaller index (standing)
    assert fol == ["standing", "lying", "lying"]
    assert {int(x["subject"]) for x in records} == {1, 7}


def test_mobiact_errors(tmp_path):
    root = tmp_path / "raw"
    write_mobiact(root, "WAL", 1, 1, ("WAL", "XYZ"))
    message = build_error(MobiActBuilder, root, tmp_path)
    assert "WAL_1_1_annotated.csv" in message and "unknown label code 'XYZ'" in message
    path = os.path.join(root, "Annotated Data", "WAL", "WAL_1_1_annotated.csv")
    write(path, MOBIACT_HEADER.replace("gyro_y,", "") + "\n1,0.0,1,2,3,4,5,6,7,8,WAL\n2,0.1,1,2,3,4,5,6,7,8,WAL\n")
    assert "missing column(s) ['gyro_y']" in build_error(MobiActBuilder, root, tmp_path)


# ============================================================================ KU-HAR

from data_builders.ku_har import Builder as KuHarBuilder  # noqa: E402


def write_kuhar(root, folder, name, seconds=3.5, columns=8):
    """acc time = i/100, gyro time = i/100 + 0.004; acc x = 2 t, gyro y = -t."""
    n = int(seconds * 100)
    lines = []
    for i in range(n):
        t = i / 100.0
        row = [t, 2 * t, 0.1, 9.8, t + 0.004, 0.0, -(t + 0.004), 0.2][:columns]
        lines.append(",".join(f"{v:.6f}" for v in row))
    write(os.path.join(root, "1.Raw_time_domian_data", folder, name), "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def kuhar(tmp_path_factory):
    root = tmp_path_factory.mktemp("kuhar_raw")
    write_kuhar(root, "0.Stand", "1001_A_1.csv")
    write_kuhar(root, "12.Walk-backwards", "1003_M_2.csv")
    write_kuhar(root, "17.Table-tennis", "1003_R_1.csv")
    builder = build(KuHarBuilder, root, tmp_path_factory.mktemp("kuhar"))
    return builder, records_of(builder)


def test_kuhar_alignment_and_labels(kuhar):
    builder, records = kuhar
    # common span 0.004..3.49 s -> 349 samples at 100 Hz -> 2 s windows every 1 s: starts 0, 100 -> 2 per file
    assert collections.Counter(r["session"].decode() for r in records) == {
        "00_1001_A_1": 2, "12_1003_M_2": 2, "17_1003_R_1": 2}
    r = next(x for x in records if x["id"] == b"12_1003_M_2_w0001")
    grid = 0.004 + (100 + np.arange(200)) / 100.0
    np.testing.assert_allclose(r["imu"][:, 0], 2 * grid, atol=1e-4)
    np.testing.assert_allclose(r["imu"][:, 4], -grid, atol=1e-4)
    assert names(r) == [f"waist/{s}_{a}" for s in ("acc", "gyro") for a in "xyz"]
    assert label_name(builder, r) == "Walk-backward" and int(r["subject"]) == 1003
    assert {label_name(builder, x) for x in records if x["session"] == b"00_1001_A_1"} == {"Stand"}


def test_kuhar_errors(tmp_path):
    root = tmp_path / "raw"
    write_kuhar(root, "0.Stand", "1001_A_1.csv", columns=7)
    assert "1001_A_1.csv: line 1 has 7 columns, expected 8" in build_error(KuHarBuilder, root, tmp_path)
    write_kuhar(root, "0.Stand", "1001_A_1.csv")
    write_kuhar(root, "18.Swim", "1001_A_1.csv")
    assert "18.Swim: unknown class folder" in build_error(KuHarBuilder, root, tmp_path)


# ============================================================================ RecGym

from data_builders.recgym import Builder as RecGymBuilder  # noqa: E402

RECGYM_HEADER = "Object,Workout,Position,A_x,A_y,A_z,G_x,G_y,G_z,C_1,Session"


def write_recgym(root, blocks, bad_workout=None):
    """blocks: (object, session, position, [(workout, seconds)]); A_x = running sample index / 20, G_z = -A_x."""
    lines = [RECGYM_HEADER]
    for obj, session, position, workouts in blocks:
        i = 0
        for workout, seconds in workouts:
            for _ in range(int(seconds * 20)):
                t = i / 20.0
                lines.append(f"{obj},{bad_workout or workout},{position},{t:.4f},0.5,-1.0,0.0,0.1,{-t:.4f},"
                             f"123.4,{session}")
                i += 1
    write(os.path.join(root, "RecGym.csv"), "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def recgym(tmp_path_factory):
    root = tmp_path_factory.mktemp("recgym_raw")
    write_recgym(root, [(1, 1, "wrist", [("Squat", 3.0), ("Null", 1.0), ("Running", 3.0)]),
                        (1, 1, "pocket", [("Squat", 7.0)]),
                        (4, 2, "wrist", [("BenchPress", 3.0)])])
    builder = build(RecGymBuilder, root, tmp_path_factory.mktemp("recgym"))
    return builder, records_of(builder)


def test_recgym_sessions_positions_labels(recgym):
    builder, records = recgym
    by_session = collections.defaultdict(list)
    for r in records:
        by_session[r["session"].decode()].append(r)
    # object 1 wrist: 7 s = 140 samples -> starts 0..100 step 20 (6 windows); pocket rows are not used
    assert {k: len(v) for k, v in by_session.items()} == {"s1_1_wrist_0": 6, "s4_2_wrist_0": 2}
    labels = [label_name(builder, r) for r in sorted(by_session["s1_1_wrist_0"], key=lambda r: r["id"])]
    # samples: squat 0-59, null 60-79, running 80-139; window k covers 20k..20k+39
    assert labels == ["squat", "squat", "squat", "running", "running", "running"]
    r = by_session["s1_1_wrist_0"][1]
    t = (r["start_seconds"] * 20 + np.arange(40)) / 20.0
    np.testing.assert_allclose(r["imu"][:, 0], t, atol=1e-4)
    np.testing.assert_allclose(r["imu"][:, 5], -t, atol=1e-4)
    assert names(r) == [f"wrist/{s}_{a}" for s in ("acc", "gyro") for a in "xyz"]
    assert {int(x["subject"]) for x in records} == {1, 4}


def test_recgym_errors(tmp_path):
    root = tmp_path / "raw"
    write_recgym(root, [(1, 1, "wrist", [("Squat", 1.0)])], bad_workout="Yoga")
    message = build_error(RecGymBuilder, root, tmp_path)
    assert "RecGym.csv: line 2: unknown Workout 'Yoga'" in message
    write(str(root / "RecGym.csv"), RECGYM_HEADER + "\n1,Squat,wrist,1,2,3,4,5,6,1\n")
    assert "RecGym.csv: line 2 has 10 columns, the header has 11" in build_error(RecGymBuilder, root, tmp_path)
    write(str(root / "RecGym.csv"), RECGYM_HEADER.replace("G_z,", "") + "\n1,Squat,wrist,1,2,3,4,5,1,1\n")
    assert "missing column(s) ['G_z']" in build_error(RecGymBuilder, root, tmp_path)


# ============================================================================ VTT-ConIoT

from data_builders.vtt_coniot import Builder as VttConIotBuilder  # noqa: E402

VTT_PREFIXES = ("trousers", "back", "hand")
VTT_SUFFIXES = ("Ax_g", "Ay_g", "Az_g", "Gx_dps", "Gy_dps", "Gz_dps", "Mx_uT", "My_uT", "Mz_uT")


def vtt_values(p, t):
    """Stored values of IMU p (0 trousers, 1 back, 2 hand) at time t: acc in the release's half-g units."""
    return [2 * (p + t), 0.0, 2.0,                      # acc: (p + t) g, 0, 1 g
            90.0 + 10 * p, -45.0, 10 * t,               # gyro deg/s
            20.0 + p, -5.0, 40.0 + t]                   # mag µT


def write_vtt(root, activity, user, seconds=4.0, folder=("VTT_ConIot_Dataset", "VTT-ConIot-IMU-Data"),
              extra_columns=False, nan_rows=(), drop=None, bad_cell=None):
    """One `activity_<A>_user_<U>_combined.csv` at 100 Hz; `extra_columns` adds an index and a time column and
    reverses the IMU column order (the reader must go by the header)."""
    names = [f"{p}_{s}" for p in VTT_PREFIXES for s in VTT_SUFFIXES]
    order = list(reversed(range(len(names)))) if extra_columns else list(range(len(names)))
    header = ([""] + ["time_s"] if extra_columns else []) + [names[i] for i in order if names[i] != drop]
    lines = [",".join(header)]
    for j in range(int(seconds * 100)):
        t = j / 100.0
        values = [v for p in range(3) for v in vtt_values(p, t)]
        cells = ["" if j in nan_rows else f"{values[i]:.6f}" for i in order if names[i] != drop]
        if bad_cell is not None and j == bad_cell:
            cells[0] = "n/a"
        lines.append(",".join(([str(j), f"{t:.2f}"] if extra_columns else []) + cells))
    write(os.path.join(root, *folder, f"activity_{activity}_user_{user}_combined.csv"), "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def vtt(tmp_path_factory):
    root = tmp_path_factory.mktemp("vtt_raw")
    write_vtt(root, 1, 1)                                   # 4 s -> windows at 0, 1, 2 s
    write_vtt(root, 16, 13, seconds=3.0, extra_columns=True)  # 3 s -> windows at 0, 1 s
    # 6 s with a 5-row gap (interpolated) and a 60-row gap (splits: rows 0-249 and 310-599, one window each)
    write_vtt(root, 9, 1, seconds=6.0, nan_rows=set(range(50, 55)) | set(range(250, 310)))
    builder = build(VttConIotBuilder, root, tmp_path_factory.mktemp("vtt"))
    hip = build(VttConIotBuilder, root, tmp_path_factory.mktemp("vtt_hip"), config="hip")
    return builder, records_of(builder), records_of(hip)


def test_vtt_coniot_channels_units_labels(vtt):
    builder, records, _ = vtt
    assert collections.Counter(r["session"].decode() for r in records) == {
        "u01_a01_00": 3, "u13_a16_00": 2, "u01_a09_00": 1, "u01_a09_01": 1}
    r = next(x for x in records if x["id"] == b"u01_a01_00_w0001")
    assert r["imu"].shape == (200, 27) and r["imu_rate_hz"] == 100.0
    assert names(r)[:9] == [f"hip/{s}_{a}" for s in ("acc", "gyro", "mag") for a in "xyz"]
    assert names(r)[9] == "back/acc_x" and names(r)[18:21] == ["upper_arm/acc_x", "upper_arm/acc_y", "upper_arm/acc_z"]
    t = (100 + np.arange(200)) / 100.0
    for p in range(3):   # stored half-g -> m/s², deg/s -> rad/s, µT as stored
        np.testing.assert_allclose(r["imu"][:, 9 * p], (p + t) * G, rtol=1e-5)
        np.testing.assert_allclose(r["imu"][:, 9 * p + 2], G, rtol=1e-6)
        np.testing.assert_allclose(r["imu"][:, 9 * p + 3], (90 + 10 * p) * D2R, rtol=1e-6)
        np.testing.assert_allclose(r["imu"][:, 9 * p + 5], 10 * t * D2R, rtol=1e-5)
        np.testing.assert_allclose(r["imu"][:, 9 * p + 6], 20 + p, rtol=1e-6)
        np.testing.assert_allclose(r["imu"][:, 9 * p + 8], 40 + t, rtol=1e-6)
    assert {label_name(builder, x) for x in records if x["session"] == b"u01_a01_00"} == {"roll_painting"}
    # header-driven columns: reversed order plus index and time columns give the same values
    s = next(x for x in records if x["id"] == b"u13_a16_00_w0001")
    np.testing.assert_allclose(s["imu"], r["imu"], rtol=1e-5)
    assert label_name(builder, s) == "stairs_up_down" and int(s["subject"]) == 13
    assert {label_name(builder, x) for x in records if x["subject"] == 1} == {"roll_painting", "hands_up_high"}


def test_vtt_coniot_nan_gaps_and_hip_config(vtt):
    _, records, hip = vtt
    t = np.arange(200) / 100.0
    first = next(x for x in records if x["id"] == b"u01_a09_00_w0000")
    # rows 50-54 were empty: the signals are linear in time, so interpolation restores them exactly
    np.testing.assert_allclose(first["imu"][:, 0], t * G, rtol=1e-5)
    np.testing.assert_allclose(first["imu"][:, 23], 10 * t * D2R, atol=1e-6)
    second = next(x for x in records if x["session"] == b"u01_a09_01")
    assert float(second["start_seconds"]) == 0.0
    np.testing.assert_allclose(second["imu"][:, 18], (2 + 3.10 + t) * G, rtol=1e-5)   # starts at row 310
    assert len(hip) == len(records)
    assert all(names(x) == [f"hip/{s}_{a}" for s in ("acc", "gyro", "mag") for a in "xyz"] for x in hip)
    h = next(x for x in hip if x["id"] == b"u01_a01_00_w0002")
    assert h["imu"].shape == (200, 9)
    np.testing.assert_allclose(h["imu"][:, 0], (2 + t) * G, rtol=1e-5)
    np.testing.assert_allclose(h["imu"][:, 6:9], np.stack([np.full(200, 20.0), np.full(200, -5.0), 42 + t], 1),
                               rtol=1e-6)


def test_vtt_coniot_errors(tmp_path):
    root = tmp_path / "raw"
    write_vtt(root, 3, 2, seconds=1.0, drop="back_Gy_dps")
    message = build_error(VttConIotBuilder, root, tmp_path)
    assert "activity_3_user_2_combined.csv: missing column(s) ['back_Gy_dps']" in message
    assert "trousers, back, hand" in message and "Mz_uT" in message
    write_vtt(root, 3, 2, seconds=1.0, bad_cell=7)
    message = build_error(VttConIotBuilder, root, tmp_path)
    assert "activity_3_user_2_combined.csv: line 9, column 'trousers_Ax_g': expected a number, got 'n/a'" in message
    path = root / "VTT_ConIot_Dataset" / "VTT-ConIot-IMU-Data" / "activity_3_user_2_combined.csv"
    write_vtt(root, 3, 2, seconds=1.0)
    with open(path, "a") as f:
        f.write("1.0,2.0\n")
    assert "activity_3_user_2_combined.csv: line 102 has 2 columns, the header has 27" in \
        build_error(VttConIotBuilder, root, tmp_path)
    write_vtt(root, 3, 2, seconds=1.0)
    write_vtt(root, 17, 2, seconds=1.0)
    message = build_error(VttConIotBuilder, root, tmp_path)
    assert "activity_17_user_2_combined.csv: unknown activity code 17" in message
    os.remove(root / "VTT_ConIot_Dataset" / "VTT-ConIot-IMU-Data" / "activity_17_user_2_combined.csv")
    write_vtt(root, 3, 2, seconds=1.0, folder=("copy",))
    assert "activity 3 of user 2 also found at" in build_error(VttConIotBuilder, root, tmp_path)
    empty = tmp_path / "empty"
    os.makedirs(empty / "VTT_ConIot_Dataset")
    message = build_error(VttConIotBuilder, empty, tmp_path)
    assert "no activity_<A>_user_<U>_combined.csv files" in message and "VTT-ConIot-IMU-Data" in message
    message = build_error(VttConIotBuilder, tmp_path / "nowhere", tmp_path)
    assert "nowhere does not exist" in message and "VTT_ConIot_Dataset.zip" in message


def test_vtt_coniot_accelerometer_scale_override(tmp_path):
    root = tmp_path / "raw"
    write_vtt(root, 5, 4, seconds=2.0)
    builder = build(VttConIotBuilder, root, tmp_path / "out", config="hip", acc_g_per_unit=1.0)
    (r,) = records_of(builder)
    np.testing.assert_allclose(r["imu"][:, 2], 2 * G, rtol=1e-6)    # stored 2.0 read as 2 g
    assert label_name(builder, r) == "picking_objects" and int(r["subject"]) == 4


# ============================================================================ shared machinery

def test_resample_session_matches_analytic_signal():
    rate = 100.0
    t = np.arange(1000) / rate
    signals = np.stack([np.sin(2 * np.pi * 0.5 * t), 3.0 + np.cos(2 * np.pi * 1.0 * t)], axis=1)
    labels = (t >= 4.0).astype(np.int64)
    session = har.Session("s", 1, signals, labels, rate, ("a/acc_x", "a/acc_y"), "test")
    out = har.resample_session(session, 40.0)
    new_t = np.arange(len(out.signals)) / 40.0
    assert len(out.signals) == 400 and out.rate_hz == 40.0
    inner = slice(20, -20)  # away from the filter's edge transients
    np.testing.assert_allclose(out.signals[inner, 0], np.sin(2 * np.pi * 0.5 * new_t)[inner], atol=2e-3)
    np.testing.assert_allclose(out.signals[inner, 1], 3.0 + np.cos(2 * np.pi * new_t)[inner], atol=2e-3)
    np.testing.assert_array_equal(out.labels, (new_t >= 4.0).astype(np.int64))


def test_builder_rate_change_and_skip_policy(tmp_path):
    root = tmp_path / "raw"
    write_mhealth(root, 1, seconds=6.0, codes=(10,))
    write_mhealth(root, 2, columns=23)  # bad file
    with pytest.raises(har.HarFormatError, match="mHealth_subject2.log: line 1 has 23 columns"):
        build(MhealthBuilder, root, tmp_path / "strict")
    builder = build(MhealthBuilder, root, tmp_path / "lenient", rate_hz=25.0, bad_file_policy="skip")
    records = records_of(builder)
    # 6 s at 25 Hz = 150 samples -> 2 s windows (50) every 1 s (25): starts 0..100 -> 5
    assert len(records) == 5 and all(r["imu"].shape == (50, 21) and r["imu_rate_hz"] == 25.0 for r in records)
    assert {int(r["subject"]) for r in records} == {1}
    bad = builder.info.metadata["bad_files"]
    assert len(bad) == 1 and bad[0]["file"].endswith("mHealth_subject2.log") and "23 columns" in bad[0]["error"]
    # chest acc z is the constant 9.8: resampling keeps it away from the edges
    np.testing.assert_allclose(records[2]["imu"][:, 2], 9.8, atol=1e-3)


def test_missing_manual_dir_names_the_path(tmp_path):
    message = build_error(DsadsBuilder, tmp_path / "nowhere", tmp_path)
    assert "nowhere does not exist" in message and "a01/p1/s01.txt" in message  # names the layout expected
