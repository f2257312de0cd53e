"""TFDS builder `mhealth`: MHEALTH chest/ankle/arm body sensors, 12 activities, 10 subjects.

Units: acceleration m/s² as stored; gyroscopes are stored in deg/s (dataset documentation) and converted to rad/s;
magnetometers are kept in the dataset's unspecified "local" units. ECG columns are not IMU channels and are left out.
21 channels: chest/acc, left_ankle/{acc,gyro,mag}, right_lower_arm/{acc,gyro,mag}. Label 0 (null) is unannotated.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.mhealth import parsing


class Builder(HarBuilder):
    """MHEALTH: 10 subjects, 3 body sensors at 50 Hz, 12 activities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "21 IMU channels, gyroscopes in rad/s."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = len(parsing.CHANNELS)
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/319/mhealth+dataset"
    BUILDER_CONFIGS = [HarConfig(name="default", description="All subjects in train; 50 Hz, 2 s windows, 1 s stride.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download MHEALTH from the UCI repository (dataset 319), unzip it and pass the folder holding `MHEALTHDATASET/`
    (or `MHEALTHDATASET/` itself, with mHealth_subject1.log ... mHealth_subject10.log) as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        return [Source(path, subject, path) for subject, path in parsing.find_files(root)]

    def read(self, root: str, source: Source):
        return parsing.read_log(source.payload, source.subject)
