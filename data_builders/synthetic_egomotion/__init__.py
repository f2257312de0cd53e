"""Synthetic egomotion dataset: head-camera video synchronised with body-worn IMUs.

Configs `default`/`tiny`: 8 locomotion activities, five IMU slots. Configs `motion_*`: the articulated motion
corpus (40 activities, IMUs at any placement, sensor error models, text per clip; see corpus.py).
Build with `python -m data_builders.synthetic_egomotion --data_dir=DIR [--config=tiny]` or `build(DIR)`;
read with `tfds.data_source("synthetic_egomotion/default", data_dir=DIR, split="train")`.
"""
from .activities import CLASS_DESCRIPTIONS, CLASS_NAMES
from .config import DEFAULT, MOTION_1M, MOTION_REALSETS, MOTION_SMALL, MOTION_TINY, MOTION_VIDEO_TINY, TINY, EgomotionConfig, MotionCorpusConfig
from .primitives import ACTIVITIES
from .sensors import DATASET_PLACEMENTS, PLACEMENTS
from .imu import CHANNEL_NAMES
from .kinematics import SLOTS
from .synthetic_egomotion_dataset_builder import Builder, build

__all__ = [
        "ACTIVITIES", "DATASET_PLACEMENTS", "MOTION_1M", "MOTION_REALSETS", "MOTION_SMALL", "MOTION_TINY", "MOTION_VIDEO_TINY",
        "MotionCorpusConfig", "PLACEMENTS", "Builder", "CHANNEL_NAMES", "CLASS_DESCRIPTIONS", "CLASS_NAMES", "DEFAULT", "EgomotionConfig", "SLOTS", "TINY",
        "build",
]
