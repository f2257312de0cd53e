"""Synthetic egomotion dataset: head-camera video synchronised with wrist, ankle and head IMUs.

Build with `python -m data_builders.synthetic_egomotion --data_dir=DIR [--config=tiny]` or `build(DIR)`;
read with `tfds.data_source("synthetic_egomotion/default", data_dir=DIR, split="train")`.
"""
from .activities import CLASS_DESCRIPTIONS, CLASS_NAMES
from .config import DEFAULT, TINY, EgomotionConfig
from .imu import CHANNEL_NAMES
from .kinematics import SLOTS
from .synthetic_egomotion_dataset_builder import Builder, build

__all__ = [
        "Builder", "CHANNEL_NAMES", "CLASS_DESCRIPTIONS", "CLASS_NAMES", "DEFAULT", "EgomotionConfig", "SLOTS", "TINY",
        "build",
]
