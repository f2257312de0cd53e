"""imu_video_folder (issue 21 section 5, issue 19 item 4): a hostile suite, one case per class of bad manifest or
bad file (every file written here), then one test per manifest feature. Bad files are named in the error (with the
line and column of a csv value) under bad_file_policy="raise" and reported and skipped under "skip"."""

import json
import os
import re
import struct
import time
import zlib

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_builders.imu_video_folder import imu_video_folder_dataset_builder as folder
from data_builders.imu_video_folder import manifest as manifest_lib
from imujax import build_dataset, input_pipeline
from imujax.io import csv_table, timeseries, video_frames
from tests.folder_helpers import CHANNELS, build_folder, ids, imu, stored_report, write_folder, write_frames, write_mp4

HEADER = ",".join(CHANNELS) + "\n"


def manifest_error(root, data, pattern):
    with open(os.path.join(root, "manifest.json"), "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(manifest_lib.ManifestError, match=pattern):
        manifest_lib.read_manifest(str(root))


def base(**extra):
    return {"rate_hz": 10, "channels": CHANNELS, "units": {"acc": "m/s2"}, "recordings": [{"imu": "a.npy"}], **extra}


# -- the manifest: schema, bounded loading, paths ----------------------------------------------------------------------


@pytest.mark.parametrize("change, pattern", [
    ({"rate_hz": 0}, r"rate_hz: 0 is less than or equal to the minimum of 0"),
    ({"rate_hz": "fast"}, r"rate_hz: 'fast' is not of type 'number'"),
    ({"frames_fps": -1}, r"frames_fps: -1 is less than or equal to the minimum of 0"),
    ({"channels": []}, r"channels: \[\] should be non-empty"),
    ({"channels": ["w/acc_x", "w/acc_x"]}, r"channels: .* has non-unique elements"),
    ({"channels": ["w/acc_x", ""]}, r"channels\[1\]: '' does not match"),
    ({"csv_columns": "ax"}, r"csv_columns: 'ax' is not of type 'array'"),
    ({"recordings": [{"imu": "a.npy", "vidoe": "a.mp4"}]}, r"recordings\[0\]: Additional properties .*'vidoe'"),
    ({"recordings": [{"imu": "a.npy", "split": "a/b"}]}, r"recordings\[0\]\.split: 'a/b' does not match .*split"),
    ({"recordings": [{"imu": "a.npy", "frames_fps": 0}]}, r"recordings\[0\]\.frames_fps: 0 is less than or equal"),
    ({"recordings": []}, r"recordings: \[\] should be non-empty"),
    ({"units": {"acc": "g"}, "channels": ["w/gyro_x"]}, r"units has no entry for kind\(s\) \['gyro'\]"),
])
def test_manifest_schema_errors_name_the_key(tmp_path, change, pattern):
    np.save(tmp_path / "a.npy", imu(20))
    manifest_error(tmp_path, base(**change), pattern)


@pytest.mark.parametrize("text, pattern", [
    ('{"rate_hz": NaN, "channels": ["w/acc_x"], "units": {"acc": "g"}, "recordings": [{"imu": "a.npy"}]}',
     r"rate_hz: must be a finite number, got nan"),
    ('{"rate_hz": Infinity, "channels": ["w/acc_x"], "units": {"acc": "g"}, "recordings": [{"imu": "a.npy"}]}',
     r"rate_hz: must be a finite number, got inf"),
    ('{"rate_hz": 10, "channels": ["w/acc_x"], "units": {"acc": "g"}, '
     '"recordings": [{"imu": "a.npy", "video_offset_s": -Infinity}]}',
     r"recordings\[0\]\.video_offset_s: must be a finite number, got -inf"),
    ("[" * 10000 + "]" * 10000, r"not valid JSON|nested deeper"),
])
def test_non_finite_numbers_and_deep_nesting_are_refused(tmp_path, text, pattern):
    manifest_error(tmp_path, text, pattern)


def test_yaml_is_loaded_safely_and_bounded(tmp_path):
    # billion laughs: 9 levels of 10 aliases expand to 10^9 strings; must fail fast, not hang
    lines = ['a0: &a0 "lol"'] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    (tmp_path / "manifest.yaml").write_text("\n".join(lines) + "\nrate_hz: 10\n")
    start = time.monotonic()
    with pytest.raises(manifest_lib.ManifestError, match=r"manifest\.yaml: more than \d+ values once YAML aliases"):
        manifest_lib.read_manifest(str(tmp_path))
    assert time.monotonic() - start < 5
    (tmp_path / "manifest.yaml").write_text("x: &x [1]\n" + "".join(f"y{i}: *x\n" for i in range(2000)))
    with pytest.raises(manifest_lib.ManifestError, match=r"more than 1000 YAML aliases"):
        manifest_lib.read_manifest(str(tmp_path))
    (tmp_path / "manifest.yaml").write_text("rate_hz: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(manifest_lib.ManifestError, match=r"not valid YAML"):  # SafeLoader: no Python objects
        manifest_lib.read_manifest(str(tmp_path))
    (tmp_path / "manifest.yaml").write_text("x: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(manifest_lib.ManifestError, match=r"nested deeper than 32 levels"):
        manifest_lib.read_manifest(str(tmp_path))


def test_paths_stay_inside_the_folder_unless_the_manifest_opts_out(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    np.save(tmp_path / "outside.npy", imu(20))
    os.symlink(tmp_path / "outside.npy", root / "link.npy")
    for path in ("../outside.npy", str(tmp_path / "outside.npy"), "link.npy"):
        manifest_error(root, base(recordings=[{"imu": path}]),
                       r"recordings\[0\]\.imu: .* outside the manifest's folder .*allow_outside_paths: true")
    write_folder(root, [{"imu": "../outside.npy"}, {"imu": "link.npy"}], allow_outside_paths=True)
    assert [r.name for r in manifest_lib.read_manifest(str(root)).recordings] == ["outside", "link"]


def test_fifo_and_device_files_are_refused_not_read(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    np.save(root / "good.npy", imu(20))
    os.mkfifo(root / "fifo.csv")
    os.symlink("/dev/zero", root / "dev.npy")
    write_folder(root, [{"imu": "good.npy"}, {"imu": "fifo.csv"}, {"imu": "dev.npy"}], allow_outside_paths=True)
    with pytest.raises(manifest_lib.ManifestError, match=r"recordings\[1\]: imu file: .*fifo\.csv is a FIFO"):
        manifest_lib.read_manifest(str(root))
    builder = build_folder(root, tmp_path / "data", policy="skip", with_video=False)
    assert ids(builder) == ["train_good_0000", "train_good_0001"]
    report = {b["file"]: b["error"] for b in stored_report(builder)}
    assert "fifo.csv is a FIFO, not a regular file" in report["fifo.csv"]
    assert "dev.npy is a device file" in report["dev.npy"]


def test_duplicate_recording_names_say_which_recordings_collide(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        np.save(tmp_path / sub / "rec.npy", imu(20))
    manifest_error(tmp_path, base(recordings=[{"imu": "a/rec.npy"}, {"imu": "b/rec.npy"}]),
                   r"recording names must be unique .*'rec': recordings\[0\] \(.*a/rec\.npy\), recordings\[1\] "
                   r"\(.*b/rec\.npy\)")


# -- bad files: named under "raise", reported and skipped under "skip" -------------------------------------------------


def png_declaring(width, height) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb: no pixel data is needed to claim it)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def damaged_mp4(path):
    """An mp4 whose container is intact and whose frame data (the middle of mdat) is noise: decoding fails."""
    write_mp4(path, 3.0, size=(64, 64))
    data = bytearray(path.read_bytes())
    mdat = data.find(b"mdat")
    size = struct.unpack(">I", data[mdat - 4:mdat])[0]
    data[mdat + size // 4:mdat + size * 3 // 4] = np.random.default_rng(0).bytes(size // 2)
    path.write_bytes(bytes(data))


def npy_header_only(path, shape, descr="<f4"):
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.write(b"\0" * 96)


BAD_FILES = {  # recording name -> (error under "raise" (file named), writer of its files)
    "not_utf8": (csv_table.CsvFormatError, r"not_utf8\.csv: line 3, byte 3: not UTF-8",
                 lambda root: (root / "not_utf8.csv").write_bytes(HEADER.encode() + b"1,2,3\n1,\xff\xfe,3\n")),
    "big_field": (csv_table.CsvFormatError, r"big_field\.csv: line 2: field larger than field limit",
                  lambda root: (root / "big_field.csv").write_text(HEADER + '"' + "9" * 200_000 + '",2,3\n')),
    "long_line": (csv_table.CsvFormatError, r"long_line\.csv: line 2 is longer than 1048576 bytes",
                  lambda root: (root / "long_line.csv").write_text(HEADER + "1" * (2 << 20) + "\n")),
    "text_npy": (manifest_lib.ManifestError, r"text_npy\.npy: dtype <U3 is not a plain integer or float type",
                 lambda root: np.save(root / "text_npy.npy", np.full((20, 3), "abc"))),
    "object_npy": (manifest_lib.ManifestError, r"object_npy\.npy: dtype object is not a plain",
                   lambda root: np.save(root / "object_npy.npy", np.full((20, 3), None, object), allow_pickle=True)),
    "forged_npy": (manifest_lib.ManifestError, r"forged_npy\.npy: the header declares shape \(1000000000, 3\) of "
                   r"float32 \(12000000000 bytes\) but the file holds 96 bytes",
                   lambda root: npy_header_only(root / "forged_npy.npy", (10**9, 3))),
    "overflow_csv": (manifest_lib.ManifestError, r"overflow_csv\.csv: 1 value\(s\) are beyond the float32 range "
                     r"once converted to SI units \(x 9\.80665\), first at line 4, column 'wrist/acc_y': 1e\+38",
                     lambda root: (root / "overflow_csv.csv").write_text(HEADER + "1,2,3\n" * 2 + "1,1e38,3\n"
                                                                          + "1,2,3\n" * 20)),
    "overflow_npy": (manifest_lib.ManifestError, r"overflow_npy\.npy: 1 value\(s\) are beyond the float32 range .*"
                     r"first at \[row, column\] \[5, 2\]: 1e\+300",
                     lambda root: np.save(root / "overflow_npy.npy", np.where(np.arange(60).reshape(20, 3) == 17,
                                                                              1e300, 1.0))),
}
MP4_BAD = {
    "damaged_mp4": (video_frames.VideoError, r"damaged_mp4\.mp4: video cannot be decoded \(InvalidDataError",
                    lambda root: damaged_mp4(root / "damaged_mp4.mp4")),
    # FFmpeg's probe takes some byte strings for an audio-only stream: either way the error names the file.
    "garbage_mp4": (video_frames.VideoError, r"garbage_mp4\.mp4: (cannot open as a video container|no video stream)",
                    lambda root: (root / "garbage_mp4.mp4").write_bytes(np.random.default_rng(0).bytes(2000))),
    "bomb_png": (video_frames.VideoError, r"bomb_png_frames/0000\.png: frame size 9000x9000 is over the limit",
                 lambda root: (write_frames(root / "bomb_png_frames", 20),
                               (root / "bomb_png_frames" / "0000.jpg").unlink(),
                               (root / "bomb_png_frames" / "0000.png").write_bytes(png_declaring(9000, 9000)))),
    "huge_png": (video_frames.VideoError, r"huge_png_frames/0000\.png: frame cannot be decoded "
                 r"\(DecompressionBombError",
                 lambda root: (write_frames(root / "huge_png_frames", 20),
                               (root / "huge_png_frames" / "0000.jpg").unlink(),
                               (root / "huge_png_frames" / "0000.png").write_bytes(png_declaring(30000, 30000)))),
}


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    np.save(root / "good.npy", imu(20))
    write_frames(root / "good_frames", 20)
    entries = [{"imu": "good.npy", "video": "good_frames"}]
    for name, (_, _, write) in {**BAD_FILES, **MP4_BAD}.items():
        write(root)
        if name in BAD_FILES:
            entries.append({"imu": next(f.name for f in root.iterdir() if f.stem == name), "video": "good_frames",
                            **({"units": {"acc": "g"}} if name == "overflow_csv" else {})})  # 1e38 g > float32
        else:
            np.save(root / f"{name}.npy", imu(20))
            entries.append({"imu": f"{name}.npy", "video": f"{name}.mp4" if name.endswith("mp4")
                            else f"{name}_frames"})
    write_folder(root, entries)
    return root


@pytest.mark.parametrize("name", [*BAD_FILES, *MP4_BAD])
def test_bad_file_is_named_under_raise(hostile_folder, tmp_path, name):
    """What the build calls for one recording, with the default policy: the error names the file."""
    error, pattern, _ = {**BAD_FILES, **MP4_BAD}[name]
    m = manifest_lib.read_manifest(str(hostile_folder))
    [r] = [r for r in m.recordings if r.name == name]
    builder = folder.Builder(config=folder.ImuVideoFolderConfig(name="raise", window_s=1.0, video_fps=2.0,
                                                                frame_size=(8, 8)), data_dir=str(tmp_path))
    with pytest.raises(error, match=pattern) as raised:
        builder._recording_examples(r, m)
    assert raised.value.bad_file.startswith(str(hostile_folder))


def test_bad_files_are_reported_and_skipped_under_skip(hostile_folder, tmp_path):
    with pytest.raises(csv_table.CsvFormatError, match=r"not_utf8\.csv"):  # the first bad recording stops the build
        build_folder(hostile_folder, tmp_path / "strict")
    builder = build_folder(hostile_folder, tmp_path / "lenient", policy="skip")
    assert ids(builder) == ["train_good_0000", "train_good_0001"]
    report = {b["recording"]: b for b in stored_report(builder)}
    assert set(report) == set(BAD_FILES) | set(MP4_BAD)
    for name, (_, pattern, _) in {**BAD_FILES, **MP4_BAD}.items():
        assert name in report[name]["file"] and re.search(pattern, report[name]["error"])


def test_negative_video_offset_behaves_the_same_for_mp4_and_frame_folders(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    write_mp4(root / "clip.mp4", 4.0)     # 40 frames at 10 fps
    write_frames(root / "clip_frames", 40)  # 40 frames at frames_fps 10
    np.save(root / "a.npy", imu(50))
    np.save(root / "b.npy", imu(50))
    write_folder(root, [{"imu": "a.npy", "video": "clip.mp4", "video_offset_s": -1.5},
                        {"imu": "b.npy", "video": "clip_frames", "video_offset_s": -1.5}])
    builder = build_folder(root, tmp_path / "data")
    # windows start at 0..4 s; their 2 frames are at video time start - 1.5 s and start - 1 s: the windows at 0 and
    # 1 s would need frames before the first one and are left out, for both kinds of video
    assert ids(builder) == [f"train_{n}_{k:04d}" for n in "ab" for k in range(3)]
    assert dict(builder.info.metadata["windows_outside_video"]) == {"a": 2, "b": 2}
    starts = sorted((r["recording"], float(r["start_s"])) for r in builder.as_data_source(split="train"))
    assert starts == [(n, s) for n in (b"a", b"b") for s in (2.0, 3.0, 4.0)]
    frames = {r["id"].decode(): [10 * round(np.asarray(f).mean() / 10) for f in r["video"]] for r in records(builder)}
    assert frames["train_b_0000"] == [50, 100]  # video times 0.5 and 1 s: frames 5 and 10


# -- manifest features -------------------------------------------------------------------------------------------------


def build(root, data_dir, **config):
    config = {"name": "t", "window_s": 1.0, "stride_s": 1.0, "with_video": False, **config}
    builder = folder.Builder(config=folder.ImuVideoFolderConfig(**config), data_dir=str(data_dir),
                             file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    return builder


def records(builder, split="train"):
    return sorted(builder.as_data_source(split=split), key=lambda r: r["id"])


def test_per_recording_channels_placement_and_channel_selection(tmp_path):
    np.save(tmp_path / "wrist.npy", imu(20))
    np.save(tmp_path / "thigh.npy", imu(20))
    np.save(tmp_path / "six.npy", np.ones((20, 6)))
    write_folder(tmp_path, [{"imu": "wrist.npy"}, {"imu": "thigh.npy", "placement": "thigh"},
                            {"imu": "six.npy", "channels": [f"chest/{k}_{a}" for k in ("acc", "gyro") for a in "xyz"],
                             "units": {"acc": "g", "gyro": "deg/s"}}])
    every = build(tmp_path, tmp_path / "every")
    layouts = {r["recording"].decode(): [c.decode() for c in r["channels"]] for r in records(every)}
    assert layouts["thigh"] == ["thigh/acc_x", "thigh/acc_y", "thigh/acc_z"] and len(layouts["six"]) == 6
    info = every.info.metadata
    assert info["channels"] is None and info["num_channels"] is None and len(info["channel_layouts"]) == 3
    six = [r for r in records(every) if r["recording"] == b"six"][0]
    np.testing.assert_allclose(six["imu"][0], [9.80665] * 3 + [np.pi / 180] * 3, rtol=1e-6)
    # a system with a fixed layout picks channels by name or pattern; every recording then has that layout
    picked = build(tmp_path, tmp_path / "picked", channels=("*/acc_z", "*/acc_x"))
    assert picked.info.metadata["num_channels"] == 2 and picked.info.metadata["channels"] is None
    assert {tuple(c.decode().split("/")[1] for c in r["channels"]) for r in records(picked)} == {("acc_z", "acc_x")}
    np.testing.assert_array_equal(records(picked)[-1]["imu"][:, 1], imu(20)[10:, 0])  # train_wrist_0001
    with pytest.raises(manifest_lib.ManifestError, match=r"config channel 'chest/gyro_x' matches 0 of"):
        build(tmp_path, tmp_path / "missing", channels=("chest/gyro_x",))


def test_per_recording_frames_fps(tmp_path):
    write_frames(tmp_path / "slow", 10)   # 10 frames at 5 fps: 2 s
    write_frames(tmp_path / "fast", 40)   # 40 frames at 20 fps: 2 s
    for name in ("slow", "fast"):
        np.save(tmp_path / f"{name}.npy", imu(20))
    write_folder(tmp_path, [{"imu": "slow.npy", "video": "slow", "frames_fps": 5},
                            {"imu": "fast.npy", "video": "fast", "frames_fps": 20}])
    builder = build(tmp_path, tmp_path / "data", with_video=True, video_fps=2.0, frame_size=(8, 8))
    grey = {r["id"].decode(): [10 * round(np.asarray(f).mean() / 10) for f in r["video"]] for r in records(builder)}
    # second window (1 s): frames at 1.0 and 1.5 s -> frames 5 and 8 (rint 7.5) at 5 fps, 20 and 30 at 20 fps;
    # frame i is grey level 10 i mod 250
    assert grey["train_slow_0001"] == [50, 80] and grey["train_fast_0001"] == [200, 50]


def test_timestamp_column_resamples_averages_duplicates_and_splits_long_gaps(tmp_path):
    times = [0.0, 0.1, 0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,          # a duplicate, a 0.2 s gap (filled)
             3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0, 4.1]     # after a 2 s gap: a second segment
    values = [10 * t for t in times]
    values[2] = 3.0  # averaged with the 1.0 at the same time: 2.0
    rows = [f"{t * 1000:.0f},{v},0,0" for t, v in zip(times, values)]
    (tmp_path / "phone.csv").write_text("ms," + HEADER + "\n".join(rows) + "\n")
    write_folder(tmp_path, [{"imu": "phone.csv"}], timestamp_column="ms", timestamp_unit="ms", max_gap_s=0.5)
    got = records(build(tmp_path, tmp_path / "data"))  # segments 0..1 s (11 samples) and 3..4.1 s (12 samples)
    assert [float(r["start_s"]) for r in got] == [0.0, pytest.approx(3.0)]
    np.testing.assert_allclose(got[0]["imu"][:, 0], [0, 2, 2.5, 3, 4, 5, 6, 7, 8, 9], atol=1e-5)  # 0.2 s: (2+3)/2
    np.testing.assert_allclose(got[1]["imu"][:, 0], np.arange(30, 40), atol=1e-4)
    (tmp_path / "phone.csv").write_text("ms," + HEADER + "0,1,2,3\n100,1,2,3\n50,1,2,3\n")
    with pytest.raises(timeseries.TimeSeriesError, match=r"phone\.csv: line 4, column 'ms': timestamp goes backwards"):
        build(tmp_path, tmp_path / "backwards")


def test_label_column_gives_majority_or_centre_window_labels(tmp_path):
    labels = ["sit"] * 3 + ["walk"] * 2 + ["sit"] + ["walk"] * 4 + [""] * 6 + ["sit"] * 2 + ["walk"] * 2
    rows = [f"{i},0,0,{lab}" for i, lab in enumerate(labels)]
    (tmp_path / "a.csv").write_text(HEADER.strip() + ",activity\n" + "\n".join(rows) + "\n")
    write_folder(tmp_path, [{"imu": "a.csv"}], label_column="activity", classes=["walk", "sit"])
    majority = records(build(tmp_path, tmp_path / "majority"))
    assert [int(r["label"]) for r in majority] == [0, 0]  # 6 walk / 4 sit; a 2 / 2 tie (6 unlabelled): walk
    centre = records(build(tmp_path, tmp_path / "centre", window_label="centre"))
    assert [int(r["label"]) for r in centre] == [1, -1]   # sample 5 (sit), sample 15 (unlabelled)
    (tmp_path / "a.csv").write_text(HEADER.strip() + ",activity\n0,0,0,walk\n1,0,0,run\n")
    with pytest.raises(manifest_lib.ManifestError, match=r"a\.csv: line 3, column 'activity': label 'run' is not in"):
        build(tmp_path, tmp_path / "unknown")


def test_folds_select_cross_validation_splits_with_tfds_split_arithmetic(tmp_path):
    for k in range(3):
        np.save(tmp_path / f"s{k}.npy", imu(20))
    write_folder(tmp_path, [{"imu": f"s{k}.npy", "fold": k, "subject": f"p{k}"} for k in range(3)])
    builder = build(tmp_path, tmp_path / "data")
    assert builder.info.metadata["folds"] == ["fold0", "fold1", "fold2"] and set(builder.info.splits) == {
        "fold0", "fold1", "fold2"}
    config = ml_collections.ConfigDict({"data": {"name": "imu_video_folder/t", "data_dir": str(tmp_path / "data")}})
    train = input_pipeline.open_source(config, str(tmp_path), "fold0+fold2")  # --config.data.train_split=...
    assert sorted({(train[i]["fold"], train[i]["subject"]) for i in range(len(train))}) == [(b"fold0", b"p0"),
                                                                                           (b"fold2", b"p2")]


def test_pad_short_keeps_short_recordings_padded_with_a_valid_count(tmp_path):
    np.save(tmp_path / "long.npy", imu(20))
    np.save(tmp_path / "short.npy", imu(4))
    write_folder(tmp_path, [{"imu": "long.npy"}, {"imu": "short.npy"}])
    got = {r["id"].decode(): r for r in records(build(tmp_path, tmp_path / "data", pad_short=True))}
    short = got["train_short_0000"]
    assert short["imu"].shape == (10, 3) and int(short["valid_samples"]) == 4
    np.testing.assert_array_equal(short["imu"][:4], imu(4))
    np.testing.assert_array_equal(short["imu"][4:], 0)
    assert int(got["train_long_0001"]["valid_samples"]) == 10


def test_cli_json_window_config_and_metadata_a_consumer_reads(tmp_path):
    root = tmp_path / "mine"
    write_frames(root / "frames", 40)
    np.save(root / "a.npy", imu(40))
    write_folder(root, [{"imu": "a.npy", "video": "frames"}], classes=["walk"], description="a wrist band")
    config = {"name": "w3", "window_s": 3, "stride_s": 0.5, "video_fps": 2, "frame_size": [8, 8]}
    build_dataset.main(["data_builders/imu_video_folder", f"--data_dir={tmp_path / 'data'}", f"--manual_dir={root}",
                        f"--config={json.dumps(config)}"])
    source = tfds.data_source("imu_video_folder/w3", data_dir=str(tmp_path / "data"), split="train")
    meta = source.dataset_info.metadata
    assert len(source) == 3 and source[0]["imu"].shape == (30, 3)
    assert meta["channels"] == CHANNELS and meta["num_channels"] == 3 and meta["rate_hz"] == 10
    assert meta["window"] == 30 and meta["window_s"] == 3 and meta["class_names"] == ["walk"]
    assert meta["description"] == "a wrist band" and meta["splits"] == ["train"]
    assert (meta["video_fps"], meta["video_frames"], meta["frame_size"]) == (2, 6, [8, 8])
    with pytest.raises(ValueError, match=r"config 'bad': stride_s=0: must be a finite number > 0"):
        folder.check_config(folder.ImuVideoFolderConfig(name="bad", stride_s=0))
