"""TFDS builder `realworld_har`: RealWorld HAR, 7 body positions x (acc, gyro, mag), 8 activities, 15 subjects.

Units as stored: acceleration m/s², angular rate rad/s, magnetic field µT. Every (position, sensor) csv of one
recording has its own timestamps; they are linearly resampled on one uniform grid at `rate_hz` (default 50 Hz) over
their common span. Channels `<position>/<sensor>_<axis>` in config order (positions chest, forearm, head, shin,
thigh, upperarm, waist; sensors acc, gyro, mag). Configs: `default` (all positions and sensors, 63 channels),
`waist` (waist only, 9 channels), `acc_gyro` (all positions, no magnetometer).
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.realworld_har import parsing


@dataclasses.dataclass(eq=False)
class RealWorldConfig(HarConfig):
    positions: tuple[str, ...] = parsing.POSITIONS
    sensors: tuple[str, ...] = ("acc", "gyr", "mag")   # file prefixes


class Builder(HarBuilder):
    """RealWorld HAR: 15 subjects, 7 smartphone/smartwatch positions at 50 Hz, 8 activities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Zipped per-position csv files aligned on a uniform grid."}
    LABELS = parsing.LABELS
    NATIVE_RATE_HZ = 50.0
    HOMEPAGE = "https://www.uni-mannheim.de/dws/research/projects/activity-recognition/dataset/dataset-realworld/"
    BUILDER_CONFIGS = [
        RealWorldConfig(name="default", description="All 7 positions, acc + gyro + mag; 50 Hz, 2 s windows."),
        RealWorldConfig(name="waist", description="Waist only, acc + gyro + mag.", positions=("waist",)),
        RealWorldConfig(name="acc_gyro", description="All 7 positions, acc + gyro.", sensors=("acc", "gyr")),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download `realworld2016_dataset.zip` from the RealWorld HAR page, unzip it (keep the inner per-sensor zips as they
    are) and pass the folder holding `realworld2016_dataset/` (or that folder itself) as the manual dir.
    """

    @property
    def num_channels(self) -> int:
        return 3 * len(self.builder_config.positions) * len(self.builder_config.sensors)

    def discover(self, root: str) -> list[Source]:
        config: RealWorldConfig = self.builder_config
        bad = [p for p in config.positions if p not in parsing.POSITIONS] + \
              [s for s in config.sensors if s not in parsing.SENSORS]
        if bad:
            raise ValueError(f"unknown position(s)/sensor(s) {bad}; positions are {parsing.POSITIONS}, sensors "
                             f"{tuple(parsing.SENSORS)}")
        sources = []
        for proband, data_dir in parsing.find_probands(root):
            for activity, zips in sorted(parsing.recordings(data_dir, config.sensors).items()):
                sources.append(Source(f"{data_dir} ({activity})", proband, (data_dir, activity, zips)))
        return sources

    def read(self, root: str, source: Source):
        config: RealWorldConfig = self.builder_config
        data_dir, activity, zips = source.payload
        return parsing.read_activity(data_dir, source.subject, activity, zips, config.positions, config.sensors,
                                     self.rate_hz)
