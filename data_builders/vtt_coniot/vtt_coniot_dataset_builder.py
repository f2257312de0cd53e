"""TFDS builder `vtt_coniot`: VTT-ConIoT construction-worker IMUs (hip, back, upper arm), 16 activities, 13 users.

One csv per (activity, user), `activity_<A>_user_<U>_combined.csv`, 100 Hz, columns `<imu>_{Ax_g,...,Gx_dps,...,
Mx_uT,...}` for imu `trousers` (hip), `back`, `hand` (upper arm); the activity code comes from the file name.
Channels `<location>/{acc,gyro,mag}_{x,y,z}` for location hip, back, upper_arm (27 in `default`, 9 in `hip`).
Units: gyroscope deg/s -> rad/s; magnetometer µT as stored; accelerometer stored values x `acc_g_per_unit` (default
0.5) x 9.80665 -> m/s², because the stored numbers are about twice the acceleration in g despite the `_g` suffix.

Verified against public loaders of the Zenodo release (harbench, tsfm; details in parsing.py): file names, column
names, prefix -> location, 100 Hz, deg/s and µT suffixes, the ~2x accelerometer scale. Assumed: the activity code ->
name table (one source, harbench), the `VTT-ConIot-IMU-Data/` folder name (files are searched for anywhere under the
manual dir), and that extra csv columns, if any, carry nothing needed (they are ignored).
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.vtt_coniot import parsing


@dataclasses.dataclass(eq=False)
class VttConIotConfig(HarConfig):
    locations: tuple[str, ...] = tuple(parsing.LOCATIONS)
    acc_g_per_unit: float = 0.5   # g per stored accelerometer unit (see parsing.py); 1.0 trusts the `_g` label


class Builder(HarBuilder):
    """VTT-ConIoT: 13 construction workers, 3 IMUs (acc, gyro, mag) at 100 Hz, 16 activities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Per-activity csv files, 9 channels per IMU, accelerometer scaled by 0.5 g per unit."}
    LABELS = parsing.LABELS
    NATIVE_RATE_HZ = parsing.RATE_HZ
    HOMEPAGE = "https://zenodo.org/records/4683703"
    BUILDER_CONFIGS = [
        VttConIotConfig(name="default", description="Hip, back and upper-arm IMUs; 100 Hz, 2 s windows, 1 s stride."),
        VttConIotConfig(name="hip", description="Hip IMU only (acc, gyro, mag).", locations=("hip",)),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download `VTT_ConIot_Dataset.zip` from Zenodo (record 4683703), unzip it and pass the folder holding
    `VTT_ConIot_Dataset/` (or any folder below which the activity_<A>_user_<U>_combined.csv files lie, e.g.
    `VTT_ConIot_Dataset/VTT-ConIot-IMU-Data/activity_1_user_1_combined.csv`) as the manual dir.
    """

    @property
    def num_channels(self) -> int:
        return 9 * len(self.builder_config.locations)

    def discover(self, root: str) -> list[Source]:
        config: VttConIotConfig = self.builder_config
        unknown = [location for location in config.locations if location not in parsing.LOCATIONS]
        if unknown:
            raise ValueError(f"unknown location(s) {unknown}; locations are {tuple(parsing.LOCATIONS)}")
        if not config.acc_g_per_unit > 0:
            raise ValueError(f"acc_g_per_unit must be positive, got {config.acc_g_per_unit}")
        return [Source(path, user, activity) for user, activity, path in parsing.find_files(root)]

    def read(self, root: str, source: Source):
        config: VttConIotConfig = self.builder_config
        return parsing.read_csv(source.name, source.subject, source.payload, config.locations, config.acc_g_per_unit)
