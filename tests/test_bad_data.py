"""Bad data (issue 7, item 6), one test per case, on tiny fixtures written here: builders reject a bad recording
with a per-file report entry (metadata.json "bad_files") or raise naming the file; the loader fails loudly naming
the record or the shard instead of feeding garbage. NaN/Inf after the transform and non-finite losses are covered
by test_bad_records.py and test_faults.py."""

import io
import os
import pickle

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_builders.gopro import gopro_dataset_builder as gopro
from data_builders.imu_video_folder import manifest as manifest_lib
from data_builders.imu_video_folder import recording as folder_recording
from data_builders.mhealth import Builder as MhealthBuilder
from data_builders.revalexo import revalexo_dataset_builder as revalexo
from imujax import input_pipeline
from imujax.io import csv_table, timeseries, video_frames
from tests.folder_helpers import CHANNELS, build_folder, ids, imu, stored_report, write_folder, write_frames, write_mp4
from tests.test_real_builders import REVALEXO_TEST, build, revalexo_root

GOPRO_SAMPLE = "/work/shared/data/gopro/max-heromode.mp4"


# -- undecodable JPEG frames at build time ----------------------------------------------------------------------------


def test_undecodable_frame_rejects_its_recording_with_the_file_named(tmp_path):
    root = tmp_path / "mine"
    write_frames(root / "good_frames", 30)
    write_frames(root / "garbage_frames", 30)
    (root / "garbage_frames" / "0000.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    write_frames(root / "truncated_frames", 30)
    whole = (root / "truncated_frames" / "0010.jpg").read_bytes()
    (root / "truncated_frames" / "0010.jpg").write_bytes(whole[: len(whole) // 2])  # valid header, data cut off
    for name in ("good", "garbage", "truncated"):
        np.save(root / f"{name}.npy", imu(30))
    write_folder(root, [{"imu": f"{n}.npy", "video": f"{n}_frames"} for n in ("good", "garbage", "truncated")])

    with pytest.raises(video_frames.VideoError, match=r"garbage_frames/0000\.jpg: frame cannot be decoded"):
        build_folder(root, tmp_path / "strict")

    builder = build_folder(root, tmp_path / "lenient", policy="skip")
    assert ids(builder) == ["train_good_0000", "train_good_0001", "train_good_0002"]
    for report in (builder.info.metadata["bad_files"], stored_report(builder)):
        assert [(b["file"], b["recording"]) for b in report] == [("garbage_frames/0000.jpg", "garbage"),
                                                                   ("truncated_frames/0010.jpg", "truncated")]
        assert "0000.jpg: frame cannot be decoded" in report[0]["error"]
        assert "0010.jpg: frame cannot be decoded" in report[1]["error"] and "truncated" in report[1]["error"]


# -- missing video files -----------------------------------------------------------------------------------------------


def test_missing_video_and_imu_files_are_reported_per_recording(tmp_path):
    root = tmp_path / "mine"
    write_frames(root / "good_frames", 30)
    for name in ("good", "no_mp4", "no_frames"):
        np.save(root / f"{name}.npy", imu(30))
    write_folder(root, [{"imu": "good.npy", "video": "good_frames"},
                        {"imu": "no_mp4.npy", "video": "gone.mp4"},
                        {"imu": "no_frames.npy", "video": "gone_frames"},
                        {"imu": "gone.npy", "video": "good_frames", "name": "no_imu"}])

    # default policy: the build stops before generating anything, naming the manifest entry and the file
    with pytest.raises(manifest_lib.ManifestError, match=r"recordings\[1\]: video .*gone\.mp4 does not exist"):
        build_folder(root, tmp_path / "strict")

    builder = build_folder(root, tmp_path / "lenient", policy="skip")
    assert ids(builder) == ["train_good_0000", "train_good_0001", "train_good_0002"]
    report = stored_report(builder)
    assert [(b["file"], b["recording"]) for b in report] == [("gone.mp4", "no_mp4"), ("gone_frames", "no_frames"),
                                                               ("gone.npy", "no_imu")]
    assert all("does not exist" in b["error"] for b in report)

    # IMU-only builds do not need the video: only the missing IMU file is reported
    imu_only = build_folder(root, tmp_path / "imu_only", policy="skip", with_video=False)
    assert len(ids(imu_only)) == 9 and [b["file"] for b in stored_report(imu_only)] == ["gone.npy"]


def test_undecodable_mp4_is_reported(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    write_mp4(root / "good.mp4", 3.0)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    for name in ("good", "broken"):
        np.save(root / f"{name}.npy", imu(30))
    write_folder(root, [{"imu": f"{n}.npy", "video": f"{n}.mp4"} for n in ("good", "broken")])
    with pytest.raises(video_frames.VideoError, match=r"broken\.mp4: cannot open as a video container"):
        build_folder(root, tmp_path / "strict")
    builder = build_folder(root, tmp_path / "lenient", policy="skip")
    assert len(ids(builder)) == 3
    assert [(b["file"], b["recording"]) for b in stored_report(builder)] == [("broken.mp4", "broken")]


# -- empty or too-short recordings -------------------------------------------------------------------------------------


def test_short_recording_is_rejected_with_its_length_and_the_window_it_needs(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    np.save(root / "long.npy", imu(25))
    np.save(root / "short.npy", imu(7))
    write_folder(root, [{"imu": "long.npy"}, {"imu": "short.npy"}])
    # too short is valid data the window cannot use: rejected with a report entry even under the default policy
    builder = build_folder(root, tmp_path / "data", with_video=False)
    assert ids(builder) == ["train_long_0000", "train_long_0001"]
    [entry] = stored_report(builder)
    assert entry["file"] == "short.npy" and entry["recording"] == "short"
    assert "7 samples (0.70 s), shorter than one window of 10 samples (1.00 s at 10 Hz)" in entry["error"]


def test_empty_recordings_are_bad_files(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    np.save(root / "good.npy", imu(20))
    np.save(root / "empty.npy", np.zeros((0, 3), np.float32))
    (root / "empty.csv").write_text(",".join(CHANNELS) + "\n")  # header only
    write_folder(root, [{"imu": "good.npy"}, {"imu": "empty.npy"}, {"imu": "empty.csv", "name": "empty_csv"}])
    with pytest.raises(manifest_lib.ManifestError, match=r"empty\.npy: no samples"):
        build_folder(root, tmp_path / "strict", with_video=False)
    builder = build_folder(root, tmp_path / "lenient", policy="skip", with_video=False)
    assert ids(builder) == ["train_good_0000", "train_good_0001"]
    report = stored_report(builder)
    assert [b["file"] for b in report] == ["empty.npy", "empty.csv"]
    assert "no samples" in report[0]["error"] and "empty.csv: no data rows" in report[1]["error"]


def test_split_left_without_recordings_names_the_rejected_files(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    np.save(root / "good.npy", imu(20))
    np.save(root / "short.npy", imu(3))
    write_folder(root, [{"imu": "good.npy"}, {"imu": "short.npy", "split": "test"}])
    with pytest.raises(manifest_lib.ManifestError, match=r"split 'test' has no usable recording; rejected: "
                                                           r"short\.npy: .*3 samples"):
        build_folder(root, tmp_path / "data", with_video=False)


def test_har_file_shorter_than_one_window_is_reported(tmp_path):
    """HarBuilder (all HAR datasets): a file that gives no window because it is too short is listed, not dropped."""
    def write_mhealth(subject, samples):
        rows = ["\t".join(["1.0"] * 23 + ["1"]) for _ in range(samples)]  # 50 Hz, 23 signals + activity code
        path = tmp_path / "raw" / "MHEALTHDATASET" / f"mHealth_subject{subject}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n")

    write_mhealth(1, 200)   # 4 s
    write_mhealth(2, 60)    # 1.2 s < the 2 s window
    builder = MhealthBuilder(config="default", data_dir=str(tmp_path / "data"), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "raw")))
    source = builder.as_data_source()["train"]
    assert len(source) == 3 and {int(source[i]["subject"]) for i in range(3)} == {1}
    [entry] = stored_report(builder)
    assert entry["file"].endswith("mHealth_subject2.log")
    assert "too short: its longest session has 60 samples at 50 Hz, fewer than one window of 100" in entry["error"]


def test_revalexo_clip_too_short_is_reported(tmp_path):
    root = revalexo_root(tmp_path)
    csv_path = root / "trim_imus" / "Subject05" / "p1.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(lines[:1 + 180]) + "\n")  # 3 s at 60 Hz; the fixture config needs 4 s
    builder = build(revalexo.Builder, REVALEXO_TEST, tmp_path / "data", root)
    assert set(builder.info.splits) == {"Subject01"}
    [entry] = stored_report(builder)
    assert entry["file"] == "trim_imus/Subject05/p1.csv" and entry["clip"] == "Subject05/p1"
    assert entry["error"] == "180 IMU rows (3.00 s at 60 Hz), shorter than the 4 s a clip needs"


def test_gopro_file_shorter_than_a_window_is_named(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    os.symlink(GOPRO_SAMPLE, manual / "clip.mp4")
    builder = gopro.Builder(config=gopro.GoproConfig(name="long_windows", window_seconds=1000.0),
                            data_dir=str(tmp_path / "data"), file_format="array_record")
    with pytest.raises(timeseries.TimeSeriesError, match=r"no window from any \.mp4; rejected: clip\.mp4: .*clip\.mp4: "
                                                          r"IMU and video overlap for [0-9.]+ s, shorter than one "
                                                          r"1000 s window"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


# -- NaN/Inf and wrong channel counts at build time (the user-folder builder) ------------------------------------------


def test_nan_and_wrong_channel_count_files_are_reported(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    np.save(root / "good.npy", imu(20))
    bad = imu(20)
    bad[4, 1] = np.nan
    np.save(root / "nan.npy", bad)
    np.save(root / "wide.npy", np.ones((20, 4), np.float32))
    (root / "inf.csv").write_text(",".join(CHANNELS) + "\n" + "1,2,3\n" * 5 + "1,inf,3\n" + "1,2,3\n" * 14)
    write_folder(root, [{"imu": "good.npy"}, {"imu": "nan.npy"}, {"imu": "wide.npy"}, {"imu": "inf.csv"}])
    with pytest.raises(manifest_lib.ManifestError, match=r"nan\.npy: contains NaN or infinite values, first at "
                                                           r"\[row, column\] \[\[4, 1\]\]"):
        build_folder(root, tmp_path / "strict", with_video=False)
    builder = build_folder(root, tmp_path / "lenient", policy="skip", with_video=False)
    assert ids(builder) == ["train_good_0000", "train_good_0001"]
    report = {b["file"]: b["error"] for b in stored_report(builder)}
    assert set(report) == {"nan.npy", "wide.npy", "inf.csv"}
    assert "expected an array [T, 3], got (20, 4)" in report["wide.npy"]
    assert "non-finite values in 'wrist/acc_y' at line(s) [7]" in report["inf.csv"]
    with pytest.raises(csv_table.CsvFormatError):  # the csv error type is kept under the default policy
        m = manifest_lib.read_manifest(str(root))
        folder_recording.read_segments(m.recordings[3], m)


# -- the loader: undecodable stored frames, truncated or missing shards ------------------------------------------------


def _jpeg(level):
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), level, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


class BadDataFixture(tfds.core.GeneratorBasedBuilder):
    """12 records with a 2-frame video; record r3 stores bytes that are not a JPEG (a dataset damaged after build, or
    written by a builder that does not check its frames)."""

    VERSION = tfds.core.Version("1.0.0")
    NUM_RECORDS = 12

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "imu": tfds.features.Tensor(shape=(4, 3), dtype=np.float32),
            "video": tfds.features.Sequence(tfds.features.Image(shape=(8, 8, 3), encoding_format="jpeg")),
            "label": tfds.features.Scalar(dtype=np.int32),
            "id": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(self.NUM_RECORDS):
            frames = [b"not a jpeg at all", b"still not"] if i == 3 else [_jpeg(20 * i), _jpeg(20 * i + 5)]
            yield f"r{i}", {"imu": np.full((4, 3), i, np.float32), "video": frames, "label": 0, "id": f"r{i}"}


def _open(data_dir):
    config = ml_collections.ConfigDict({"data": {"name": "bad_data_fixture", "data_dir": str(data_dir)}})
    return input_pipeline.open_source(config, str(data_dir), "train")


@pytest.fixture
def fixture_dir(tmp_path):
    BadDataFixture(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    return tmp_path


def _shard(data_dir):
    [shard] = [os.path.join(d, f) for d, _, names in os.walk(data_dir) for f in names if ".array_record" in f]
    return shard


def preprocess(record, rng):
    return {"imu": np.asarray(record["imu"]), "frames": np.stack(record["video"]).astype(np.float32),
            "label": np.int32(record["label"])}


def test_undecodable_stored_frame_fails_naming_the_record(fixture_dir):
    source = _open(fixture_dir)
    by_id = {}
    for i in range(len(source)):
        try:
            by_id[source[i]["id"]] = i
        except input_pipeline.BadRecordError as e:
            message, bad_index = str(e), i
    assert len(by_id) == BadDataFixture.NUM_RECORDS - 1 and b"r3" not in by_id
    assert f"record b'r3' (index {bad_index} of 'bad_data_fixture' split 'train'" in message
    assert "field 'video' cannot be decoded (UnidentifiedImageError" in message and "array_record" in message
    clone = pickle.loads(pickle.dumps(source))  # what grain worker processes receive
    assert clone[by_id[b"r0"]]["id"] == b"r0"
    # inside the grain pipeline (shuffled, batched) the error surfaces with the same record id
    it = iter(input_pipeline.train_dataset(source, preprocess, global_batch=BadDataFixture.NUM_RECORDS, seed=0,
                                           worker_count=0))
    with pytest.raises(input_pipeline.BadRecordError, match=r"record b'r3'.*'video' cannot be decoded"):
        next(it)


def test_system_decoding_jpeg_bytes_itself_names_the_record():
    def decode(record, rng):
        return {"frame": np.asarray(Image.open(io.BytesIO(record["jpeg"])).convert("RGB"), np.float32)}

    ok = input_pipeline.CheckedTransform(decode)({"jpeg": _jpeg(7), "id": b"good"})
    assert ok["frame"].shape == (8, 8, 3)
    with pytest.raises(input_pipeline.BadRecordError, match=r"record b'clip_9': an image cannot be decoded"):
        input_pipeline.CheckedTransform(decode)({"jpeg": b"garbage", "id": b"clip_9"})
    truncated = _jpeg(7)[:-40]
    with pytest.raises(input_pipeline.BadRecordError, match=r"record b'clip_10': an image cannot be decoded"):
        input_pipeline.CheckedTransform(decode)({"jpeg": truncated, "id": b"clip_10"})
    # any other error keeps its type and gains a note naming the record
    with pytest.raises(KeyError) as e:
        input_pipeline.CheckedTransform(decode)({"id": b"clip_11"})
    assert "while transforming record b'clip_11'" in e.value.__notes__


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.02])
def test_truncated_shard_fails_at_open_naming_the_file(fixture_dir, keep):
    shard = _shard(fixture_dir)
    size = os.path.getsize(shard)
    os.truncate(shard, int(size * keep))
    with pytest.raises(input_pipeline.CorruptShardError) as e:
        _open(fixture_dir)
    message = str(e.value)
    assert message.startswith(f"{shard}: shard of split 'train' cannot be opened, it is truncated or damaged")
    assert "rebuild dataset 'bad_data_fixture'" in message


def test_shard_truncated_after_open_fails_at_read_naming_the_file(fixture_dir):
    source = _open(fixture_dir)
    shard = _shard(fixture_dir)
    os.truncate(shard, os.path.getsize(shard) // 2)
    with pytest.raises(input_pipeline.CorruptShardError, match=rf"^{shard}: cannot read record index 0 of "
                                                               r"'bad_data_fixture' split 'train'.*truncated"):
        source[0]


def test_missing_shard_fails_at_open_naming_the_file(fixture_dir):
    shard = _shard(fixture_dir)
    os.remove(shard)
    with pytest.raises(input_pipeline.CorruptShardError, match=rf"^{shard}: shard of split 'train' is missing"):
        _open(fixture_dir)
