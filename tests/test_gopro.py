"""GoPro MP4 + GPMF reader and the `gopro` TFDS builder, on the real GoPro MAX sample in shared/data.

Reference facts (sample counts, SCAL, rates, frame counts) come from shared/data/gopro/ATTRIBUTION.md, which was
measured with the upstream tools; byte-level checks use PyAV's demuxer and hand-decoded KLV headers.
"""

import io
import os
import shutil
import struct
import sys

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_builders.gopro import Builder, GoproConfig
from imujax.io import gpmf, mp4, video_frames

SAMPLE = "/work/shared/data/gopro/max-heromode.mp4"
MTRX = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float64)  # from ATTRIBUTION.md


@pytest.fixture(scope="module")
def streams():
    return gpmf.read_streams(SAMPLE, ["ACCL", "GYRO", "GRAV"])


@pytest.fixture(scope="module")
def pyav_gpmd_packets():
    with av.open(SAMPLE) as container:
        stream = container.streams[3]
        return [(float(p.pts * p.time_base), bytes(p)) for p in container.demux(stream) if p.size]


# ---------------------------------------------------------------- MP4 box walking

def test_gpmd_track_found_and_payloads_match_pyav(pyav_gpmd_packets):
    tracks = mp4.read_tracks(SAMPLE)
    track = mp4.find_track(tracks, "meta", "gpmd", SAMPLE)
    assert track.handler_name == "GoPro MET" and track.timescale == 1000
    assert [t.sample_format for t in tracks][:2] == ["avc1", "mp4a"]
    assert "fdsc" in [t.sample_format for t in tracks]  # the SOS meta track exists and must not be picked
    payloads = mp4.read_samples(SAMPLE, track)
    assert len(payloads) == 11
    assert payloads == [data for _, data in pyav_gpmd_packets]
    np.testing.assert_allclose(track.start_seconds, [t for t, _ in pyav_gpmd_packets])
    np.testing.assert_allclose(track.duration_seconds, [1.001] * 10 + [0.533])


# ---------------------------------------------------------------- KLV, scaling, timing

def test_accl_gyro_counts_scal_units(streams):
    accl, gyro = streams["ACCL"], streams["GYRO"]
    assert accl.values.shape == (2082, 3) and gyro.values.shape == (2082, 3)
    assert accl.scale.tolist() == [417.0] and gyro.scale.tolist() == [939.0]
    assert accl.units == "m/s²" and gyro.units == "rad/s"
    assert accl.name == "Accelerometer" and gyro.name == "Gyroscope"
    assert accl.payload_counts.tolist()[:3] == [198, 198, 197] and accl.payload_counts[-1] == 105


def test_first_accl_sample_matches_hand_decoded_bytes(streams, pyav_gpmd_packets):
    payload = pyav_gpmd_packets[0][1]
    at = payload.find(b"ACCL")
    key, type_char, size, repeat = struct.unpack(">4scBH", payload[at:at + 8])
    assert (type_char, size, repeat) == (b"s", 6, 198)
    first = np.array(struct.unpack(">3h", payload[at + 8:at + 14]), np.float64)
    unrotated = gpmf.read_stream(SAMPLE, "ACCL", apply_orientation=False)
    np.testing.assert_allclose(unrotated.values[0], first / 417.0)
    np.testing.assert_allclose(streams["ACCL"].values, unrotated.values @ MTRX.T)


def test_orientation_matrix_from_orin_orio_equals_mtrx(streams):
    np.testing.assert_array_equal(gpmf.orientation_matrix("XzY", "ZXY", "test"), MTRX)
    np.testing.assert_array_equal(streams["ACCL"].axis_matrix, MTRX)


def test_physical_plausibility(streams):
    acc = streams["ACCL"].values
    magnitude = np.linalg.norm(acc, axis=1).mean()
    assert 9.6 < magnitude < 10.0  # gravity plus walking
    assert acc[:, 0].mean() > 9.0  # gravity on output component 0 after MTRX
    gyro_std = streams["GYRO"].values.std(axis=0)
    assert np.all((gyro_std > 0.05) & (gyro_std < 0.5))


def test_timestamps(streams):
    for name in ("ACCL", "GYRO"):
        s = streams[name]
        assert np.all(np.diff(s.camera_time_s) > 0) and np.all(np.diff(s.video_time_s) > 0)
        assert s.rate_hz == pytest.approx(197.46, abs=0.1)
        np.testing.assert_allclose(s.payload_stmp_s[:3], [0.080577, 1.083322, 2.086087])
        assert s.camera_time_s[0] == pytest.approx(0.080577)
        # the samples cover the 10.5 s video: first near frame 0, last near its end
        assert abs(s.video_time_s[0]) < 0.02
        assert s.video_time_s[-1] == pytest.approx(10.51, abs=0.05)
    np.testing.assert_array_equal(streams["ACCL"].video_time_s, streams["GYRO"].video_time_s)


def test_per_frame_stream_lands_on_frame_times(streams):
    # GRAV has one sample per video frame, so the MP4-timeline mapping must put sample k on frame k
    grav = streams["GRAV"]
    assert len(grav.video_time_s) == 316
    np.testing.assert_allclose(grav.video_time_s, np.arange(316) * 1001 / 30000, atol=1e-3)


def test_video_info():
    info = video_frames.video_info(SAMPLE)
    assert info.num_frames == 315
    assert float(info.frame_rate) == pytest.approx(29.97, abs=1e-3)
    assert info.duration_s == pytest.approx(10.5105, abs=1e-4)
    assert (info.width, info.height) == (848, 480)


# ---------------------------------------------------------------- synthetic KLV

def klv(key: bytes, type_char: bytes, size: int, repeat: int, value: bytes) -> bytes:
    assert len(value) == size * repeat
    return key + type_char + bytes([size]) + struct.pack(">H", repeat) + value + b"\0" * (-len(value) % 4)


def test_synthetic_klv_nested_padding_and_per_element_scale():
    samples = np.array([[100, -200, 300], [10, 20, -30]], ">i2")
    strm = (klv(b"STNM", b"c", 1, 5, b"Accel")          # 5 bytes: needs 3 filler bytes
            + klv(b"SCAL", b"s", 2, 3, np.array([10, 20, 30], ">i2").tobytes())
            + klv(b"STMP", b"J", 8, 1, struct.pack(">Q", 1_000_000))
            + klv(b"ACCL", b"s", 6, 2, samples.tobytes()))
    devc = klv(b"DVID", b"L", 4, 1, struct.pack(">I", 1)) + klv(b"STRM", b"\0", 1, len(strm), strm)
    payload = klv(b"DEVC", b"\0", 1, len(devc), devc)
    items = gpmf.parse_klv(payload, "synthetic")
    chunks = gpmf.stream_chunks(items, "ACCL", "synthetic")
    assert len(chunks) == 1
    np.testing.assert_array_equal(chunks[0].raw, samples.astype(np.int16))
    assert chunks[0].properties["STNM"] == "Accel"
    np.testing.assert_array_equal(np.asarray(chunks[0].properties["SCAL"]).reshape(-1), [10, 20, 30])
    assert int(np.asarray(chunks[0].properties["STMP"]).reshape(-1)[0]) == 1_000_000


def test_fixed_point_and_float_types():
    q = gpmf.parse_klv(klv(b"TEST", b"q", 4, 1, struct.pack(">i", 3 * 65536 + 32768)))[0]
    assert q.value()[0, 0] == 3.5
    f = gpmf.parse_klv(klv(b"TEST", b"f", 8, 1, struct.pack(">2f", 1.25, -2.0)))[0]
    np.testing.assert_array_equal(f.value(), [[1.25, -2.0]])


@pytest.mark.parametrize("payload, message", [
    (klv(b"ACCL", b"s", 6, 2, bytes(12))[:-4], "declares 12 value bytes"),          # truncated value
    (klv(b"ACCL", b"s", 6, 1, bytes(6))[:5], "truncated KLV header"),               # truncated header
    (b"AC\x01L" + b"s\x06\x00\x01" + bytes(8), "invalid KLV key"),                  # non-ASCII key
    (b"ACCL" + b"z\x06\x00\x01" + bytes(8), "unknown type"),                         # bad type char
    (b"ACCL" + b"s\x05\x00\x01" + bytes(8), "not a multiple"),                       # size vs type
    (klv(b"DEVC", b"\0", 1, 12, b"STRM\0\x01\x00\x08" + bytes(4)), "DEVC: item STRM"),  # nested overflow
])
def test_malformed_klv_errors(payload, message):
    with pytest.raises(gpmf.GpmfError, match=message):
        gpmf.parse_klv(payload, "bad payload")


def test_file_without_gpmd_track(tmp_path):
    path = str(tmp_path / "plain.mp4")
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 50 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(mp4.Mp4Error, match=r"plain\.mp4: no track with handler 'meta' and sample format 'gpmd'"):
        gpmf.read_stream(path, "ACCL")


def test_truncated_and_non_mp4_files(tmp_path):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(open(SAMPLE, "rb").read()[:1_000_000])
    with pytest.raises(mp4.Mp4Error, match="truncated.mp4.*truncated or not an MP4"):
        gpmf.read_stream(truncated, "ACCL")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video file at all")
    with pytest.raises(mp4.Mp4Error, match="junk.mp4"):
        gpmf.read_stream(junk, "ACCL")


def test_missing_stream_is_named():
    with pytest.raises(gpmf.GpmfError, match="XXXX: stream not found"):
        gpmf.read_stream(SAMPLE, "XXXX")


# ---------------------------------------------------------------- builder

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("gopro")
    manual = root / "manual" / "walks"
    manual.mkdir(parents=True)
    shutil.copy(SAMPLE, manual)
    builder = Builder(data_dir=str(root / "data"), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(root / "manual"), num_shards=2))
    source = builder.as_data_source()["train"]
    records = sorted((source[i] for i in range(len(source))), key=lambda r: r["id"])
    return builder, records


@pytest.fixture(scope="module")
def reference_thumbnails():
    """Every video frame, centre-cropped to a square and resized to 64x64 independently of the builder."""
    thumbs = []
    with av.open(SAMPLE) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            h, w, _ = image.shape
            left = (w - h) // 2
            square = Image.fromarray(image[:, left:left + h])
            thumbs.append(np.asarray(square.resize((64, 64), Image.Resampling.BILINEAR), np.float32))
    return np.stack(thumbs)


def test_builder_writes_shards_without_tensorflow(built):
    builder, records = built
    files = os.listdir(builder.data_dir)
    assert sorted(f for f in files if ".array_record-" in f) == [
        "gopro-train.array_record-00000-of-00002", "gopro-train.array_record-00001-of-00002"]
    assert "tensorflow" not in sys.modules
    assert len(records) == 5  # 10.5 s of synchronised data -> five 2 s windows
    assert [r["id"] for r in records] == [f"walks/max-heromode_w{k:04d}".encode() for k in range(5)]


def test_builder_record_schema(built):
    _, records = built
    r = records[0]
    assert r["imu"].shape == (400, 6) and r["imu"].dtype == np.float32
    assert r["imu_rate_hz"] == 200.0 and r["video_fps"] == 8.0 and r["subject"] == 0
    assert [c.decode() for c in r["channels"]] == [
        "camera/acc_x", "camera/acc_y", "camera/acc_z", "camera/gyro_x", "camera/gyro_y", "camera/gyro_z"]
    assert len(r["video"]) == 16 and r["video"][0].shape == (64, 64, 3)
    assert "label" not in r


def test_builder_imu_is_the_streams_resampled(built, streams):
    _, records = built
    for k, record in enumerate(records):
        grid = 2.0 * k + np.arange(400) / 200.0
        expected = np.stack(
            [np.interp(grid, streams["ACCL"].video_time_s, streams["ACCL"].values[:, i]) for i in range(3)]
            + [np.interp(grid, streams["GYRO"].video_time_s, streams["GYRO"].values[:, i]) for i in range(3)],
            axis=1)
        np.testing.assert_allclose(record["imu"], expected, rtol=1e-5, atol=1e-5)
        assert 9.0 < np.linalg.norm(record["imu"][:, :3], axis=1).mean() < 10.5


def test_builder_frames_are_the_nearest_video_frames(built, reference_thumbnails):
    _, records = built
    native_fps = 30000 / 1001
    for k in (0, 2, 4):
        for j in (0, 7, 15):
            frame = np.asarray(records[k]["video"][j], np.float32)
            nearest = int(round((2.0 * k + j / 8.0) * native_fps))
            candidates = range(max(nearest - 4, 0), min(nearest + 5, len(reference_thumbnails)))
            errors = {i: np.abs(reference_thumbnails[i] - frame).mean() for i in candidates}
            assert min(errors, key=errors.get) == nearest, (k, j, errors)
            assert errors[nearest] < 4.0  # JPEG error only


def test_builder_custom_config_and_bad_file_policy(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copy(SAMPLE, manual)
    (manual / "broken.mp4").write_bytes(b"not an mp4")
    config = GoproConfig(name="custom", window_seconds=5.0, imu_rate_hz=100.0, video_fps=2.0,
                         frame_size=(32, 48), bad_file_policy="skip")
    builder = Builder(config=config, data_dir=str(tmp_path / "data"), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    source = builder.as_data_source()["train"]
    assert len(source) == 2  # two 5 s windows
    assert source[0]["imu"].shape == (500, 6) and source[0]["video"][0].shape == (32, 48, 3)
    assert len(source[0]["video"]) == 10
    bad = builder.info.metadata["bad_files"]
    assert [b["file"] for b in bad] == ["broken.mp4"] and "not an MP4" in bad[0]["error"]

    strict = Builder(config=GoproConfig(name="strict"), data_dir=str(tmp_path / "strict"),
                     file_format="array_record")
    with pytest.raises(mp4.Mp4Error, match="broken.mp4"):
        strict.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


def test_builder_manual_dir_without_mp4(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "notes.txt").write_text("no videos here")
    builder = Builder(data_dir=str(tmp_path / "data"), file_format="array_record")
    with pytest.raises(FileNotFoundError, match="no .mp4 files"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=str(tmp_path / "manual")))


def test_frames_helper_rejects_times_past_the_end():
    with pytest.raises(video_frames.VideoError, match="past the end"):
        video_frames.jpeg_frames_at(SAMPLE, [20.0], (16, 16))
    jpeg = video_frames.jpeg_frames_at(SAMPLE, [0.0], (16, 24))[0]
    assert Image.open(io.BytesIO(jpeg)).size == (24, 16)
