"""TFDS builder `hhar`: HHAR phone (waist) or watch (wrist) accelerometer + gyroscope, 6 activities, 9 users.

Units: m/s² and rad/s as stored. Devices sample at different, jittery rates (50-200 Hz), so each device's
accelerometer and gyroscope streams (ordered by Creation_Time) are linearly resampled on one uniform grid at
`rate_hz` (default 50 Hz) per recording; pauses over 1 s start a new session. Per-sample labels come from the nearest
accelerometer sample; `null` is unannotated. Configs `phones` (default) and `watches`; users a-i are subjects 1-9.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from data_builders.har_common import HarBuilder, HarConfig, Source
from data_builders.hhar import parsing


@dataclasses.dataclass(eq=False)
class HharConfig(HarConfig):
    devices: str = "phones"   # "phones" or "watches"


class Builder(HarBuilder):
    """HHAR: 9 users, 8 phones + 4 watches, acc + gyro resampled to a common rate, 6 activities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Per-device acc+gyro aligned on a uniform grid."}
    LABELS = parsing.LABELS
    NUM_CHANNELS = 6
    NATIVE_RATE_HZ = 50.0   # resampling target: the devices have no common native rate
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/344/heterogeneity+activity+recognition"
    BUILDER_CONFIGS = [
        HharConfig(name="phones", description="Phones (waist pouch); 50 Hz, 2 s windows, 1 s stride."),
        HharConfig(name="watches", description="Watches (wrist); 50 Hz, 2 s windows, 1 s stride.", devices="watches"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download HHAR from the UCI repository (dataset 344), unzip it (and the inner `Activity recognition exp.zip`)
    and pass the folder holding `Activity recognition exp/` (or that folder itself) as the manual dir.
    """

    def discover(self, root: str) -> list[Source]:
        devices = self.builder_config.devices
        if devices not in parsing.DEVICE_FILES:
            raise ValueError(f"HharConfig.devices must be one of {sorted(parsing.DEVICE_FILES)}, got {devices!r}")
        return [Source(f"{parsing.find_dir(root)} ({devices})", payload=parsing.find_dir(root))]

    def read(self, root: str, source: Source):
        return parsing.read_devices(source.payload, self.builder_config.devices, self.rate_hz)
