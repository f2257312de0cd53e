"""TFDS builder `recgym`: RecGym gym-workout IMU (acc + gyro) at one body position, 11 workouts, 10 volunteers.

Units: the accelerometer and gyroscope values are kept as stored in RecGym.csv; the dataset description available to
us does not state their units, so no conversion is applied (check before mixing with m/s² / rad/s datasets). The
body-capacitance column is not an IMU channel and is left out. Configs choose the position: `wrist` (default),
`pocket`, `calf`; channels `<position>/{acc,gyro}_{x,y,z}`. Workout `Null` (pauses) is unannotated.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.recgym import parsing


@dataclasses.dataclass(eq=False)
class RecGymConfig(HarConfig):
    position: str = "wrist"


class Builder(HarBuilder):
    """RecGym: 10 volunteers, IMU at wrist, pocket or calf at 20 Hz, 11 workouts."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Per-position IMU sessions with per-sample workout labels."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = 6
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/1128"
    BUILDER_CONFIGS = [
        RecGymConfig(name="wrist", description="Wrist unit; 20 Hz, 2 s windows, 1 s stride."),
        RecGymConfig(name="pocket", description="Pocket unit.", position="pocket"),
        RecGymConfig(name="calf", description="Calf unit.", position="calf"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download RecGym from the UCI repository (dataset 1128), unzip it and pass the folder holding `RecGym.csv` as the
    manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        return [Source(parsing.find_csv(root))]

    def read(self, root: str, source: Source):
        return parsing.read_csv(source.name, self.builder_config.position)
