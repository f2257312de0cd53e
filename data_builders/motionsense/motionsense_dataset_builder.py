"""TFDS builder `motionsense`: MotionSense iPhone (front trouser pocket) acc + gyro, 6 activities, 24 subjects.

Units: Core Motion reports gravity and user acceleration in g; the accelerometer channels are their sum converted to
m/s² (x 9.80665). Rotation rate is already rad/s. Channels `pocket/acc_{x,y,z}`, `pocket/gyro_{x,y,z}`.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.motionsense import parsing


class Builder(HarBuilder):
    """MotionSense: 24 subjects, iPhone 6s device-motion at 50 Hz, 6 activities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Device-motion trials, total acceleration in m/s²."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = len(parsing.CHANNELS)
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "https://github.com/mmalekzadeh/motion-sense"
    BUILDER_CONFIGS = [
        HarConfig(name="default", description="All subjects in train; 50 Hz, 2 s windows, 1 s stride."),
        # The real-data benchmark protocol (benchmarks/real_data.py) on the shipped subset (subjects 1-10).
        HarConfig(name="xsub", description="Cross-subject: subjects 1-7 train, 8-10 test; 50 Hz, 2 s windows, 1 s "
                  "stride.", split_subjects={"train": tuple(range(1, 8)), "test": (8, 9, 10)}),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download `A_DeviceMotion_data.zip` from https://github.com/mmalekzadeh/motion-sense (data/) or Kaggle, unzip it
    and pass the folder holding `A_DeviceMotion_data/` as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        return [Source(path, subject, (code, trial, path))
                for code, trial, subject, path in parsing.find_trials(root)]

    def read(self, root: str, source: Source):
        code, trial, path = source.payload
        return parsing.read_trial(path, code, trial, source.subject)
