"""Builder configurations of the synthetic egomotion dataset (kept free of TFDS-specific logic)."""
from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds


class _Clips:
    """What both configs share: clip lengths in samples and frames, and one way to refuse invalid fields."""

    def _refuse_invalid(self, checks: dict[str, bool]) -> None:
        bad = [field for field, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"{type(self).__name__} {self.name!r}: invalid value for {bad}: {self}")

    @property
    def num_imu_samples(self) -> int:
        return int(round(self.clip_seconds * self.imu_rate_hz))

    @property
    def num_frames(self) -> int:
        return int(round(self.clip_seconds * self.video_fps))


@dataclasses.dataclass(eq=False)
class EgomotionConfig(_Clips, tfds.core.BuilderConfig):
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
        self._refuse_invalid(checks)

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


@dataclasses.dataclass(eq=False)
class MotionCorpusConfig(_Clips, tfds.core.BuilderConfig):
    """The articulated motion corpus (`corpus.py`): many activities, IMUs at chosen placements, text per clip.

    Clips are generated in chunks of `chunk_size` that depend only on (seed, split, chunk index); train and test
    draw their people from disjoint subject ranges.
    """

    num_train_clips: int = 1024
    num_test_clips: int = 256
    num_train_subjects: int = 200
    num_test_subjects: int = 50
    clip_seconds: float = 10.0
    imu_rate_hz: float = 50.0
    placements: tuple[str, ...] = ("left_wrist", "right_wrist", "waist", "right_pocket", "chest", "head")
    activities: tuple[str, ...] = ()  # the main primitives clips draw from (uniformly); empty: every primitive
    sensor_errors: str = "realistic"  # or "ideal"
    video_fps: float = 0.0  # 0: no video
    frame_size: int = 32
    depth: bool = False
    seed: int = 0
    chunk_size: int = 64
    num_shards: int = 4

    def __post_init__(self):
        from . import primitives, sensors  # late: they import numpy only, config stays importable first
        checks = {
                "num_train_clips": self.num_train_clips >= 1, "num_test_clips": self.num_test_clips >= 1,
                "num_train_subjects": self.num_train_subjects >= 1, "num_test_subjects": self.num_test_subjects >= 1,
                "clip_seconds": self.clip_seconds > 0, "imu_rate_hz": self.imu_rate_hz > 0,
                "placements": len(self.placements) > 0 and all(p in sensors.PLACEMENTS for p in self.placements),
                "activities": all(a in primitives.ACTIVITIES for a in self.activities),
                "sensor_errors": self.sensor_errors in ("realistic", "ideal"), "video_fps": self.video_fps >= 0,
                "frame_size": self.frame_size >= 8, "depth": not self.depth or self.video_fps > 0,
                "chunk_size": self.chunk_size >= 1, "num_shards": self.num_shards >= 1,
        }
        self._refuse_invalid(checks)

    @property
    def error_model(self):
        from . import sensors
        return sensors.ErrorModel() if self.sensor_errors == "realistic" else sensors.IDEAL

    def split_clips(self, split: str) -> int:
        return self.num_train_clips if split == "train" else self.num_test_clips

    def num_chunks(self, split: str) -> int:
        return -(-self.split_clips(split) // self.chunk_size)

    def subjects(self, split: str) -> range:
        train = self.num_train_subjects
        return range(train) if split == "train" else range(train, train + self.num_test_subjects)


MOTION_TINY = MotionCorpusConfig(
        name="motion_tiny", description="Articulated corpus for tests: 48 train / 16 test clips of 4 s at 50 Hz.",
        num_train_clips=48, num_test_clips=16, num_train_subjects=8, num_test_subjects=4, clip_seconds=4.0,
        chunk_size=16, num_shards=2)
MOTION_VIDEO_TINY = MotionCorpusConfig(
        name="motion_video_tiny", description="Articulated corpus with head-camera RGB + depth at 4 fps, 32x32; tests.",
        num_train_clips=8, num_test_clips=4, num_train_subjects=4, num_test_subjects=2, clip_seconds=2.0,
        video_fps=4.0, frame_size=32, depth=True, chunk_size=4, num_shards=1)
MOTION_SMALL = MotionCorpusConfig(
        name="motion_small", description="Articulated corpus: 20k train / 2k test clips of 10 s (about 61 h of IMU).",
        num_train_clips=20_000, num_test_clips=2_000, num_shards=16)
# The primitives whose kind of movement HAPT, MotionSense and DSADS record: every one but the arm and hand actions
# (reach, wave, clap, throw, drawing, eating, drinking, brushing teeth, typing, combing), which none of them has.
REALSET_ACTIVITIES = (
        "walk", "run", "jog_in_place", "stairs_up", "stairs_down", "walk_uphill", "walk_downhill", "turn", "stand", "sit",
        "lie", "sit_down", "stand_up", "lie_down", "sit_up", "get_up", "jump", "jumping_jacks", "squat", "lunge",
        "push_up", "cycle_upright", "cycle_recumbent", "row", "stepper", "cross_trainer", "dribble", "elevator",
        "treadmill")
MOTION_REALSETS = MotionCorpusConfig(
        name="motion_realsets",
        description="Articulated corpus with the sensors of HAPT, MotionSense, DSADS and sp_sw_har (placement, axes, "
                    "sign, channel names) and the kinds of movement they record (no arm-only gestures): 20k train / 2k "
                    "test clips of 2 s at 50 Hz (about 11 h of IMU).",
        num_train_clips=20_000, num_test_clips=2_000, num_train_subjects=500, num_test_subjects=50,
        clip_seconds=2.0, placements=("waist", "pocket", "torso", "right_arm", "left_arm", "right_leg", "left_leg", "head",
                                      "phone", "watch"),
        activities=REALSET_ACTIVITIES, chunk_size=256, num_shards=16)
MOTION_1M = MotionCorpusConfig(
        name="motion_1m", description="Articulated corpus: 1M train / 10k test clips of 10 s (about 2,800 h of IMU).",
        num_train_clips=1_000_000, num_test_clips=10_000, num_train_subjects=10_000, num_test_subjects=1_000,
        chunk_size=256, num_shards=512)
