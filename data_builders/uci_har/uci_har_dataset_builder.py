"""TFDS builder `uci_har`: UCI HAR smartphone (waist) accelerometer + gyroscope windows, 6 activities, 30 subjects.

Units: `total_acc` is stored in g and converted to m/s² (x 9.80665); `body_gyro` is already rad/s. The dataset is
distributed as pre-cut 2.56 s windows (128 samples at 50 Hz); each is a session here, so the default window equals
one original window. Shorter `window_seconds` cut several windows out of each.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.uci_har import parsing

_ALL_SUBJECTS = tuple(range(1, 31))


class Builder(HarBuilder):
    """UCI HAR: 30 subjects, waist smartphone acc + gyro at 50 Hz, 6 activities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Original pre-cut windows, total acceleration in m/s²."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = len(parsing.CHANNELS)
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/240/human+activity+recognition+using+smartphones"
    BUILDER_CONFIGS = [
        HarConfig(name="default", description="All subjects in train; the original 2.56 s windows.",
                  window_seconds=2.56, stride_seconds=2.56),
        HarConfig(name="original_split", description="The dataset's own train/test subject split.",
                  window_seconds=2.56, stride_seconds=2.56,
                  split_subjects={"train": tuple(s for s in _ALL_SUBJECTS if s not in parsing.TEST_SUBJECTS),
                                  "test": parsing.TEST_SUBJECTS}),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download `UCI HAR Dataset.zip` from the UCI repository (dataset 240), unzip it and pass the `UCI HAR Dataset`
    folder (holding train/ and test/) or its parent as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        base = parsing.find_root(root)
        return [Source(os.path.join(base, split), payload=split) for split in parsing.SPLITS]

    def read(self, root: str, source: Source):
        return parsing.read_split(parsing.find_root(root), source.payload)
