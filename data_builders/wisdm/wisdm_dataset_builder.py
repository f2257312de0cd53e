"""TFDS builder `wisdm`: WISDM 2019 phone (trouser pocket) or watch (wrist) acc + gyro, 18 activities, 51 subjects.

Units: accelerometer m/s² and gyroscope rad/s as stored. For each subject and activity block the accelerometer and
gyroscope streams (separate files, separate timestamps) are linearly resampled on one 20 Hz grid over their common
span. Config `phone` (default) uses the phone files, `watch` the watch files; channels `pocket/...` or `wrist/...`.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.wisdm import parsing


@dataclasses.dataclass(eq=False)
class WisdmConfig(HarConfig):
    device: str = "phone"   # "phone" or "watch"


class Builder(HarBuilder):
    """WISDM 2019: 51 subjects, phone or watch acc + gyro at 20 Hz, 18 activities (codes A-S)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Per-device acc+gyro aligned at 20 Hz, activity blocks as sessions."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = 6
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/507"
    BUILDER_CONFIGS = [
        WisdmConfig(name="phone", description="Phone in the trouser pocket; 20 Hz, 2 s windows, 1 s stride."),
        WisdmConfig(name="watch", description="Watch on the dominant wrist; 20 Hz, 2 s windows, 1 s stride.",
                    device="watch"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download `wisdm-dataset.zip` from the UCI repository (dataset 507), unzip it and pass the folder holding
    `wisdm-dataset/` (or `wisdm-dataset/` itself) as the manual dir; only `raw/<device>/<sensor>/*.txt` is read.
    """

    def discover(self, root: str) -> list[Source]:
        device = self.builder_config.device
        if device not in parsing.DEVICES:
            raise ValueError(f"WisdmConfig.device must be one of {sorted(parsing.DEVICES)}, got {device!r}")
        files = parsing.subject_files(parsing.find_raw(root), device)
        return [Source(f"{device} subject {s}", s, f) for s, f in sorted(files.items())]

    def read(self, root: str, source: Source):
        return parsing.read_subject(source.payload, source.subject, self.builder_config.device)
