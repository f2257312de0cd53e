"""imu_video_folder built on Apache Beam (DirectRunner) writes the single-process build's records and metadata."""

import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow_datasets as tfds
from apache_beam.options.pipeline_options import PipelineOptions

from data_builders.imu_video_folder import beam_generation
from data_builders.imu_video_folder import imu_video_folder_dataset_builder as folder
from imujax.io import csv_table
from tests.folder_helpers import imu, write_folder, write_frames, write_mp4


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory):
    """Two splits; mp4 and frame-folder video; labels; a window outside the video; a bad file and a short one."""
    root = tmp_path_factory.mktemp("beam_folder")
    write_mp4(root / "clip.mp4", 4.0)
    write_frames(root / "frames", 40)
    for name, n in (("a", 50), ("b", 40), ("c", 30), ("short", 5)):
        np.save(root / f"{name}.npy", imu(n, value=len(name)))
    (root / "broken.csv").write_bytes(b"\xff\xfe not utf-8\n")
    write_folder(root, [
        {"imu": "a.npy", "video": "clip.mp4", "label": "walk", "subject": "s1", "video_offset_s": -0.5},
        {"imu": "b.npy", "video": "frames", "label": "run", "subject": "s2"},
        {"imu": "broken.csv", "video": "frames", "subject": "s2"},
        {"imu": "short.npy", "video": "frames", "subject": "s3"},
        {"imu": "c.npy", "video": "frames", "label": "walk", "subject": "s3", "split": "test"},
    ], classes=["walk", "run"])
    return root


def build(root, data_dir, policy="skip", beam_runner=None):
    config = folder.ImuVideoFolderConfig(name=f"beam_{policy}", window_s=1.0, stride_s=1.0, video_fps=2.0,
                                         frame_size=(8, 8), bad_file_policy=policy)
    builder = folder.Builder(config=config, data_dir=str(data_dir), file_format="array_record")
    beam_config = {} if beam_runner is None else {"beam_runner": beam_runner, "beam_options": PipelineOptions([])}
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root), **beam_config))
    return builder


def records(builder, split):
    source = builder.as_data_source(split=split)  # array_record, read as grain / tfds.data_source users do
    return {r["id"].decode(): r for r in source}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key


def test_beam_direct_runner_build_equals_the_single_process_build(fixture_folder, tmp_path):
    single = build(fixture_folder, tmp_path / "single")
    beamed = build(fixture_folder, tmp_path / "beam", beam_runner=beam.runners.DirectRunner())
    assert beamed.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    for split in ("train", "test"):
        one, many = records(single, split), records(beamed, split)
        assert one and one.keys() == many.keys()
        for key in one:
            assert_same(one[key], many[key])
    assert sorted(records(single, "test")) == [f"test_c_{k:04d}" for k in range(3)]
    assert single.info.splits["train"].num_examples == beamed.info.splits["train"].num_examples == 7

    def metadata(builder):
        with open(os.path.join(builder.data_dir, "metadata.json")) as f:
            return json.load(f)

    # bad files and windows outside the video travel back from the workers; the reports dir is removed
    assert metadata(beamed) == metadata(single)
    assert [b["recording"] for b in metadata(beamed)["bad_files"]] == ["broken", "short"]
    assert metadata(beamed)["windows_outside_video"] == {"a": 2}
    assert beam_generation.REPORTS_DIR not in os.listdir(beamed.data_dir)


def test_beam_build_raises_on_a_bad_file_under_raise(fixture_folder, tmp_path):
    with pytest.raises(Exception, match=r"broken\.csv") as raised:
        build(fixture_folder, tmp_path / "strict", policy="raise", beam_runner=beam.runners.DirectRunner())
    assert isinstance(raised.value, csv_table.CsvFormatError) or "CsvFormatError" in str(raised.value)
    assert not os.path.exists(tmp_path / "strict" / "imu_video_folder" / "beam_raise" / "1.1.0")  # nothing half-built
