"""TFDS builder `ku_har`: KU-HAR smartphone (waist bag) acc + gyro, 18 activities, 90 subjects.

Units: m/s² and rad/s as stored. Each trial file carries separate accelerometer and gyroscope time columns; both
streams are linearly resampled on one 100 Hz grid over their common span. Label codes are the class folder numbers
0-17 (`0.Stand` ... `17.Table-tennis`).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.ku_har import parsing


class Builder(HarBuilder):
    """KU-HAR: 90 subjects, smartphone acc + gyro at 100 Hz, 18 activities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Raw time-domain trials, acc+gyro aligned at 100 Hz."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = len(parsing.CHANNELS)
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "https://data.mendeley.com/datasets/45f952y38r/5"
    BUILDER_CONFIGS = [HarConfig(name="default", description="All subjects in train; 100 Hz, 2 s windows, 1 s stride.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download KU-HAR from Mendeley Data (DOI 10.17632/45f952y38r.5), unzip `1.Raw_time_domian_data.zip` and pass the
    folder holding `1.Raw_time_domian_data/` as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        return [Source(path, subject, (code, trial, path))
                for code, subject, trial, path in parsing.find_files(parsing.find_raw(root))]

    def read(self, root: str, source: Source):
        code, trial, path = source.payload
        return parsing.read_file(path, code, source.subject, trial)
