"""IMU readings from analytic sensor poses: specific force and angular rate in the sensor frame."""
from __future__ import annotations

import numpy as np

from .kinematics import GRAVITY, SLOTS, Motion, Pose, body_poses

CHANNEL_NAMES: tuple[str, ...] = tuple(
        f"{slot}/{sensor}_{axis}" for slot in SLOTS for sensor in ("acc", "gyro") for axis in "xyz"
)


def specific_force_and_rate(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Accelerometer [T, 3] (m/s²) and gyroscope [T, 3] (rad/s) readings of an ideal sensor.

    Specific force is acceleration minus gravity, so a sensor at rest reads +9.81 along world up;
    both are expressed in the sensor frame (rotation transpose applied).
    """
    rot = pose.rotation.value
    specific_force_world = pose.position.d2 + np.array([0.0, 0.0, GRAVITY])
    acc = np.einsum("tji,tj->ti", rot, specific_force_world)
    # Rᵀ dR/dt is the skew matrix of the body-frame angular velocity.
    skew = np.einsum("tji,tjk->tik", rot, pose.rotation.d1)
    gyro = 0.5 * np.stack(
        [skew[:, 2, 1] - skew[:, 1, 2], skew[:, 0, 2] - skew[:, 2, 0], skew[:, 1, 0] - skew[:, 0, 1]], axis=-1)
    return acc, gyro


def clean_imu(motion: Motion, t: np.ndarray) -> np.ndarray:
    """Noise- and bias-free readings [T, 30] in CHANNEL_NAMES order."""
    poses = body_poses(motion, t)
    columns = []
    for slot in SLOTS:
        acc, gyro = specific_force_and_rate(poses[slot])
        columns += [acc, gyro]
    return np.concatenate(columns, axis=-1)


def sensor_bias(motion: Motion) -> np.ndarray:
    """The subject's constant bias per channel [30]."""
    s = motion.subject
    return np.concatenate([np.concatenate([s.acc_bias[i], s.gyro_bias[i]]) for i in range(len(SLOTS))])


def noise_std(motion: Motion) -> np.ndarray:
    """White-noise standard deviation per channel [30]."""
    s = motion.subject
    return np.tile(np.repeat([s.acc_noise_std, s.gyro_noise_std], 3), len(SLOTS))


def imu_times(duration: float, rate_hz: float) -> np.ndarray:
    return np.arange(int(round(duration * rate_hz))) / rate_hz


def simulate_imu(motion: Motion, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Measured readings [T, 30] float32: ideal signal + subject bias + white noise."""
    t = imu_times(motion.duration, rate_hz)
    clean = clean_imu(motion, t)
    noise = rng.standard_normal(clean.shape) * noise_std(motion)
    return (clean + sensor_bias(motion) + noise).astype(np.float32)
