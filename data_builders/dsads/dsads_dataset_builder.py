"""TFDS builder `dsads`: Daily and Sports Activities, 5 Xsens units (acc, gyro, mag), 19 activities, 8 subjects.

Units as stored: acceleration m/s², angular rate rad/s, magnetic field in the Xsens normalised units (no conversion).
45 channels `<unit>/<sensor>_<axis>` for units torso, right_arm, left_arm, right_leg, left_leg. The 60 five-second
segment files of one activity and subject are joined into one 5-minute session before windowing.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from data_builders.dsads import parsing
from data_builders.har_common import HarBuilder, HarConfig, Source


class Builder(HarBuilder):
    """DSADS: 8 subjects, 5 body units at 25 Hz, 19 activities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "45 channels, segments joined per activity and subject."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = len(parsing.CHANNELS)
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/256/daily+and+sports+activities"
    BUILDER_CONFIGS = [HarConfig(name="default", description="All subjects in train; 25 Hz, 5 s windows, 2.5 s stride.",
                                 window_seconds=5.0, stride_seconds=2.5),
                       # The real-data benchmark protocol (benchmarks/real_data.py): resampled to 50 Hz like the
                       # other HAR sets so one encoder takes them all.
                       HarConfig(name="xsub", description="Cross-subject: p1-p6 train, p7-p8 test; 25 -> 50 Hz, 2 s "
                                 "windows, 1 s stride.", rate_hz=50.0, window_seconds=2.0, stride_seconds=1.0,
                                 split_subjects={"train": tuple(range(1, 7)), "test": (7, 8)})]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download DSADS from the UCI repository (dataset 256), unzip it and pass the folder holding `data/` (with
    a01/p1/s01.txt ...) or `data/` itself as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        return [Source(folder, subject, (folder, code))
                for code, subject, folder in parsing.recordings(parsing.find_data_dir(root))]

    def read(self, root: str, source: Source):
        folder, code = source.payload
        return parsing.read_recording(folder, code, source.subject)
