"""One simulated recording (IMU + head-camera video) per (subject, class, clip), deterministic by seed."""
from __future__ import annotations

import dataclasses

import numpy as np

from . import imu, kinematics, render
from .activities import CLASS_DESCRIPTIONS, CLASS_NAMES
from .config import EgomotionConfig


@dataclasses.dataclass(frozen=True)
class ClipSeeds:
    motion: np.random.Generator
    scene: np.random.Generator
    noise: np.random.Generator


def clip_id(subject: int, class_index: int, clip: int) -> str:
    return f"s{subject:02d}_{CLASS_NAMES[class_index]}_{clip:02d}"


def _seeds(config: EgomotionConfig, subject: int, class_index: int, clip: int) -> ClipSeeds:
    motion, scene, noise = np.random.SeedSequence([config.seed, 1, subject, class_index, clip]).spawn(3)
    return ClipSeeds(*(np.random.default_rng(s) for s in (motion, scene, noise)))


def clip_motion(config: EgomotionConfig, subject: int, class_index: int, clip: int) -> kinematics.Motion:
    """The movement of one clip (what the tests and the builder both start from)."""
    person = kinematics.subject_params(config.seed, subject)
    seeds = _seeds(config, subject, class_index, clip)
    return kinematics.sample_motion(CLASS_NAMES[class_index], person, config.clip_seconds, seeds.motion)


def clip_imu(config: EgomotionConfig, subject: int, class_index: int, clip: int) -> np.ndarray:
    """Measured IMU [T, 30] float32 of one clip, without rendering its video."""
    motion = clip_motion(config, subject, class_index, clip)
    return imu.simulate_imu(motion, config.imu_rate_hz, _seeds(config, subject, class_index, clip).noise)


def clip_frames(config: EgomotionConfig, subject: int, class_index: int, clip: int) -> np.ndarray:
    """Head-camera frames [F, S, S, 3] uint8 of one clip."""
    motion = clip_motion(config, subject, class_index, clip)
    scene = render.sample_scene(motion, _seeds(config, subject, class_index, clip).scene)
    head = kinematics.body_poses(motion, np.arange(config.num_frames) / config.video_fps)["head"]
    return render.render_frames(scene, head.position.value, head.rotation.value, config.frame_size)


def clip_example(config: EgomotionConfig, subject: int, class_index: int, clip: int) -> dict:
    """A record in the project schema (video as Pillow-encoded JPEG bytes)."""
    return {
            "imu": clip_imu(config, subject, class_index, clip),
            "channels": list(imu.CHANNEL_NAMES),
            "imu_rate_hz": np.float32(config.imu_rate_hz),
            "video_fps": np.float32(config.video_fps),
            "video": render.encode_jpeg(clip_frames(config, subject, class_index, clip)),
            "label": class_index,
            "text": CLASS_DESCRIPTIONS[CLASS_NAMES[class_index]],
            "subject": np.int32(subject),
            "id": clip_id(subject, class_index, clip),
    }
