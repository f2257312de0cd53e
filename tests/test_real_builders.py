"""Real-dataset builders on tiny fixtures written here in each dataset's layout: RevalExo (trimmed.zip), the EVI-MAE
release, Ego4D IMU + narrations, and a user folder with a manifest. Frames carry their index as a grey level, so
the tests can check which video frame each stored frame came from."""

import csv
import io
import json
import os

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_builders.ego4d_imu import ego4d_imu_dataset_builder as ego4d
from data_builders.evi_mae_release import evi_mae_release_dataset_builder as release
from data_builders.imu_video_folder import imu_video_folder_dataset_builder as folder
from data_builders.imu_video_folder import manifest as manifest_lib
from data_builders.revalexo import parsing as revalexo_parsing
from data_builders.revalexo import revalexo_dataset_builder as revalexo
from imujax.transforms import channel_layouts


def write_mp4(path, seconds: float, fps: int = 10, size=(48, 64)):
    """Frame i is uniform grey at level 16 * (i mod 16): `frame_index_mod16` reads it back."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 20_000_000
        for i in range(int(seconds * fps)):
            image = np.full((*size, 3), 16 * (i % 16) + 8, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frame_index_mod16(jpeg) -> int:
    data = jpeg if isinstance(jpeg, np.ndarray) else np.asarray(Image.open(io.BytesIO(jpeg)))
    level = float(np.asarray(data).mean())
    assert abs((level - 8) / 16 - round((level - 8) / 16)) < 0.3, f"grey level {level} is between two frames"
    return int(round((level - 8) / 16)) % 16


def build(builder_cls, config, data_dir, manual_dir):
    builder = builder_cls(data_dir=str(data_dir), config=config, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


# -- RevalExo ---------------------------------------------------------------------------------------------------------

SENSOR_HEADERS = ["Pelvis", "Right_Upper_Leg", "Right_Lower_Leg", "Right_Foot", "Left_Upper_Leg", "Left_Lower_Leg",
                  "Left_Foot"]  # raw csv order per the migration script's comment
HEADER = ["time"] + [f"{k}_{s}_{a}" for k in ("acc", "gyro") for s in SENSOR_HEADERS for a in "xyz"]


def revalexo_root(tmp_path):
    root = tmp_path / "trimmed"
    (root / "data_pairs").mkdir(parents=True)
    (root / "label_mapping.json").write_text(json.dumps({"label_to_idx": {"Background": 0, "Walking": 1,
                                                                          "Stairs_Up": 2}}))
    for s, subject in enumerate(("Subject01", "Subject05")):
        rows = 6 * 60
        values = np.arange(rows)[:, None] * 0.01 + np.arange(42)[None] + 100 * s
        os.makedirs(root / "trim_imus" / subject)
        with open(root / "trim_imus" / subject / "p1.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            for r in range(rows):
                cells = [f"{r / 60:.4f}"] + [f"{v:.4f}" for v in values[r]]
                if r == 5:
                    cells[1] = ""  # a missing pelvis acc_x value
                writer.writerow(cells)
        write_mp4(root / "trim_videos" / subject / "p1.mp4", 6)
        pairs = {"p1": {"imu": "p1.csv", "video": "p1.mp4", "has_ego_video": True,
                        "activity_segments": [{"start": 0, "end": 3, "activity": "Walking"},
                                              {"start": 3.2, "end": 6, "activity": "Stairs_Up"}],
                        "transition_segments": [{"start": 2.9, "end": 3.3, "transition": "walk_to_stairs"}]}}
        (root / "data_pairs" / f"{subject}.json").write_text(json.dumps(
            {"subject": subject, "has_ego_video": True, "video_folder": subject, "imu_folder": subject,
             "pairs": pairs}))
    return root


REVALEXO_TEST = revalexo.RevalExoConfig(name="fixture", window_s=2.0, stride_s=1.0, max_start_s=None, min_clip_s=4.0,
                                        horizons_s=(0.0, 0.1, 1.0), video_fps=5.0, frame_size=(32, 32))


@pytest.fixture(scope="module")
def revalexo_built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("revalexo")
    root = revalexo_root(tmp)
    return build(revalexo.Builder, REVALEXO_TEST, tmp / "data", root), root


def test_revalexo_windows_labels_channels_and_frames(revalexo_built):
    builder, root = revalexo_built
    assert set(builder.info.splits) == {"Subject01", "Subject05"}
    source = builder.as_data_source(split="Subject01")
    recs = sorted((source[i] for i in range(len(source))), key=lambda r: float(r["start_s"]))
    # duration 6 s, window 2, stride 1: starts 0..floor(6 - 2 - 1) = 0, 1, 2, 3
    assert [float(r["start_s"]) for r in recs] == [0, 1, 2, 3]
    # labels at window end + (0, .1, 1.0): Walking on [0, 3], gap (3, 3.2) -> Background, Stairs_Up on [3.2, 6]
    expected = {0: ([1, 1, 1], [False, False, True]), 1: ([1, 0, 2], [True, True, False]),
                2: ([2, 2, 2], [False, False, False]), 3: ([2, 2, 2], [False, False, False])}
    csv_rows = np.genfromtxt(root / "trim_imus" / "Subject01" / "p1.csv", delimiter=",", skip_header=1)
    for r in recs:
        start = int(r["start_s"])
        assert r["labels"].tolist() == expected[start][0] and r["transitions"].tolist() == expected[start][1]
        names = [c.decode() for c in r["channels"]]
        assert names[0] == "pelvis/acc_x" and names[-1] == "left_foot/gyro_z" and len(names) == 42
        np.testing.assert_allclose(r["imu"], csv_rows[start * 60:start * 60 + 120, 1:], rtol=1e-6)
        # frame j at start + j / 5 s -> video frame round(10 * t), grey level 8 * index
        for j, frame in enumerate(r["video"]):
            assert frame_index_mod16(frame) == round(10 * (start + j / 5)) % 16
    assert np.isnan(recs[0]["imu"][5, 0])  # missing value kept as NaN (filled with 0 by the transform)
    # EVI-MAE slots: pretraining mapping = left_foot, right_foot, left_upper_leg, right_upper_leg acc by header name
    slots = channel_layouts.to_evi_mae_slots(recs[1], "pretrain")
    header = HEADER[1:]
    cols = [header.index(f"acc_{s}_{a}") for s in ("Left_Foot", "Right_Foot", "Left_Upper_Leg", "Right_Upper_Leg")
            for a in "xyz"]
    np.testing.assert_allclose(slots, csv_rows[60:180, 1:][:, cols], rtol=1e-6)
    contrastive = channel_layouts.contrastive_channels(recs[0])
    assert contrastive.shape == (120, 42) and contrastive[5, 0] == 0.0
    both = builder.as_data_source(split="Subject01+Subject05")
    assert len(both) == 8


def test_revalexo_errors_name_the_file(tmp_path):
    root = revalexo_root(tmp_path)
    bad = root / "data_pairs" / "Subject05.json"
    data = json.loads(bad.read_text())
    del data["pairs"]["p1"]["imu"]
    bad.write_text(json.dumps(data))
    with pytest.raises(revalexo_parsing.RevalExoError, match=r"Subject05\.json: pairs\['p1'\]: missing field 'imu'"):
        revalexo_parsing.read_pairs(str(root), require_video=True)
    csv_path = root / "trim_imus" / "Subject01" / "p1.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[2], "oops", 1)
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(revalexo_parsing.RevalExoError, match=r"p1\.csv: line 4, column 'acc_Pelvis_y'"):
        revalexo_parsing.read_imu_csv(str(csv_path))


# -- EVI-MAE release --------------------------------------------------------------------------------------------------


def release_root(tmp_path):
    root = tmp_path / "data_release" / "cmu-mmac-release"
    (root / "cav_label").mkdir(parents=True)
    with open(root / "cav_label" / "class_labels_indices.csv", "w") as f:
        f.write("index,mid,display_name\n0,m0,stir\n1,m1,pour\n2,m2,crack egg\n")
    rng = np.random.default_rng(0)
    tables = {}
    for split, clips in (("train", ["a", "b"]), ("test", ["c"])):
        entries = []
        for clip in clips:
            table = rng.normal(size=(31, 20)).round(4)  # row 0 is eaten as a header upstream
            tables[clip] = table
            os.makedirs(root / "imu", exist_ok=True)
            np.savetxt(root / "imu" / f"{clip}.csv", table, delimiter=",", fmt="%.4f")
            write_mp4(root / "video" / f"{clip}.mp4", 1.0)
            entries.append({"video_id": clip, "imu": f"imu/{clip}.csv", "frame_path": f"video/{clip}.mp4",
                            "label": {"a": "m1,m2", "b": 0, "c": "m0"}[clip]})
        os.makedirs(root / "cav_label" / f"{split}_finetune")
        (root / "cav_label" / f"{split}_finetune" / "labels_1.json").write_text(json.dumps({"data": entries}))
    return root, tables


def test_evi_mae_release_header_quirk_columns_and_labels(tmp_path):
    root, tables = release_root(tmp_path)
    config = release.EviMaeReleaseConfig(name="fixture", dataset="cmu_mmac", stage="finetune", video_fps=10.0,
                                         frame_size=(32, 32))
    builder = build(release.Builder, config, tmp_path / "data", root.parent)  # data_release/ as manual dir
    train = {r["id"].decode(): r for r in builder.as_data_source(split="train")}
    cmu = [1, 8, 15, 5, 12, 19, 3, 10, 17, 4, 11, 18]
    np.testing.assert_allclose(train["a"]["imu"], tables["a"][1:, cmu], rtol=1e-6)
    assert train["a"]["labels"].tolist() == [0, 1, 1] and train["a"]["label"] == 1
    assert train["b"]["labels"].tolist() == [0, 0, 0] and train["b"]["label"] == -1
    assert train["a"]["text"].decode() == "pour, crack egg"
    assert len(train["a"]["video"]) == 10
    assert [frame_index_mod16(f) for f in train["a"]["video"]] == list(range(10))
    test = builder.as_data_source(split="test")
    assert len(test) == 1 and test[0]["labels"].tolist() == [1, 0, 0]


def test_evi_mae_release_errors(tmp_path):
    with pytest.raises(release.ReleaseFormatError, match=r"labels_1\.json: data\[0\]: label 'm9'"):
        release.parse_label("m9", ["m0"], "x/labels_1.json: data[0]")
    path = tmp_path / "short.csv"
    np.savetxt(path, np.zeros((3, 5)), delimiter=",")
    with pytest.raises(release.ReleaseFormatError, match=r"short\.csv: line 2 has 5 columns; column 19"):
        release.read_imu(str(path), release.COLUMNS["cmu_mmac"])


# -- Ego4D ------------------------------------------------------------------------------------------------------------


def test_ego4d_narration_windows_resampling_and_text(tmp_path):
    root = tmp_path / "ego4d"
    (root / "imu").mkdir(parents=True)
    t_ms = np.arange(0, 12000, 10)  # 100 Hz, 12 s
    signal = np.stack([np.sin(2 * np.pi * 0.5 * t_ms / 1000 + k) + k for k in range(6)], axis=1)
    with open(root / "imu" / "vid1.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["component_idx", "component_timestamp_ms", "canonical_timestamp_ms", *ego4d.COLUMNS])
        writer.writerow([0, 0, "", *(["1"] * 6)])  # NaN timestamp: dropped
        for t, row in zip(t_ms, signal):
            writer.writerow([0, t, t, *[f"{v:.6f}" for v in row]])
    write_mp4(root / "video" / "vid1.mp4", 12)
    narr = [{"timestamp_sec": 6.3, "narration_text": "#C C picks a cup."},
            {"timestamp_sec": 2.0, "narration_text": "#C C walks"},
            {"timestamp_sec": 11.5, "narration_text": "#C C sits #unsure"},
            {"timestamp_sec": 7.0, "narration_text": "no camera wearer tag"}]
    (root / "narration.json").write_text(json.dumps({"vid1": {"narration_pass_1": {"narrations": narr[:3]},
                                                              "narration_pass_2": {"narrations": narr[3:]}},
                                                     "vid_without_imu": {}}))
    config = ego4d.Ego4dImuConfig(name="fixture", video_fps=2.0, frame_size=(32, 32))
    builder = build(ego4d.Builder, config, tmp_path / "data", root)
    recs = {r["text"].decode(): r for r in builder.as_data_source(split="train")}
    assert set(recs) == {"picks a cup", "walks", "sits something"}
    # 6.3 -> [3.8, 8.8] floored to [3, 8]; 2.0 <= 5 -> [0, 5]; 11.5 + 5 >= 11.99 -> [6.99, 11.99] -> [6, 11]
    assert {k: float(r["start_s"]) for k, r in recs.items()} == {"picks a cup": 3, "walks": 0, "sits something": 6}
    r = recs["picks a cup"]
    assert r["imu"].shape == (1000, 6)
    t = 3 + np.arange(1000) / 200  # resampled to 200 Hz: the band-limited sine at the new sample times
    reference = np.stack([np.sin(2 * np.pi * 0.5 * t + k) + k for k in range(6)], axis=1)
    # the windowed-sinc kernel's DC gain is within ~1e-3 of one (torchaudio's), hence the relative tolerance
    np.testing.assert_allclose(r["imu"], reference, rtol=2e-3, atol=2e-3)
    assert len(r["video"]) == 10 and frame_index_mod16(r["video"][1]) == 35 % 16  # t = 3.5 s -> frame 35
    assert ego4d.narration_window(4.7, 100, 2.5) == (0, 5) and ego4d.narration_window(5.2, 100, 2.5) == (2, 7)


# -- user folder ------------------------------------------------------------------------------------------------------


def test_imu_video_folder_units_windows_video_and_frames(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    acc_g = np.linspace(-1, 1, 300)[:, None] * np.array([1, 2, 3])
    gyro_deg = np.linspace(0, 90, 300)[:, None] * np.array([1, -1, 0.5])
    with open(root / "rec1.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ax", "ay", "az", "gx", "gy", "gz", "ignored"])
        for a, g in zip(acc_g, gyro_deg):
            writer.writerow([*a, *g, "x"])
    np.save(root / "rec2.npy", np.concatenate([acc_g, gyro_deg], axis=1)[:200])
    write_mp4(root / "rec1.mp4", 3.5)
    (root / "rec2_frames").mkdir()
    for i in range(25):
        Image.fromarray(np.full((40, 40, 3), 16 * (i % 16) + 8, np.uint8)).save(root / "rec2_frames" / f"{i:04d}.png")
    channels = [f"wrist/{k}_{a}" for k in ("acc", "gyro") for a in "xyz"]
    manifest = ("rate_hz: 100\nchannels: [" + ", ".join(channels) + "]\nunits: {acc: g, gyro: deg/s}\n"
                "csv_columns: [ax, ay, az, gx, gy, gz]\nframes_fps: 10\nclasses: [walk, sit]\nrecordings:\n"
                "  - {imu: rec1.csv, video: rec1.mp4, video_offset_s: 0.5, label: walk, subject: me, split: train}\n"
                "  - {imu: rec2.npy, video: rec2_frames, label: sit, subject: you, split: test}\n")
    (root / "manifest.yaml").write_text(manifest)
    config = folder.ImuVideoFolderConfig(name="fixture", window_s=1.0, stride_s=1.0, video_fps=4.0,
                                         frame_size=(16, 16))
    builder = build(folder.Builder, config, tmp_path / "data", root)
    train = sorted(builder.as_data_source(split="train"), key=lambda r: float(r["start_s"]))
    assert len(train) == 3 and all(r["label"] == 0 for r in train)
    si = np.concatenate([acc_g * 9.80665, np.deg2rad(gyro_deg)], axis=1)
    np.testing.assert_allclose(train[1]["imu"], si[100:200], rtol=1e-5)
    # window at 1 s, offset 0.5 s: frames at 1.5, 1.75, 2.0, 2.25 s -> video frames 15, 18, 20, 23 (a time halfway
    # between two frames takes the later one)
    assert [frame_index_mod16(f) for f in train[1]["video"]] == [15, 18 % 16, 20 % 16, 23 % 16]
    test = sorted(builder.as_data_source(split="test"), key=lambda r: float(r["start_s"]))
    assert len(test) == 2 and test[0]["label"] == 1
    assert [frame_index_mod16(f) for f in test[1]["video"]] == [10, 12, 15, 18 % 16]  # rint(10 t) of 1, 1.25, 1.5, 1.75


def test_imu_video_folder_manifest_errors(tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    cases = [("rate_hz: 100\nchannels: [w/acc_x]\nunits: {acc: furlongs}\nrecordings: [{imu: a.csv}]\n",
              r"manifest\.yaml: units\.acc: unknown acc unit 'furlongs'"),
             ("rate_hz: 100\nchannels: [accx]\nunits: {acc: g}\nrecordings: [{imu: a.csv}]\n",
              r"channels\[0\]: 'accx' does not match .*channel names look like '<place>/<kind>_<axis>'"),
             ("rate_hz: 100\nchannels: [w/acc_x]\nunits: {acc: g}\nrecordings: [{imu: missing.csv}]\n",
              r"recordings\[0\]: imu file .*missing\.csv does not exist"),
             ("channels: [w/acc_x]\nunits: {acc: g}\nrecordings: []\n", r"\(top level\): 'rate_hz' is a required property")]
    for text, pattern in cases:
        (tmp_path / "manifest.yaml").write_text(text)
        with pytest.raises(manifest_lib.ManifestError, match=pattern):
            manifest_lib.read_manifest(str(tmp_path))
