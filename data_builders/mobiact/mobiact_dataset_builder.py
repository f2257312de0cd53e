"""TFDS builder `mobiact`: MobiAct v2.0 smartphone (trouser pocket) acc + gyro, 12 ADLs and 4 fall types, 57 subjects.

Units: m/s² and rad/s as stored. The annotated csv rows are irregularly timed (`rel_time`, s); each trial is linearly
resampled on a uniform grid at `rate_hz` (default 50 Hz), per-sample activity codes taken from the nearest row.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.mobiact import parsing


class Builder(HarBuilder):
    """MobiAct v2.0: 57 subjects, smartphone acc + gyro resampled to 50 Hz, 16 activity/fall classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Annotated trials resampled on a uniform grid, per-sample labels."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = len(parsing.CHANNELS)
    NATIVE_RATE_HZ = 50.0   # resampling target: the raw rows are irregular
    HOMEPAGE = "https://bmi.hmu.gr/the-mobifall-and-mobiact-datasets-2/"
    BUILDER_CONFIGS = [HarConfig(name="default", description="All subjects in train; 50 Hz, 2 s windows, 1 s stride.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Request MobiAct v2.0 from the BMI lab (https://bmi.hmu.gr/the-mobifall-and-mobiact-datasets-2/), unzip it and pass
    `MobiAct_Dataset_v2.0/` (the folder holding `Annotated Data/`) as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        return [Source(path, subject, (code, trial, path)) for code, subject, trial, path in parsing.find_trials(root)]

    def read(self, root: str, source: Source):
        code, trial, path = source.payload
        return parsing.read_trial(path, code, source.subject, trial, self.rate_hz)
