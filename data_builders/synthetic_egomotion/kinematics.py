"""Analytic body model: head, wrist and ankle poses as smooth functions of time.

World frame: x, y horizontal, z up; gravity is (0, 0, -9.81). A segment frame has x forward,
y left, z up when the person stands upright facing +x. Every pose is built from `jets`, so
positions come with exact velocities and accelerations.

The body is a root point on the ground that moves along the activity's path and turns by the
heading `yaw`; a pelvis rides above it (gait bob, lateral sway, sitting), the trunk leans, the
head keeps its own gaze pitch, arms and legs are two-link pendulums swinging at the stride
frequency (half the step cadence), left and right in antiphase.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import jets
from .activities import CLASS_NAMES
from .jets import Jet

SLOTS: tuple[str, ...] = ("left_arm", "right_arm", "left_leg", "right_leg", "head")
GRAVITY = 9.81

# Segment lengths as fractions of body height (standard anthropometric ratios).
_THIGH, _SHANK, _FOOT = 0.245, 0.246, 0.039
_TRUNK, _SHOULDER_HALF_WIDTH, _HIP_HALF_WIDTH = 0.29, 0.13, 0.055
_UPPER_ARM, _FOREARM = 0.186, 0.146
_HEAD_SENSOR = (0.05, 0.0, 0.11)  # glasses: a little forward of and above the neck base

# Sensor axes in the forearm/shank frame (columns x, y, z): x points down the limb, z out of the side.
_MOUNT_LEFT = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
_MOUNT_RIGHT = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])


@dataclasses.dataclass(frozen=True)
class SubjectParams:
    """What makes one simulated person differ from another."""

    subject: int
    height: float  # m
    walk_cadence_hz: float  # steps per second
    run_cadence_hz: float
    step_amplitude: float  # pelvis vertical bob when walking, m
    arm_swing: float  # rad, walking arm swing amplitude
    acc_bias: np.ndarray  # [5, 3] m/s², constant per sensor
    gyro_bias: np.ndarray  # [5, 3] rad/s
    acc_noise_std: float  # m/s², white noise per sample
    gyro_noise_std: float  # rad/s


def subject_params(seed: int, subject: int) -> SubjectParams:
    rng = np.random.default_rng([seed, 0, subject])
    return SubjectParams(
            subject=subject,
            height=float(rng.uniform(1.55, 1.95)),
            walk_cadence_hz=float(rng.uniform(1.6, 2.0)),
            run_cadence_hz=float(rng.uniform(2.5, 3.0)),
            step_amplitude=float(rng.uniform(0.02, 0.04)),
            arm_swing=float(rng.uniform(0.2, 0.4)),
            acc_bias=rng.normal(0.0, 0.1, size=(len(SLOTS), 3)),
            gyro_bias=rng.normal(0.0, 0.01, size=(len(SLOTS), 3)),
            acc_noise_std=float(rng.uniform(0.02, 0.05)),
            gyro_noise_std=float(rng.uniform(0.003, 0.008)),
    )


@dataclasses.dataclass(frozen=True)
class Motion:
    """All parameters of one clip's movement. Angles in rad, lengths in m, times in s."""

    activity: str
    subject: SubjectParams
    duration: float
    heading: float  # initial yaw of the walking direction
    phase: float  # gait phase at t = 0
    cadence_hz: float  # steps per second; 0 when there is no stepping
    speed: float  # horizontal speed along the heading
    slope: float  # rise per horizontal metre (stairs), 0 on flat ground
    bob: float  # pelvis vertical oscillation at the step frequency
    surge: float  # forward oscillation at the step frequency
    sway: float  # lateral pelvis sway at the stride frequency
    thigh_mean: float
    thigh_amp: float
    knee_mean: float
    knee_amp: float
    arm_mean: float
    arm_amp: float
    elbow: float
    trunk_lean: float
    trunk_lean_osc: float
    trunk_roll: float
    gaze_pitch: float
    head_nod: float
    head_roll: float
    posture_sway: float  # standing balance sway, m
    turn_angle: float = 0.0  # signed total yaw change over the clip (left is positive)
    turn_start: float = 0.0
    turn_duration: float = 1.0
    sit_start: float = 0.0
    sit_duration: float = 0.0  # 0: no sitting


def sample_motion(activity: str, subject: SubjectParams, duration: float, rng: np.random.Generator) -> Motion:
    """Draw one clip's movement for `activity`, shaped by the subject's body and gait."""
    if activity not in CLASS_NAMES:
        raise ValueError(f"activity: expected one of {CLASS_NAMES}, got {activity!r}")
    h = subject.height
    leg = (_THIGH + _SHANK + _FOOT) * h
    jitter = lambda: float(rng.uniform(0.92, 1.08))
    common = dict(
        activity=activity, subject=subject, duration=duration,
        heading=float(rng.uniform(0.0, 2.0 * np.pi)), phase=float(rng.uniform(0.0, 2.0 * np.pi)),
        slope=0.0, surge=0.0, sway=0.0, trunk_lean_osc=0.0, trunk_roll=0.0, head_nod=0.0, head_roll=0.0,
        posture_sway=0.0,
    )

    def thigh_amp_for(speed: float, cadence: float) -> float:
        # Stance-foot speed ≈ leg length × swing amplitude × stride angular frequency = body speed.
        return speed / (leg * np.pi * cadence)

    if activity in ("walk", "run"):
        running = activity == "run"
        cadence = (subject.run_cadence_hz if running else subject.walk_cadence_hz) * float(rng.uniform(0.96, 1.04))
        speed = (0.62 if running else 0.41) * h * jitter() * cadence
        return Motion(
            **common | dict(surge=0.03 if running else 0.012, sway=0.015 if running else 0.025,
                            trunk_lean_osc=0.02, trunk_roll=0.03, head_nod=0.04 if running else 0.025,
                            head_roll=0.02),
            cadence_hz=cadence, speed=speed,
            bob=subject.step_amplitude * (2.2 if running else 1.0) * jitter(),
            thigh_mean=0.25 if running else 0.05, thigh_amp=thigh_amp_for(speed, cadence),
            knee_mean=0.3 if running else 0.1, knee_amp=1.5 if running else 0.9,
            arm_mean=0.05, arm_amp=subject.arm_swing * (1.5 if running else 1.0) * jitter(),
            elbow=1.5 if running else 0.3, trunk_lean=0.15 if running else 0.05,
            gaze_pitch=float(rng.uniform(0.0, 0.1)) + (0.0 if running else 0.05),
        )
    if activity in ("stairs_up", "stairs_down"):
        up = activity == "stairs_up"
        tread, rise = 0.28, float(rng.uniform(0.15, 0.19))
        cadence = subject.walk_cadence_hz * (0.85 if up else 0.95) * float(rng.uniform(0.96, 1.04))
        speed = tread * cadence
        return Motion(
            **common | dict(slope=rise / tread if up else -rise / tread, surge=0.01, sway=0.03,
                            trunk_lean_osc=0.03, trunk_roll=0.03, head_nod=0.03, head_roll=0.02),
            cadence_hz=cadence, speed=speed,
            bob=subject.step_amplitude * (0.8 if up else 1.2) * jitter(),
            thigh_mean=0.45 if up else 0.15, thigh_amp=0.25 if up else 0.2,
            knee_mean=0.4 if up else 0.35, knee_amp=1.0 if up else 0.8,
            arm_mean=0.05 if up else 0.15, arm_amp=subject.arm_swing * 0.5 * jitter(), elbow=0.4,
            trunk_lean=0.2 if up else -0.02, gaze_pitch=(0.4 if up else 0.55) + float(rng.uniform(-0.05, 0.05)),
        )
    if activity in ("turn_left", "turn_right"):
        sign = 1.0 if activity == "turn_left" else -1.0
        start = float(rng.uniform(0.0, 0.15)) * duration
        return Motion(
            **common | dict(trunk_roll=0.01, head_roll=0.01),
            cadence_hz=subject.walk_cadence_hz * 0.8 * jitter(), speed=0.0,
            bob=subject.step_amplitude * 0.3, thigh_mean=0.1, thigh_amp=0.08, knee_mean=0.1, knee_amp=0.5,
            arm_mean=0.05, arm_amp=0.1, elbow=0.4, trunk_lean=0.05, gaze_pitch=float(rng.uniform(0.0, 0.15)),
            turn_angle=sign * float(np.deg2rad(rng.uniform(70.0, 110.0))), turn_start=start,
            turn_duration=duration - start - float(rng.uniform(0.0, 0.15)) * duration,
        )
    still = dict(cadence_hz=0.0, speed=0.0, bob=0.0, thigh_mean=0.0, thigh_amp=0.0, knee_mean=0.05, knee_amp=0.0,
                 arm_mean=0.0, arm_amp=0.0, elbow=0.15, trunk_lean=0.02)
    if activity == "stand":
        return Motion(**common | dict(posture_sway=float(rng.uniform(0.002, 0.005))), **still,
                      gaze_pitch=float(rng.uniform(0.0, 0.2)))
    # sit_down: the whole movement fits inside the clip, so it starts and ends at rest.
    start = float(rng.uniform(0.05, 0.2)) * duration
    return Motion(**common | dict(posture_sway=0.002), **still, gaze_pitch=float(rng.uniform(0.05, 0.15)),
                  sit_start=start, sit_duration=(0.95 * duration - start) * float(rng.uniform(0.85, 1.0)))


@dataclasses.dataclass(frozen=True)
class Pose:
    position: Jet  # [T, 3] world position of the sensor
    rotation: Jet  # [T, 3, 3] sensor-to-world rotation


def _constant_matrix(matrix: np.ndarray, n: int) -> Jet:
    return jets.as_jet(np.broadcast_to(matrix, (n, 3, 3)).copy())


def body_poses(m: Motion, t: np.ndarray) -> dict[str, Pose]:
    """Sensor poses of every slot at times `t` (seconds), keyed by slot name."""
    t = np.asarray(t, dtype=np.float64)
    n = t.shape[0]
    h = m.subject.height
    time = jets.time_variable(t)
    zero = jets.as_jet(np.zeros(n))
    stride = time * (np.pi * m.cadence_hz) + m.phase  # stride frequency = cadence / 2
    step = 2.0 * stride

    # Sitting: thighs and knees flex together so the feet stay planted while the pelvis drops and moves back.
    if m.sit_duration > 0.0:
        sit = jets.minimum_jerk((time - m.sit_start) * (1.0 / m.sit_duration))
    else:
        sit = zero
    sit_angle = sit * (np.pi / 2)
    sit_bell = jets.sin(sit * np.pi)  # 0 at rest, 1 half-way down

    # Heading: turns follow a minimum-jerk profile, so yaw rate and yaw acceleration start and end at zero.
    if m.turn_angle != 0.0:
        turn = jets.minimum_jerk((time - m.turn_start) * (1.0 / m.turn_duration))
    else:
        turn = zero
    yaw = turn * m.turn_angle + m.heading
    body_yaw = jets.rot_z(yaw)

    # Root on the ground (on the stair incline for stairs).
    distance = time * m.speed + jets.sin(step) * m.surge
    direction = np.array([np.cos(m.heading), np.sin(m.heading), 0.0])
    root = jets.stack([distance * direction[0], distance * direction[1], distance * m.slope])

    balance_x = jets.sin(time * (2 * np.pi * 0.23) + m.phase) * m.posture_sway
    balance_y = jets.sin(time * (2 * np.pi * 0.17) + 2.0 * m.phase) * (0.7 * m.posture_sway)
    hip_height = (_THIGH + _SHANK + _FOOT) * h
    pelvis_local = jets.stack([
            balance_x - jets.sin(sit_angle) * (_THIGH * h),
            balance_y + jets.sin(stride) * m.sway,
            hip_height - jets.cos(step) * m.bob - (1.0 - jets.cos(sit_angle)) * (_THIGH * h),
    ])
    pelvis = root + jets.matmul(body_yaw, pelvis_local)

    lean = m.trunk_lean + jets.cos(step) * m.trunk_lean_osc + sit_bell * 0.5
    trunk = jets.matmul(jets.matmul(body_yaw, jets.rot_y(lean)), jets.rot_x(jets.sin(stride) * m.trunk_roll))
    neck = pelvis + jets.matmul(trunk, jets.stack([zero, zero, zero + _TRUNK * h]))

    poses: dict[str, Pose] = {}
    for side, sign, mount in (("left", 1.0, _MOUNT_LEFT), ("right", -1.0, _MOUNT_RIGHT)):
        side_phase = stride + (0.0 if side == "left" else np.pi)
        mount_jet = _constant_matrix(mount, n)

        # Arm: swings opposite to the same-side leg.
        shoulder_offset = jets.stack([zero, zero + sign * _SHOULDER_HALF_WIDTH * h, zero - 0.03 * h])
        shoulder = neck + jets.matmul(trunk, shoulder_offset)
        swing = m.arm_mean + jets.sin(side_phase + np.pi) * m.arm_amp + sit * 0.4
        upper = jets.matmul(trunk, jets.rot_y(-1.0 * swing))
        elbow = shoulder + jets.matmul(upper, jets.stack([zero, zero, zero - _UPPER_ARM * h]))
        forearm = jets.matmul(trunk, jets.rot_y(-1.0 * (swing + m.elbow + sit * 0.8)))
        wrist = elbow + jets.matmul(forearm, jets.stack([zero, zero, zero - _FOREARM * h]))
        poses[f"{side}_arm"] = Pose(wrist, jets.matmul(forearm, mount_jet))

        # Leg: thigh flexion forward, knee flexion peaks while the leg swings through.
        hip = pelvis + jets.matmul(body_yaw, jets.stack([zero, zero + sign * _HIP_HALF_WIDTH * h, zero]))
        thigh_angle = m.thigh_mean + jets.sin(side_phase) * m.thigh_amp + sit_angle
        knee_angle = m.knee_mean + (1.0 + jets.cos(side_phase)) * (0.5 * m.knee_amp) + sit_angle
        thigh = jets.matmul(body_yaw, jets.rot_y(-1.0 * thigh_angle))
        knee = hip + jets.matmul(thigh, jets.stack([zero, zero, zero - _THIGH * h]))
        shank = jets.matmul(body_yaw, jets.rot_y(knee_angle - thigh_angle))
        ankle = knee + jets.matmul(shank, jets.stack([zero, zero, zero - _SHANK * h]))
        poses[f"{side}_leg"] = Pose(ankle, jets.matmul(shank, mount_jet))

    # Head: keeps its own gaze pitch (people look down at stairs) and leads a turn a little.
    head_lead = jets.sin(turn * np.pi) * (0.12 * m.turn_angle)
    pitch = m.gaze_pitch + jets.sin(step + 0.5) * m.head_nod + sit_bell * 0.3
    head_rot = jets.matmul(
            jets.matmul(jets.rot_z(yaw + head_lead), jets.rot_y(pitch)), jets.rot_x(jets.sin(stride) * m.head_roll))
    head = neck + jets.matmul(head_rot, jets.stack([zero + c * h for c in _HEAD_SENSOR]))
    poses["head"] = Pose(head, head_rot)
    return {slot: poses[slot] for slot in SLOTS}
