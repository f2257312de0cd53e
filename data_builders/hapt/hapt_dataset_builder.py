"""TFDS builder `hapt`: HAPT raw smartphone (waist) acc + gyro with 6 activities and 6 postural transitions, 30 users.

Units: the accelerometer files are in g and are converted to m/s² (x 9.80665); gyroscopes are rad/s as stored.
Each experiment is one continuous 50 Hz session; per-sample labels come from `labels.txt` and samples outside its
intervals are unannotated (windows that are mostly unannotated are dropped).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from data_builders.hapt import parsing
from data_builders.har_common import HarBuilder, HarConfig, Source


class Builder(HarBuilder):
    """HAPT: 30 users, waist smartphone acc + gyro at 50 Hz, 12 classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Raw experiments with per-sample labels."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = len(parsing.CHANNELS)
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = ("https://archive.ics.uci.edu/dataset/341/"
                "smartphone+based+recognition+of+human+activities+and+postural+transitions")
    BUILDER_CONFIGS = [
        HarConfig(name="default", description="All users in train; 50 Hz, 2 s windows, 1 s stride."),
        # The real-data benchmark protocol (benchmarks/real_data.py) on the shipped subset (users 1-6).
        HarConfig(name="xsub", description="Cross-subject: users 1-4 train, 5-6 test; 50 Hz, 2 s windows, 1 s stride.",
                  split_subjects={"train": (1, 2, 3, 4), "test": (5, 6)}),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download HAPT from the UCI repository (dataset 341), unzip it and pass the folder holding `RawData/` (with
    acc_exp01_user01.txt ... and labels.txt) as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        raw = parsing.find_raw(root)
        return [Source(f"{raw}/acc_exp{e:02d}_user{u:02d}.txt", u, (raw, e)) for e, u in parsing.experiments(raw)]

    def read(self, root: str, source: Source):
        raw, experiment = source.payload
        return parsing.read_experiment(raw, experiment, source.subject, parsing.read_labels(raw).get(experiment))
