"""TFDS builder `pamap2`: PAMAP2 hand/chest/ankle IMUs (acc ±16 g, gyro, mag), 18 activities, 9 subjects.

Units as stored: acceleration m/s², angular rate rad/s, magnetic field µT (no conversion needed). 27 channels
`<imu>/<sensor>_<axis>` for imu hand, chest, ankle and sensor acc, gyro, mag. Heart rate (bpm, held between its ~9 Hz
readings) is kept as the per-window mean `heart_rate_bpm` (NaN before the first reading). Activity id 0 (transient)
is unannotated; windows mostly made of it are dropped. Configs: `default` reads `Protocol/`, `with_optional` also
`Optional/`.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.pamap2 import parsing


@dataclasses.dataclass(eq=False)
class Pamap2Config(HarConfig):
    folders: tuple[str, ...] = ("Protocol",)


class Builder(HarBuilder):
    """PAMAP2: 9 subjects, 3 IMUs at 100 Hz + heart rate, 18 activities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "27 IMU channels, NaN gaps interpolated or split, heart rate per window."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = len(parsing.CHANNELS)
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/231/pamap2+physical+activity+monitoring"
    EXTRA_FEATURES = ("heart_rate_bpm",)
    BUILDER_CONFIGS = [
        Pamap2Config(name="default", description="Protocol/ recordings; 100 Hz, 2 s windows, 1 s stride."),
        Pamap2Config(name="with_optional", description="Protocol/ and Optional/ recordings.",
                     folders=("Protocol", "Optional")),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download PAMAP2 from the UCI repository (dataset 231), unzip it and pass the folder holding `PAMAP2_Dataset/`
    (or `PAMAP2_Dataset/` itself, with `Protocol/subject101.dat ...`) as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        return [Source(path, subject, (folder, path))
                for subject, folder, path in parsing.find_files(root, self.builder_config.folders)]

    def read(self, root: str, source: Source):
        folder, path = source.payload
        return parsing.read_dat(path, source.subject, folder)
