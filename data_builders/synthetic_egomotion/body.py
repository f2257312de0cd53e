"""Articulated body: a kinematic skeleton with exact velocities and accelerations (spatial kinematics).

World frame: x, y horizontal, z up. Every segment frame has x forward, y left, z up when the person stands
upright facing +x; limbs hang along -z. Joint angles come with their first and second time derivatives
(`Angle`), and each elementary joint rotation updates the segment's orientation R, world angular velocity w
and angular acceleration a exactly:

    R' = R Rot_e(q),   w' = w + q' R e,   a' = a + q'' R e + q' (w x R e),

and a point at offset r(t) in a segment moves with v = v0 + w x Rr + R r' and
a = a0 + a x Rr + w x (w x Rr) + 2 w x R r' + R r''. Arrays are structure-of-arrays: vectors [3, N],
rotations [3, 3, N], N = clips x samples flattened, so the whole batch is a few dozen numpy operations.
"""
from __future__ import annotations

import dataclasses

import numpy as np

GRAVITY = 9.81

# Degrees of freedom, in the order of the motion arrays. Left and right use the same sign convention for
# mirror-symmetric movement (abduction is away from the body on both sides).
AXIAL_DOFS = ("pelvis_x", "pelvis_y", "pelvis_z", "pelvis_yaw", "pelvis_pitch", "pelvis_roll",
              "lumbar_flex", "lumbar_bend", "lumbar_twist", "neck_flex", "neck_bend", "neck_twist")
LIMB_DOFS = ("shoulder_flex", "shoulder_abd", "shoulder_rot", "elbow_flex", "forearm_pro", "wrist_flex",
             "wrist_dev", "hip_flex", "hip_abd", "hip_rot", "knee_flex", "ankle_flex")
DOFS: tuple[str, ...] = AXIAL_DOFS + tuple(f"{s}_{d}" for s in ("left", "right") for d in LIMB_DOFS)
DOF_INDEX = {name: i for i, name in enumerate(DOFS)}
# Under a left-right mirror these change sign (and left/right limb blocks swap).
MIRROR_NEGATED = ("pelvis_y", "pelvis_yaw", "pelvis_roll", "lumbar_bend", "lumbar_twist", "neck_bend", "neck_twist")

SEGMENTS: tuple[str, ...] = ("pelvis", "chest", "head") + tuple(
        f"{s}_{seg}" for s in ("left", "right") for seg in ("upper_arm", "forearm", "hand", "thigh", "shank", "foot"))

# Segment lengths as fractions of body height (Winter, Biomechanics and Motor Control of Human Movement, table 4.1).
LENGTH_RATIOS = dict(trunk=0.288, shoulder_half_width=0.129, shoulder_drop=0.03, hip_half_width=0.055,
                     upper_arm=0.186, forearm=0.146, hand=0.108, thigh=0.245, shank=0.246, ankle_height=0.039,
                     foot=0.152, head=0.13)


@dataclasses.dataclass(frozen=True)
class Body:
    """Per-clip anthropometrics: segment lengths in metres, each [B] (one person per clip)."""

    height: np.ndarray
    lengths: dict[str, np.ndarray]

    @property
    def hip_height(self) -> np.ndarray:
        return self.lengths["thigh"] + self.lengths["shank"] + self.lengths["ankle_height"]


def sample_bodies(rng: np.random.Generator, count: int) -> Body:
    """Heights 1.50-1.95 m and each segment ratio varied by +-5 % (people differ in proportions too)."""
    height = rng.uniform(1.50, 1.95, size=count)
    lengths = {k: height * r * rng.uniform(0.95, 1.05, size=count) for k, r in LENGTH_RATIOS.items()}
    return Body(height, lengths)


@dataclasses.dataclass(frozen=True)
class Angle:
    """A joint angle with its exact first and second time derivatives, each [N]."""

    q: np.ndarray
    dq: np.ndarray
    ddq: np.ndarray

    def scaled(self, factor: float) -> Angle:
        return Angle(factor * self.q, factor * self.dq, factor * self.ddq)


@dataclasses.dataclass(frozen=True)
class Frame:
    """A segment: rotation [3, 3, N] (columns are its axes in world), world angular velocity and acceleration [3, N],
    and the position, velocity and acceleration [3, N] of its origin."""

    rotation: np.ndarray
    omega: np.ndarray
    alpha: np.ndarray
    position: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


_PLANE = {0: (1, 2), 1: (2, 0), 2: (0, 1)}  # the two columns an elementary rotation about axis k mixes


def rotate(frame: Frame, axis: int, angle: Angle) -> Frame:
    """Apply an elementary rotation about the frame's own axis (0: x, 1: y, 2: z) by a time-varying angle."""
    i, j = _PLANE[axis]
    c, s = np.cos(angle.q), np.sin(angle.q)
    r = frame.rotation.copy()
    r[:, i], r[:, j] = c * frame.rotation[:, i] + s * frame.rotation[:, j], c * frame.rotation[:, j] - s * frame.rotation[:, i]
    e = frame.rotation[:, axis]
    omega = frame.omega + angle.dq * e
    alpha = frame.alpha + angle.ddq * e + angle.dq * cross(frame.omega, e)
    return dataclasses.replace(frame, rotation=r, omega=omega, alpha=alpha)


def rotate_zyx(frame: Frame, yaw: Angle, pitch: Angle, roll: Angle) -> Frame:
    return rotate(rotate(rotate(frame, 2, yaw), 1, pitch), 0, roll)


def _apply(rotation: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """R v for rotations [3, 3, N] and vectors [3, N] (or [3, B-broadcastable])."""
    return rotation[:, 0] * vector[0] + rotation[:, 1] * vector[1] + rotation[:, 2] * vector[2]


def moved(frame: Frame, offset: np.ndarray, offset_d1: np.ndarray | None = None,
          offset_d2: np.ndarray | None = None) -> Frame:
    """The frame with its origin moved by `offset` ([3, N], in the frame's own axes, optionally time-varying)."""
    d = _apply(frame.rotation, offset)
    w_d = cross(frame.omega, d)
    velocity = frame.velocity + w_d
    acceleration = frame.acceleration + cross(frame.alpha, d) + cross(frame.omega, w_d)
    if offset_d1 is not None:
        rd1 = _apply(frame.rotation, offset_d1)
        velocity = velocity + rd1
        acceleration = acceleration + 2.0 * cross(frame.omega, rd1) + _apply(frame.rotation, offset_d2)
    return dataclasses.replace(frame, position=frame.position + d, velocity=velocity, acceleration=acceleration)


def _along(length: np.ndarray, axis: int = 2, sign: float = -1.0) -> np.ndarray:
    out = np.zeros((3,) + np.shape(length))
    out[axis] = sign * length
    return out


def skeleton(dofs: dict[str, Angle], root: tuple[np.ndarray, np.ndarray, np.ndarray], heading: Angle,
             lengths: dict[str, np.ndarray], hip_height: np.ndarray) -> dict[str, Frame]:
    """Frames of every segment (origin at its proximal joint; hands and feet at their centres).

    root: path position, velocity, acceleration [3, N] on the ground; heading: the path's yaw; lengths: [N] each.
    """
    n = heading.q.shape[0]
    zeros = np.zeros((3, n))
    world = Frame(np.broadcast_to(np.eye(3)[:, :, None], (3, 3, n)).copy(), zeros, zeros, *root)
    yaw = Angle(heading.q + dofs["pelvis_yaw"].q, heading.dq + dofs["pelvis_yaw"].dq,
                heading.ddq + dofs["pelvis_yaw"].ddq)
    facing = rotate(world, 2, yaw)
    offset = [dofs[f"pelvis_{a}"] for a in "xyz"]
    pelvis = moved(facing, np.stack([offset[0].q, offset[1].q, offset[2].q + hip_height]),
                   np.stack([o.dq for o in offset]), np.stack([o.ddq for o in offset]))
    pelvis = rotate(rotate(pelvis, 1, dofs["pelvis_pitch"]), 0, dofs["pelvis_roll"])
    chest = rotate_zyx(pelvis, dofs["lumbar_twist"], dofs["lumbar_flex"], dofs["lumbar_bend"])
    neck = moved(chest, _along(lengths["trunk"], sign=1.0))
    head = rotate_zyx(neck, dofs["neck_twist"], dofs["neck_flex"], dofs["neck_bend"])
    frames = {"pelvis": pelvis, "chest": chest, "head": head}
    for side, s in (("left", 1.0), ("right", -1.0)):
        d = {name: dofs[f"{side}_{name}"] for name in LIMB_DOFS}
        shoulder = moved(chest, np.stack([0.0 * lengths["trunk"], s * lengths["shoulder_half_width"],
                                          lengths["trunk"] - lengths["shoulder_drop"]]))
        # Flexion raises the arm forward (about -y), abduction sideways, rotation about the arm's long axis.
        upper = rotate(rotate(rotate(shoulder, 1, d["shoulder_flex"].scaled(-1.0)), 0, d["shoulder_abd"].scaled(s)),
                       2, d["shoulder_rot"].scaled(s))
        forearm = rotate(rotate(moved(upper, _along(lengths["upper_arm"])), 1, d["elbow_flex"].scaled(-1.0)),
                         2, d["forearm_pro"].scaled(s))
        wrist = moved(forearm, _along(lengths["forearm"]))
        hand = moved(rotate(rotate(wrist, 1, d["wrist_flex"].scaled(-1.0)), 0, d["wrist_dev"].scaled(s)),
                     _along(0.5 * lengths["hand"]))
        hip = moved(pelvis, np.stack([0.0 * lengths["trunk"], s * lengths["hip_half_width"], 0.0 * lengths["trunk"]]))
        thigh = rotate(rotate(rotate(hip, 1, d["hip_flex"].scaled(-1.0)), 0, d["hip_abd"].scaled(s)),
                       2, d["hip_rot"].scaled(s))
        shank = rotate(moved(thigh, _along(lengths["thigh"])), 1, d["knee_flex"])
        foot = moved(rotate(moved(shank, _along(lengths["shank"])), 1, d["ankle_flex"].scaled(-1.0)),
                     np.stack([0.3 * lengths["foot"], 0.0 * lengths["foot"], -lengths["ankle_height"]]))
        frames |= {f"{side}_upper_arm": upper, f"{side}_forearm": forearm, f"{side}_hand": hand,
                   f"{side}_thigh": thigh, f"{side}_shank": shank, f"{side}_foot": foot}
    return {name: frames[name] for name in SEGMENTS}
