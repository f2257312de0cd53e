"""TFDS builder `unimib_shar`: UniMiB SHAR smartphone accelerometer windows, 17 classes (9 ADL + 8 falls), 30 subjects.

Units: m/s² as stored (no conversion). The dataset is distributed as 3 s windows (151 samples at 50 Hz) centred on an
acceleration peak; each is a session, so the default window is one original window. Channels `pocket/acc_{x,y,z}`
(phones were in the trouser pockets).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.unimib_shar import parsing


class Builder(HarBuilder):
    """UniMiB SHAR: 30 subjects, smartphone accelerometer at 50 Hz, 17 activity/fall classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The original 151-sample windows of acc_data.mat."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = len(parsing.CHANNELS)
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "http://www.sal.disco.unimib.it/technologies/unimib-shar/"
    BUILDER_CONFIGS = [HarConfig(name="default", description="All 17 classes; the original 151-sample windows.",
                                 window_seconds=3.02, stride_seconds=3.02)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download UniMiB SHAR (http://www.sal.disco.unimib.it/technologies/unimib-shar/), unzip it and pass the folder
    holding `UniMiB-SHAR/data/acc_data.mat` (or the `data/` folder itself) as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        return [Source(parsing.find_data_dir(root))]

    def read(self, root: str, source: Source):
        return parsing.read_windows(source.name)
