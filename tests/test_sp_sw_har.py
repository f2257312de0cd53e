"""sp-sw-har builder and the shared time-series helpers.

Real-data checks compare against the sample's own tables (MANIFEST.tsv, subjects_info.csv) and the counts measured in
shared/data/sp_sw_har/ATTRIBUTION.md; window and label logic is checked on a hand-written fixture in the exact file
format whose signals are linear in time, so the expected resampled values are known in closed form.
"""

import collections
import csv
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy.interpolate import interp1d

from data_builders.sp_sw_har import Builder, SpSwHarConfig, parsing
from imujax.io import csv_table, timeseries

ROOT = "/work/shared/data/sp_sw_har"
HEADER = ["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro", "timestamp", "label"]
BASE_MS = 1657533977000


def build(root, data_dir, config="default", num_shards=None):
    builder = Builder(config=config, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(root), num_shards=num_shards))
    return builder


def all_records(source):
    return sorted((source[i] for i in range(len(source))), key=lambda r: r["id"])


# ---------------------------------------------------------------- real sample

@pytest.fixture(scope="module")
def manifest():
    with open(os.path.join(ROOT, "MANIFEST.tsv")) as f:
        return {row["path"]: row for row in csv.DictReader(f, delimiter="\t")}


@pytest.fixture(scope="module")
def recordings():
    executions, problems = parsing.discover_executions(ROOT)
    assert problems == []
    return {e.execution_id: (parsing.read_device_csv(e.phone_csv), parsing.read_device_csv(e.watch_csv))
            for e in executions}


@pytest.fixture(scope="module")
def built_default(tmp_path_factory):
    builder = build(ROOT, tmp_path_factory.mktemp("spswhar"), num_shards=3)
    return builder, all_records(builder.as_data_source()["train"])


def test_executions_per_subject_match_subjects_info():
    executions, _ = parsing.discover_executions(ROOT)
    found = collections.Counter(e.subject for e in executions)
    assert found == {"s01": 6, "s02": 9, "s03": 10}
    listed = parsing.read_subjects_info(ROOT)
    assert len(listed) == 23
    assert all(listed[s] == n for s, n in found.items())
    assert len(parsing.read_execution_orientations(ROOT)) == 223


def test_raw_rates_and_row_counts(recordings, manifest):
    phone_rates, watch_rates = [], []
    for execution_id, (phone, watch) in recordings.items():
        subject = execution_id.split("_")[0]
        for rec, suffix, rates in ((phone, "sp", phone_rates), (watch, "sw", watch_rates)):
            row = manifest[f"{subject}/{execution_id}_{suffix}.csv"]
            assert len(rec.timestamps_ms) == int(row["n_samples"])
            assert rec.timestamps_ms[0] == int(row["first_timestamp_ms"])
            assert rec.rate_hz == pytest.approx(float(row["mean_rate_hz"]), abs=0.01)
            rates.append(rec.rate_hz)
    assert np.mean(phone_rates) == pytest.approx(102.5, abs=0.1)
    assert np.mean(watch_rates) == pytest.approx(104.3, abs=0.1)
    assert sum(p.repeated_timestamps + w.repeated_timestamps for p, w in recordings.values()) == 2187


def test_label_strings_and_counts(recordings):
    phone = collections.Counter(parsing.LABELS[i] for p, _ in recordings.values() for i in p.labels)
    watch = collections.Counter(parsing.LABELS[i] for _, w in recordings.values() for i in w.labels)
    assert phone == {"WALKING": 11905, "TURNING": 5801, "SEATED": 4125, "STANDING_UP": 3333, "SITTING_DOWN": 3212}
    assert watch == {"WALKING": 12105, "TURNING": 5911, "SEATED": 3809, "STANDING_UP": 3398, "SITTING_DOWN": 3271}


def test_built_dataset_shards_schema_and_counts(built_default, recordings):
    builder, records = built_default
    shards = [f for f in os.listdir(builder.data_dir) if ".array_record-" in f]
    assert len(shards) == 3
    assert "tensorflow" not in sys.modules
    expected = 0
    for phone, watch in recordings.values():  # full windows over the common span on a 100 Hz grid
        start = max(phone.timestamps_ms[0], watch.timestamps_ms[0])
        stop = min(phone.timestamps_ms[-1], watch.timestamps_ms[-1])
        n = (stop - start) // 10 + 1
        expected += (n - 200) // 100 + 1
    assert len(records) == expected
    r = records[0]
    assert r["imu"].shape == (200, 12) and r["imu"].dtype == np.float32 and r["imu_rate_hz"] == 100.0
    assert [c.decode() for c in r["channels"]] == [
        f"{d}/{s}_{a}" for d in ("phone", "watch") for s in ("acc", "gyro") for a in "xyz"]
    assert builder.info.features["label"].names == [
        "SEATED", "STANDING_UP", "WALKING", "TURNING", "SITTING_DOWN"]
    assert collections.Counter(r["subject"] for r in records).keys() == {1, 2, 3}
    assert r["id"] == b"s01_01_w000"
    assert builder.info.features["phone_orientation"].int2str(r["phone_orientation"]) == "back_inv"


def test_real_window_matches_scipy_reference(built_default):
    _, records = built_default
    record = next(r for r in records if r["id"] == b"s02_04_w003")
    columns = []
    raw = {}
    for suffix in ("sp", "sw"):
        with open(os.path.join(ROOT, "s02", f"s02_04_{suffix}.csv")) as f:
            rows = list(csv.DictReader(f))
        groups = collections.defaultdict(list)
        for row in rows:  # average the rows that share a timestamp
            groups[int(row["timestamp"])].append([float(row[c]) for c in HEADER[:6]])
        raw[suffix] = (np.array(sorted(groups)), np.array([np.mean(groups[t], axis=0) for t in sorted(groups)]))
    start = max(raw["sp"][0][0], raw["sw"][0][0])
    grids = start + 3 * 1000 + np.arange(200) * 10.0  # window 3 starts 3 s after the common start
    for suffix in ("sp", "sw"):
        t, v = raw[suffix]
        columns.append(interp1d(t.astype(np.float64), v, axis=0)(grids))
    np.testing.assert_allclose(record["imu"], np.concatenate(columns, axis=1), rtol=1e-5, atol=1e-5)


def test_subject_split_config(tmp_path):
    config = SpSwHarConfig(name="loso_s03", split_subjects={"train": ("s01", "s02"), "test": ("s03",)})
    sources = build(ROOT, tmp_path, config).as_data_source()
    assert {r["subject"] for r in all_records(sources["train"])} == {1, 2}
    assert {r["subject"] for r in all_records(sources["test"])} == {3}
    holdout = build(ROOT, tmp_path, "holdout").as_data_source()
    assert set(holdout) == {"train", "test"}
    assert {r["subject"] for r in all_records(holdout["test"])} == {3}


def test_unknown_subject_in_split_is_an_error(tmp_path):
    config = SpSwHarConfig(name="typo", split_subjects={"train": ("s1",)})
    with pytest.raises(ValueError, match="'s1', which is not in subjects_info.csv"):
        build(ROOT, tmp_path, config)


# ---------------------------------------------------------------- hand-made fixture in the exact format

def phone_signal(t_s):
    return np.stack([2 * t_s + 1, -t_s, np.full_like(t_s, 9.81), 0.1 * t_s, np.zeros_like(t_s),
                     np.full_like(t_s, -0.2)], axis=1)


def watch_signal(t_s):
    return np.stack([3 - t_s, 0.5 * t_s, np.full_like(t_s, 9.7), np.zeros_like(t_s), -0.3 * t_s,
                     np.full_like(t_s, 0.05)], axis=1)


def write_device_csv(path, t_ms, values, labels, header=HEADER):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for t, v, label in zip(t_ms, values, labels):
            row = dict(zip(HEADER, [*(repr(float(x)) for x in v), str(BASE_MS + int(t)), label]))
            writer.writerow([row[name] for name in header])


def phone_label(t_ms):
    return "SEATED" if t_ms < 1500 else "WALKING" if t_ms < 2600 else "TURNING"


def write_fixture_execution(root, execution_id):
    subject = execution_id.split("_")[0]
    os.makedirs(os.path.join(root, subject), exist_ok=True)
    # phone: ~10 ms jittery steps over 0..4000 ms; every 7th sample repeated with values +-0.5 around the line
    jitter = np.array([0, 3, -2, 1, 0, -3, 2])
    t_phone = np.clip(np.arange(401) * 10 + jitter[np.arange(401) % 7], 0, 4000)
    t_phone[0], t_phone[-1] = 0, 4000
    values = phone_signal(t_phone / 1000.0)
    times, rows, labels = [], [], []
    for i, (t, v) in enumerate(zip(t_phone, values)):
        if i % 7 == 3:
            times += [t, t]
            rows += [v + np.r_[0.5, np.zeros(5)], v - np.r_[0.5, np.zeros(5)]]
            labels += [phone_label(t)] * 2
        else:
            times.append(t)
            rows.append(v)
            labels.append(phone_label(t))
    write_device_csv(os.path.join(root, subject, f"{execution_id}_sp.csv"), times, rows, labels)
    # watch: 5..4005 ms at ~9.6 ms; its labels all WALKING so that label_source is visible
    t_watch = np.round(5 + np.arange(418) * 9.6).astype(int)
    write_device_csv(os.path.join(root, subject, f"{execution_id}_sw.csv"), t_watch,
                     watch_signal(t_watch / 1000.0), ["WALKING"] * len(t_watch))


def write_fixture_root(root, execution_ids):
    subjects = collections.Counter(e.split("_")[0] for e in execution_ids)
    with open(os.path.join(root, "subjects_info.csv"), "w") as f:
        f.write("subject_id,age,gender,height,weight,dominant_hand,executions\n")
        for subject, n in sorted(subjects.items()):
            f.write(f"{subject},40,F,170,65,R,{n}\n")
    with open(os.path.join(root, "executions_info.csv"), "w") as f:
        f.write("execution_id,orientation,first_turn,second_turn\n")
        for execution_id in execution_ids:
            f.write(f"{execution_id},front,l,r\n")
    for execution_id in execution_ids:
        write_fixture_execution(root, execution_id)


@pytest.fixture()
def fixture_root(tmp_path):
    root = tmp_path / "DATA"
    root.mkdir()
    write_fixture_root(str(root), ["s07_01", "s07_02"])
    return root


def test_fixture_windows_labels_and_values(fixture_root, tmp_path):
    records = all_records(build(fixture_root, tmp_path / "out").as_data_source()["train"])
    # common span 5..4000 ms -> grid 5, 15, ..., 3995 ms (400 points) -> windows at 0, 1, 2 s
    assert [r["id"] for r in records] == [f"s07_0{e}_w00{k}".encode() for e in (1, 2) for k in range(3)]
    # window 0: 150 SEATED / 50 WALKING; window 1: 50 / 110 / 40 TURNING; window 2: 60 WALKING / 140 TURNING
    assert [r["label"] for r in records[:3]] == [0, 2, 3]
    for k, r in enumerate(records[:3]):
        grid_s = (5 + 1000 * k + 10 * np.arange(200)) / 1000.0
        np.testing.assert_allclose(r["imu"][:, :6], phone_signal(grid_s), atol=1e-5)
        np.testing.assert_allclose(r["imu"][:, 6:], watch_signal(grid_s), atol=1e-5)
        assert r["subject"] == 7


def test_fixture_watch_labels(fixture_root, tmp_path):
    config = SpSwHarConfig(name="watch_labels", label_source="watch", window_seconds=1.0, stride_seconds=0.5)
    records = all_records(build(fixture_root, tmp_path / "out", config).as_data_source()["train"])
    assert {r["label"] for r in records} == {2}
    assert len(records) == 2 * 7 and records[0]["imu"].shape == (100, 12)


def test_missing_column_is_reported(fixture_root, tmp_path):
    path = fixture_root / "s07" / "s07_02_sw.csv"
    write_device_csv(path, [0, 10], np.ones((2, 6)), ["SEATED"] * 2,
                     header=[h for h in HEADER if h != "z_gyro"])
    with pytest.raises(csv_table.CsvFormatError, match=r"s07_02_sw.csv: missing column\(s\) \['z_gyro'\]"):
        build(fixture_root, tmp_path / "out")


def test_nan_rows_are_reported_or_skipped(fixture_root, tmp_path):
    path = fixture_root / "s07" / "s07_02_sp.csv"
    lines = path.read_text().splitlines()
    lines[5] = "nan," + lines[5].split(",", 1)[1]
    lines[9] = "," + lines[9].split(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(csv_table.CsvFormatError, match=r"s07_02_sp.csv: .*'x_acc' at line\(s\) \[6, 10\]"):
        build(fixture_root, tmp_path / "strict")
    config = SpSwHarConfig(name="lenient", bad_file_policy="skip")
    builder = build(fixture_root, tmp_path / "lenient", config)
    assert [r["id"][:6] for r in all_records(builder.as_data_source()["train"])] == [b"s07_01"] * 3
    bad = builder.info.metadata["bad_files"]
    assert [b["file"] for b in bad] == ["s07_02"] and "line(s) [6, 10]" in bad[0]["error"]


def test_unknown_label_and_unpaired_file(fixture_root, tmp_path):
    path = fixture_root / "s07" / "s07_01_sw.csv"
    path.write_text(path.read_text().replace("WALKING", "JOGGING", 1))
    with pytest.raises(parsing.SpSwHarError, match=r"s07_01_sw.csv: unknown label\(s\) \['JOGGING'\]"):
        parsing.read_device_csv(str(path))
    shutil.copy(fixture_root / "s07" / "s07_02_sp.csv", fixture_root / "s07" / "s07_03_sp.csv")
    with pytest.raises(parsing.SpSwHarError, match=r"s07_03_sp.csv: execution s07_03 lacks its watch"):
        build(fixture_root, tmp_path / "out")


# ---------------------------------------------------------------- shared helpers

def test_dedupe_resample_and_labels_against_references():
    t = np.array([0.0, 0.01, 0.01, 0.025, 0.03, 0.03, 0.03, 0.05])
    v = np.arange(16, dtype=np.float64).reshape(8, 2) ** 1.5
    tu, vu = timeseries.dedupe_timestamps(t, v, "test")
    np.testing.assert_array_equal(tu, [0.0, 0.01, 0.025, 0.03, 0.05])
    np.testing.assert_allclose(vu[1], v[1:3].mean(0))
    np.testing.assert_allclose(vu[3], v[4:7].mean(0))
    grid = timeseries.uniform_grid(0.0, 0.05, 100.0)
    np.testing.assert_allclose(grid, [0.0, 0.01, 0.02, 0.03, 0.04, 0.05])
    np.testing.assert_allclose(timeseries.resample_linear(tu, vu, grid, "test"), interp1d(tu, vu, axis=0)(grid))
    with pytest.raises(timeseries.TimeSeriesError, match="extrapolation"):
        timeseries.resample_linear(tu, vu, grid + 0.001, "test")
    with pytest.raises(timeseries.TimeSeriesError, match="backwards at sample"):
        timeseries.dedupe_timestamps(t[::-1], v, "test")
    labels = timeseries.nearest_labels(np.array([0.0, 0.1, 0.2]), np.array([4, 5, 6]), np.array([0.04, 0.06, 0.3]))
    np.testing.assert_array_equal(labels, [4, 5, 6])
    assert timeseries.estimate_rate_hz(np.arange(11) * 0.0096) == pytest.approx(1 / 0.0096)


def test_majority_and_windows():
    np.testing.assert_array_equal(timeseries.window_starts(10, 4, 3), [0, 3, 6])
    assert timeseries.window_starts(3, 4, 1).size == 0
    assert timeseries.majority_label(np.array([3, 1, 3, 1]), 5) == 1  # tie -> smaller index
    assert timeseries.majority_label(np.array([4, 4, 0]), 5) == 4
    labels = np.array([0] * 5 + [2] * 5)
    np.testing.assert_array_equal(timeseries.window_labels(labels, np.array([0, 2, 4]), 6, 3), [0, 0, 2])
    with pytest.raises(timeseries.TimeSeriesError, match="must lie in"):
        timeseries.majority_label(np.array([0, 7]), 5)
