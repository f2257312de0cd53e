"""Builder configurations of the synthetic egomotion dataset (kept free of TFDS-specific logic)."""
from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds


@dataclasses.dataclass(eq=False)
class EgomotionConfig(tfds.core.BuilderConfig):
    """Size and sampling of the simulated recordings.

    Subjects 0 .. num_subjects - num_test_subjects - 1 form the train split, the rest the test split,
    so evaluation is always on unseen people.
    """

    num_subjects: int = 8
    num_test_subjects: int = 2
    clips_per_class: int = 9
    clip_seconds: float = 2.0
    imu_rate_hz: float = 100.0
    video_fps: float = 8.0
    frame_size: int = 64
    seed: int = 0
    num_shards: int = 4  # array_record shards per split (used unless the caller sets sharding)

    def __post_init__(self):
        checks = {
                "num_subjects": self.num_subjects >= 2,
                "num_test_subjects": 1 <= self.num_test_subjects < self.num_subjects,
                "clips_per_class": self.clips_per_class >= 1,
                "clip_seconds": self.clip_seconds > 0,
                "imu_rate_hz": self.imu_rate_hz > 0,
                "video_fps": self.video_fps > 0,
                "frame_size": self.frame_size >= 8,
                "num_shards": self.num_shards >= 1,
        }
        bad = [field for field, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"EgomotionConfig {self.name!r}: invalid value for {bad}: {self}")

    @property
    def num_imu_samples(self) -> int:
        return int(round(self.clip_seconds * self.imu_rate_hz))

    @property
    def num_frames(self) -> int:
        return int(round(self.clip_seconds * self.video_fps))

    @property
    def train_subjects(self) -> range:
        return range(self.num_subjects - self.num_test_subjects)

    @property
    def test_subjects(self) -> range:
        return range(self.num_subjects - self.num_test_subjects, self.num_subjects)


DEFAULT = EgomotionConfig(
        name="default",
        description="8 subjects (train 0-5, test 6-7), 9 clips per class, 2 s clips, IMU 100 Hz, 64x64 video at 8 fps.",
)
TINY = EgomotionConfig(
        name="tiny",
        description="3 subjects (train 0-1, test 2), 2 clips per class, 2 s clips, 32x32 video; for tests.",
        num_subjects=3,
        num_test_subjects=1,
        clips_per_class=2,
        frame_size=32,
        num_shards=3,
)
