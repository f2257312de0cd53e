"""Project Aria VRS reader on the real Gen1 sample (shared/data/aria/adt_video.vrs; facts in its ATTRIBUTION.md)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("projectaria_tools", reason="projectaria-tools is an optional dependency for Aria data")

from imujax.io import aria_vrs  # noqa: E402
from imujax.transforms import himu  # noqa: E402

SAMPLE = os.path.join(os.environ.get("IMUJAX_SHARED_DATA", "/work/shared/data"), "aria", "adt_video.vrs")
needs_sample = pytest.mark.skipif(not os.path.exists(SAMPLE), reason=f"{SAMPLE} not present")


@pytest.fixture(scope="module")
def left():
    return aria_vrs.read_imu(SAMPLE, "imu-left")


@needs_sample
def test_streams_resolved_by_label():
    labels = aria_vrs.stream_labels(SAMPLE)
    assert labels["imu-left"] == "1202-2" and labels["imu-right"] == "1202-1" and labels["camera-rgb"] == "214-1"


@needs_sample
def test_left_imu_matches_attribution(left):
    assert left.timestamps_ns.shape == (79,) and left.nominal_rate_hz == 800.0
    dt = np.diff(left.timestamps_ns) / 1e6
    assert np.all(dt > 0) and abs(np.median(dt) - 1.2584) < 0.01
    assert abs(np.linalg.norm(left.accel, axis=1).mean() - 9.33) < 0.05  # |a| from ATTRIBUTION.md
    table = left.table()
    assert table.shape == (79, 7) and table[0, 0] == float(left.timestamps_ns[0])
    right = aria_vrs.read_imu(SAMPLE, "imu-right")
    assert right.timestamps_ns.shape == (99,) and right.nominal_rate_hz == 1000.0
    np.testing.assert_allclose(right.accel.mean(0), [-8.56, 1.42, 4.00], atol=0.01)


@needs_sample
def test_rgb_frames_and_record():
    rgb = aria_vrs.read_rgb(SAMPLE)
    assert rgb.frames.shape == (3, 1408, 1408, 3) and rgb.frames.dtype == np.uint8
    np.testing.assert_array_equal(rgb.timestamps_ns, [87551170813262, 87551204152300, 87551237472175])
    upright = aria_vrs.read_rgb(SAMPLE, upright=True, max_frames=1)
    np.testing.assert_array_equal(upright.frames[0], np.rot90(rgb.frames[0], k=-1))
    record = aria_vrs.vrs_record(SAMPLE, frame_size=64)
    assert record["video"].shape == (3, 64, 64, 3)
    assert record["channels"][:3] == ["imu_left/acc_x", "imu_left/acc_y", "imu_left/acc_z"]
    grid = record["imu_timestamps_ns"]
    assert grid[0] >= rgb.timestamps_ns[0] and np.allclose(np.diff(grid), 1e9 / 800, atol=1)
    left = aria_vrs.read_imu(SAMPLE, "imu-left")
    span = left.timestamps_ns[-1] + 1 - rgb.timestamps_ns[0]  # the RGB/IMU overlap, ~70 ms
    assert record["imu"].shape == (len(grid), 6) and len(grid) == int(span // (1e9 / 800))


@needs_sample
def test_himu_spectrogram_runs_on_real_left_accel(left):
    spec = himu.himu_spectrogram(left.accel, side="left")  # 0.1 s: zero-padded to 2 s like a take's first window
    assert spec.shape == (3, 128, 320) and np.isfinite(spec).all()


def test_missing_file_and_label_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        aria_vrs.read_imu(str(tmp_path / "nope.vrs"))
    if os.path.exists(SAMPLE):
        with pytest.raises(KeyError, match="imu-middle"):
            aria_vrs.read_imu(SAMPLE, "imu-middle")
