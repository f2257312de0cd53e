"""Parametric motion primitives (gait, postures and transitions, arm actions, exercises, gym machines and sports)
and their text.

Each sampler draws one primitive for one person with random speed, amplitude, handedness, phase and style, and
returns the segments it is made of. Joint conventions are those of `body` (flexion forward is positive; for the
legs hip flexion lifts the thigh forward and knee flexion bends the shank back). Arm actions are written for the
right hand and mirrored for left-handed use.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .body import DOF_INDEX, DOFS, LIMB_DOFS, MIRROR_NEGATED
from .motion_program import H, Segment

PI = np.pi


@dataclasses.dataclass(frozen=True)
class Person:
    """What a sampler needs to know about the body (scalars for one clip)."""

    height: float
    hip_height: float
    upper_arm: float
    forearm: float


@dataclasses.dataclass(frozen=True)
class Draw:
    segments: list[Segment]
    posture: str  # "stand", "sit" or "lie": which idle segments may come before and after
    transition: bool = False  # the segments are the two postures of a transition (cross-fade in the middle)
    hold: str = ""  # if set, lead-ins and lead-outs hold the main pose still (on a machine, in an elevator): their phrase


def _blank(activity: str, phrase: str) -> Segment:
    d = len(DOFS)
    return Segment(activity, phrase, np.zeros(d), np.zeros((H, d)), np.zeros((H, d)))


def _both(seg: Segment, dof: str, mean: float | None = None, *harmonics, antiphase: bool = False) -> Segment:
    """Set a limb DOF on both sides; with antiphase the right side is half a cycle of the fundamental later."""
    seg.set(f"left_{dof}", mean, *harmonics)
    right = [(h, a, p + (h * PI if antiphase else 0.0)) for h, a, p in harmonics]
    return seg.set(f"right_{dof}", mean, *right)


def mirror(seg: Segment) -> Segment:
    """The same movement with left and right exchanged (handedness)."""
    perm = np.arange(len(DOFS))
    for dof in LIMB_DOFS:
        left, right = DOF_INDEX[f"left_{dof}"], DOF_INDEX[f"right_{dof}"]
        perm[left], perm[right] = right, left
    sign = np.array([-1.0 if d in MIRROR_NEGATED else 1.0 for d in DOFS])
    return dataclasses.replace(seg, mean=seg.mean[perm] * sign, amp=seg.amp[:, perm] * sign, phase=seg.phase[:, perm],
                               turn=-seg.turn)


# ---------------------------------------------------------------- postures


def stand(rng, person: Person, activity="stand", phrase="stands still") -> Segment:
    seg = _blank(activity, phrase)
    _both(seg, "knee_flex", rng.uniform(0.0, 0.1))
    _both(seg, "elbow_flex", rng.uniform(0.1, 0.3))
    _both(seg, "shoulder_abd", rng.uniform(0.02, 0.12))
    seg.set("neck_flex", rng.uniform(-0.05, 0.25))
    return seg


def sit(rng, person: Person, activity="sit", phrase="sits still") -> Segment:
    seg = _blank(activity, phrase)
    recline = rng.uniform(-0.25, 0.0)
    seg.set("pelvis_pitch", recline).set("pelvis_z", rng.uniform(0.45, 0.55) - person.hip_height)
    seg.set("pelvis_x", -0.1 * person.height).set("lumbar_flex", rng.uniform(0.0, 0.25) - recline)
    _both(seg, "hip_flex", PI / 2 + recline)
    _both(seg, "knee_flex", PI / 2 + rng.uniform(-0.2, 0.2))
    _both(seg, "shoulder_flex", rng.uniform(0.2, 0.5))
    _both(seg, "elbow_flex", rng.uniform(0.6, 1.0))
    _both(seg, "forearm_pro", -rng.uniform(0.6, 1.6))  # hands on the lap, about palms down (negative: pronation)
    seg.set("neck_flex", rng.uniform(0.0, 0.3))
    return seg


def lie(rng, person: Person, activity="lie", phrase="lies on the back", side: int | None = None) -> Segment:
    seg = _blank(activity, phrase)
    side = rng.integers(3) if side is None else side  # 0: back, 1: right side, 2: left side
    seg.set("pelvis_z", rng.uniform(0.1, 0.2) - person.hip_height).set("pelvis_x", -0.4 * person.height)
    if side == 0:
        seg.set("pelvis_pitch", -PI / 2 + rng.uniform(-0.05, 0.1))
        _both(seg, "knee_flex", rng.uniform(0.0, 0.3))
    else:
        seg.set("pelvis_pitch", -PI / 2).set("pelvis_roll", (1 if side == 1 else -1) * PI / 2)
        _both(seg, "hip_flex", rng.uniform(0.3, 0.8))
        _both(seg, "knee_flex", rng.uniform(0.5, 1.2))
        seg.phrase = f"lies on the {'right' if side == 1 else 'left'} side"
    _both(seg, "elbow_flex", rng.uniform(0.1, 0.6))
    return seg


POSTURES: dict[str, Callable] = {"stand": stand, "sit": sit, "lie": lie}


# ---------------------------------------------------------------- gait family


def _gait(rng, person: Person, activity: str, phrase: str, cadence: float, step_length: float, *, bob: float,
          hip_mean: float, hip_amp: float | None = None, knee_mean: float, knee_amp: float, elbow: float,
          arm_amp: float, lean: float, gaze: float, slope: float = 0.0) -> Segment:
    """Cyclic stepping: the fundamental is the stride (two steps); legs in antiphase, arms opposite to legs."""
    speed = cadence * step_length
    leg = person.hip_height
    if hip_amp is None:  # stance-foot speed ~ leg length x swing amplitude x stride angular frequency = body speed
        hip_amp = speed / max(leg * PI * cadence, 1e-6)
    seg = stand(rng, person, activity, phrase)
    seg.freq, seg.speed, seg.slope = cadence / 2.0, speed, slope
    _both(seg, "hip_flex", hip_mean, (1, hip_amp, 0.0), antiphase=True)
    _both(seg, "knee_flex", knee_mean, (1, 0.5 * knee_amp, 0.9), (2, 0.1 * knee_amp, 0.3), antiphase=True)
    _both(seg, "ankle_flex", 0.0, (1, 0.15, -0.5), antiphase=True)
    _both(seg, "shoulder_flex", 0.05, (1, -arm_amp, 0.0), antiphase=True)
    _both(seg, "elbow_flex", elbow, (1, 0.2 * arm_amp, 0.0), antiphase=True)
    seg.set("pelvis_z", 0.0, (2, bob, -PI / 2)).set("pelvis_y", 0.0, (1, rng.uniform(0.01, 0.03), 0.0))
    seg.set("pelvis_x", 0.0, (2, 0.3 * bob, 0.0)).set("pelvis_yaw", 0.0, (1, rng.uniform(0.03, 0.08), PI / 2))
    seg.set("pelvis_roll", 0.0, (2, rng.uniform(0.02, 0.05), 0.0)).set("pelvis_pitch", lean)
    seg.set("lumbar_twist", 0.0, (1, rng.uniform(0.03, 0.08), -PI / 2))
    seg.set("neck_flex", gaze, (2, rng.uniform(0.01, 0.04), 0.5))
    return seg


def walk(rng, person, speed_factor):
    cadence = rng.uniform(1.6, 2.1) * speed_factor
    seg = _gait(rng, person, "walk", "walks", cadence, 0.41 * person.height * speed_factor, bob=rng.uniform(0.02, 0.04),
                hip_mean=0.05, knee_mean=0.1, knee_amp=0.9, elbow=0.3, arm_amp=rng.uniform(0.2, 0.45), lean=0.05,
                gaze=rng.uniform(0.0, 0.2))
    return Draw([seg], "stand")


def run(rng, person, speed_factor):
    cadence = rng.uniform(2.5, 3.1) * speed_factor**0.5
    seg = _gait(rng, person, "run", "runs", cadence, 0.62 * person.height * speed_factor, bob=rng.uniform(0.04, 0.08),
                hip_mean=0.25, knee_mean=0.4, knee_amp=1.5, elbow=1.5, arm_amp=rng.uniform(0.4, 0.7), lean=0.15,
                gaze=rng.uniform(0.0, 0.15))
    return Draw([seg], "stand")


def jog_in_place(rng, person, speed_factor):
    seg = _gait(rng, person, "jog_in_place", "jogs on the spot", rng.uniform(2.3, 3.0) * speed_factor, 0.0,
                bob=rng.uniform(0.03, 0.06), hip_mean=0.35, hip_amp=rng.uniform(0.3, 0.5), knee_mean=0.7, knee_amp=1.2,
                elbow=1.4, arm_amp=rng.uniform(0.2, 0.5), lean=0.05, gaze=rng.uniform(0.0, 0.15))
    return Draw([seg], "stand")


def _stairs(rng, person, speed_factor, up: bool):
    tread, rise = 0.28, rng.uniform(0.15, 0.19)
    cadence = rng.uniform(1.4, 1.9) * speed_factor
    seg = _gait(rng, person, "stairs_up" if up else "stairs_down", "walks up the stairs" if up else "walks down the stairs",
                cadence, 2 * tread, bob=rng.uniform(0.02, 0.04), hip_mean=0.45 if up else 0.15,
                hip_amp=0.3 if up else 0.2, knee_mean=0.5 if up else 0.4, knee_amp=1.0, elbow=0.4,
                arm_amp=rng.uniform(0.1, 0.25), lean=0.2 if up else 0.0, gaze=rng.uniform(0.35, 0.6),
                slope=(rise if up else -rise) / tread)
    return Draw([seg], "stand")


def _slope(rng, person, speed_factor, up: bool):
    draw = walk(rng, person, speed_factor)
    seg = draw.segments[0]
    seg.activity, seg.phrase = ("walk_uphill", "walks uphill") if up else ("walk_downhill", "walks downhill")
    seg.slope = rng.uniform(0.06, 0.18) * (1 if up else -1)
    seg.set("pelvis_pitch", 0.12 if up else -0.02).set("neck_flex", rng.uniform(0.1, 0.35))
    return draw


def turn(rng, person, speed_factor):
    seg = _gait(rng, person, "turn", "turns around on the spot", rng.uniform(1.3, 1.8) * speed_factor, 0.0,
                bob=0.01, hip_mean=0.05, hip_amp=0.08, knee_mean=0.1, knee_amp=0.5, elbow=0.3, arm_amp=0.05,
                lean=0.03, gaze=rng.uniform(0.0, 0.2))
    seg.turn = rng.choice([-1.0, 1.0]) * rng.uniform(PI / 3, PI)
    seg.phrase = f"turns {'left' if seg.turn > 0 else 'right'} on the spot"
    return Draw([seg], "stand")


# ---------------------------------------------------------------- postures and transitions


def _idle(posture):
    def sampler(rng, person, speed_factor):
        seg = POSTURES[posture](rng, person)
        return Draw([seg], posture)
    return sampler


def _transition(before: str, after: str, activity: str, phrase: str):
    def sampler(rng, person, speed_factor):
        a, b = POSTURES[before](rng, person), POSTURES[after](rng, person)
        b.activity = a.activity = activity
        a.phrase, b.phrase = phrase, ""
        return Draw([a, b], after, transition=True)
    return sampler


# ---------------------------------------------------------------- arm and hand actions (right hand)


def _arm(rng, person, activity, phrase, posture, freq, **dofs) -> Draw:
    """An action of the right arm over a base posture; dofs: name -> (mean, [(h, amp, phase), ...])."""
    seg = POSTURES[posture](rng, person, activity, phrase)
    seg.freq = freq
    for dof, (mean, harmonics) in dofs.items():
        seg.set(dof if dof.startswith(("left_", "right_")) or dof in DOF_INDEX else f"right_{dof}", mean, *harmonics)
    return Draw([seg], posture)


def _base(rng):
    return "sit" if rng.uniform() < 0.4 else "stand"


def reach(rng, person, s):
    return _arm(rng, person, "reach", "reaches forward and back", _base(rng), rng.uniform(0.25, 0.6) * s,
                shoulder_flex=(rng.uniform(0.6, 1.0), [(1, rng.uniform(0.4, 0.7), 0.0)]),
                elbow_flex=(rng.uniform(0.5, 0.9), [(1, -rng.uniform(0.1, 0.3), 0.0)]),
                forearm_pro=(0.3, [(1, rng.uniform(0.2, 0.5), 0.0)]), lumbar_flex=(0.1, [(1, 0.1, 0.0)]))


def wave(rng, person, s):
    return _arm(rng, person, "wave", "waves", _base(rng), rng.uniform(1.2, 2.5) * s,
                shoulder_abd=(rng.uniform(1.6, 2.4), []), elbow_flex=(rng.uniform(0.6, 1.2), []),
                shoulder_rot=(0.0, [(1, rng.uniform(0.2, 0.45), 0.0)]), wrist_dev=(0.0, [(1, 0.2, 0.5)]))


def clap(rng, person, s):
    draw = _arm(rng, person, "clap", "claps both hands", _base(rng), rng.uniform(1.5, 3.0) * s)
    seg = draw.segments[0]
    _both(seg, "shoulder_flex", rng.uniform(0.7, 1.2))
    _both(seg, "elbow_flex", rng.uniform(0.8, 1.2))
    _both(seg, "shoulder_abd", 0.35, (1, rng.uniform(0.08, 0.15), 0.0))
    _both(seg, "shoulder_rot", 0.6, (1, rng.uniform(0.08, 0.15), 0.0))
    return draw


def throw(rng, person, s):
    return _arm(rng, person, "throw", "throws a ball overhand", "stand", rng.uniform(0.4, 0.8) * s,
                shoulder_flex=(1.6, [(1, rng.uniform(0.8, 1.3), 0.0), (2, 0.3, 0.0)]),
                shoulder_abd=(0.4, []), elbow_flex=(1.0, [(1, -0.6, 0.3), (2, 0.2, 0.0)]),
                lumbar_twist=(0.0, [(1, rng.uniform(0.2, 0.4), 0.0)]),
                pelvis_pitch=(0.05, [(1, 0.1, 0.0)]))


def _draw_shape(activity, phrase, ratio_abd, ratio_flex):
    def sampler(rng, person, s):
        size = rng.uniform(0.15, 0.4)
        return _arm(rng, person, activity, phrase, _base(rng), rng.uniform(0.3, 0.8) * s,
                    shoulder_flex=(rng.uniform(0.9, 1.4), [(ratio_flex, size, 0.0)]),
                    shoulder_abd=(0.2, [(ratio_abd, size, PI / 2)]), elbow_flex=(rng.uniform(0.3, 0.7), []))
    return sampler


def _hand_to_mouth(activity, phrase, head_tilt):
    def sampler(rng, person, s):
        return _arm(rng, person, activity, phrase, _base(rng), rng.uniform(0.15, 0.4) * s,
                    shoulder_flex=(0.5, [(1, 0.25, -PI / 2)]), shoulder_abd=(0.2, []),
                    elbow_flex=(1.4, [(1, rng.uniform(0.6, 0.9), -PI / 2)]),
                    forearm_pro=(0.3, [(1, 0.3, -PI / 2)]), neck_flex=(0.0, [(1, head_tilt, PI / 2)]))
    return sampler


def brush_teeth(rng, person, s):
    return _arm(rng, person, "brush_teeth", "brushes the teeth", "stand", rng.uniform(3.0, 5.0) * s,
                shoulder_flex=(0.6, [(1, 0.05, 0.0)]), shoulder_abd=(0.5, []), elbow_flex=(2.2, []),
                shoulder_rot=(0.2, [(1, rng.uniform(0.1, 0.2), 0.0)]), wrist_dev=(0.0, [(1, 0.15, 0.0)]),
                neck_flex=(0.2, []))


def type_keyboard(rng, person, s):
    draw = _arm(rng, person, "type", "types on a keyboard", "sit", rng.uniform(3.0, 6.0) * s)
    seg = draw.segments[0]
    _both(seg, "shoulder_flex", rng.uniform(0.2, 0.5))
    _both(seg, "elbow_flex", rng.uniform(1.3, 1.6))
    _both(seg, "forearm_pro", 1.3)
    _both(seg, "wrist_flex", -0.2, (1, 0.05, 0.0), (3, 0.015, 1.0), antiphase=True)
    _both(seg, "shoulder_abd", 0.15, (1, 0.01, 0.0), antiphase=True)
    seg.set("neck_flex", rng.uniform(0.2, 0.4))
    return draw


def comb_hair(rng, person, s):
    return _arm(rng, person, "comb_hair", "combs the hair", _base(rng), rng.uniform(0.6, 1.2) * s,
                shoulder_abd=(rng.uniform(1.7, 2.2), [(1, 0.1, 0.0)]), shoulder_flex=(0.6, [(1, 0.35, 0.0)]),
                elbow_flex=(2.0, [(1, 0.2, PI / 2)]))


# ---------------------------------------------------------------- whole-body exercises


def jump(rng, person, s):
    seg = stand(rng, person, "jump", "jumps up and down")
    seg.freq = rng.uniform(1.0, 1.8) * s
    height = rng.uniform(0.06, 0.15)
    seg.set("pelvis_z", -0.05, (1, height, 0.0), (2, 0.3 * height, -PI / 2))
    _both(seg, "hip_flex", 0.35, (1, -0.3, 0.0))
    _both(seg, "knee_flex", 0.6, (1, -0.5, 0.0))
    _both(seg, "ankle_flex", 0.0, (1, -0.3, 0.0))
    _both(seg, "shoulder_flex", 0.4, (1, 0.3, 0.0))
    return Draw([seg], "stand")


def jumping_jacks(rng, person, s):
    seg = stand(rng, person, "jumping_jacks", "does jumping jacks")
    seg.freq = rng.uniform(0.7, 1.1) * s
    seg.set("pelvis_z", -0.04, (2, rng.uniform(0.05, 0.1), -PI / 2))
    _both(seg, "hip_abd", 0.2, (1, -0.2, PI / 2))
    _both(seg, "knee_flex", 0.2, (2, 0.15, PI / 2))
    _both(seg, "shoulder_abd", 1.5, (1, -1.3, PI / 2))
    return Draw([seg], "stand")


def squat(rng, person, s):
    seg = stand(rng, person, "squat", "does squats")
    seg.freq = rng.uniform(0.3, 0.6) * s
    depth = rng.uniform(0.5, 1.0)
    seg.set("pelvis_z", -0.2 * depth * person.hip_height, (1, 0.2 * depth * person.hip_height, PI / 2))
    seg.set("pelvis_pitch", 0.3 * depth, (1, -0.3 * depth, PI / 2))
    _both(seg, "hip_flex", 0.7 * depth, (1, -0.7 * depth, PI / 2))
    _both(seg, "knee_flex", 0.9 * depth, (1, -0.9 * depth, PI / 2))
    _both(seg, "shoulder_flex", 0.8, (1, -0.6, PI / 2))
    return Draw([seg], "stand")


def lunge(rng, person, s):
    seg = stand(rng, person, "lunge", "does lunges")
    seg.freq = rng.uniform(0.2, 0.4) * s  # one lunge per leg per cycle
    drop = rng.uniform(0.15, 0.3)
    seg.set("pelvis_z", -drop / 2, (2, drop / 2, PI / 2))
    seg.set("left_hip_flex", 0.3, (1, 0.6, 0.0)).set("right_hip_flex", 0.3, (1, -0.6, 0.0))
    _both(seg, "knee_flex", 0.6, (2, -0.6, PI / 2))
    return Draw([seg], "stand")


def push_up(rng, person, s):
    seg = _blank("push_up", "does push-ups")
    seg.freq = rng.uniform(0.4, 0.8) * s
    incline = rng.uniform(1.1, 1.3)
    seg.set("pelvis_pitch", incline, (1, 0.1, PI / 2)).set("pelvis_z", 0.35 - person.hip_height, (1, 0.1, PI / 2))
    _both(seg, "shoulder_flex", incline, (1, 0.25, PI / 2))
    _both(seg, "elbow_flex", 0.6, (1, -0.6, PI / 2))
    _both(seg, "ankle_flex", 0.6)
    return Draw([seg], "lie")


# ---------------------------------------------------------------- gym machines, ball sports, elevator, treadmill


def _phasor(*terms: tuple[float, float]) -> tuple[float, float]:
    """sum_i a_i sin(theta + p_i) as one (amplitude, phase): for DOFs that combine movements with different timing."""
    z = sum(a * np.exp(1j * p) for a, p in terms)
    return float(abs(z)), float(np.angle(z))


def _quiet(seg: Segment, *dofs: str) -> Segment:
    """Remove every harmonic of these DOFs (a limb that holds on while the rest moves)."""
    for dof in dofs:
        seg.amp[:, DOF_INDEX[dof]] = 0.0
    return seg


def _cycle(rng, person, s, recumbent: bool):
    """Pedalling an exercise bike: the feet on cranks turning at the fundamental, legs in antiphase, hip and knee
    flexion greatest near the top of the pedal circle; seated upright and leaning on the handlebars, or reclined on a
    recumbent ("horizontal") bike with the legs pedalling forward."""
    activity = "cycle_recumbent" if recumbent else "cycle_upright"
    seg = _blank(activity, "pedals a recumbent exercise bike" if recumbent else "pedals an upright exercise bike")
    seg.freq = rng.uniform(0.8, 1.5) * s  # 50-90 rpm
    if recumbent:
        pitch, chest = -rng.uniform(0.05, 0.6), rng.uniform(0.0, 0.15)  # on the seat's back rest
        thigh, knee = rng.uniform(1.2, 1.5), rng.uniform(0.9, 1.2)  # thighs point forward, about horizontal
        seg.set("pelvis_z", rng.uniform(0.45, 0.6) - person.hip_height).set("pelvis_x", -0.15 * person.height)
        arm, elbow = rng.uniform(0.1, 0.5), rng.uniform(0.9, 1.5)  # hands on the seat grips
    else:
        pitch, chest = rng.uniform(0.05, 0.3), rng.uniform(0.0, 0.3)  # leaning forward onto the handlebars
        thigh, knee = rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.3)
        seg.set("pelvis_z", -rng.uniform(0.03, 0.15))
        arm, elbow = rng.uniform(0.8, 1.3), rng.uniform(0.2, 0.6)
    seg.set("pelvis_pitch", pitch).set("lumbar_flex", chest).set("neck_flex", -0.6 * (pitch + chest) + rng.uniform(0, 0.3))
    thigh_amp = rng.uniform(0.3, 0.45)
    _both(seg, "hip_flex", thigh + pitch, (1, thigh_amp, 0.0), antiphase=True)  # thigh angle in the world + pelvis pitch
    _both(seg, "knee_flex", knee, (1, 1.6 * thigh_amp, -0.3), antiphase=True)
    _both(seg, "ankle_flex", 0.1, (1, rng.uniform(0.1, 0.25), 1.2), antiphase=True)
    _both(seg, "shoulder_flex", arm + pitch + chest, (2, 0.02, 0.0))  # arm angle in the world + trunk pitch
    _both(seg, "elbow_flex", elbow)
    _both(seg, "forearm_pro", rng.uniform(0.4, 1.3))  # hands on the grips
    seg.set("pelvis_roll", 0.0, (1, rng.uniform(0.01, 0.04), PI / 2)).set("pelvis_z", None, (2, 0.004, 0.0))
    return Draw([seg], "sit", hold="sits on the bike")


def row(rng, person, s):
    """A rowing machine: with sin(theta) = 1 at the catch (seat forward, knees to the chest, trunk forward, arms long)
    and -1 at the finish (legs straight, trunk back, handle at the chest); the trunk follows the legs and the arms
    follow the trunk. The seat slides along the rail."""
    seg = _blank("row", "rows on a rowing machine")
    seg.freq = rng.uniform(0.35, 0.6) * s  # 21-36 strokes per minute
    travel = rng.uniform(0.2, 0.35)
    seg.set("pelvis_z", rng.uniform(0.3, 0.45) - person.hip_height)
    seg.set("pelvis_x", -0.2 * person.height, (1, travel, 0.0), (2, 0.15 * travel, PI / 2))  # drive faster than recovery
    swing, lag_trunk, lag_arm = rng.uniform(0.3, 0.45), -rng.uniform(0.2, 0.5), -rng.uniform(0.6, 1.0)
    pitch = -rng.uniform(0.1, 0.35)  # on average the trunk leans back a little (DSADS rowing: chest unit)
    seg.set("pelvis_pitch", pitch, (1, swing, lag_trunk)).set("lumbar_flex", 0.1, (1, 0.3 * swing, lag_trunk))
    trunk = (1.3 * swing, lag_trunk)  # chest pitch harmonic
    thigh = (rng.uniform(0.3, 0.45), 0.0)  # thigh angle in the world: about 1.4 rad at the finish, 2.2 at the catch
    _both(seg, "hip_flex", rng.uniform(1.6, 1.85) + pitch, (1, *_phasor(thigh, (swing, lag_trunk))))  # thigh in the world + pelvis pitch
    _both(seg, "knee_flex", 1.1, (1, rng.uniform(0.8, 0.95), 0.0))
    _both(seg, "ankle_flex", 0.2, (1, 0.3, 0.0))
    arm = (rng.uniform(0.8, 1.0), lag_arm)  # upper arm in the world: forward at the catch, back at the finish
    _both(seg, "shoulder_flex", 0.4 + pitch + 0.1, (1, *_phasor(arm, trunk)))
    _both(seg, "elbow_flex", 1.05, (1, -rng.uniform(0.8, 0.95), lag_arm))
    _both(seg, "forearm_pro", 1.2)
    _both(seg, "shoulder_abd", 0.15, (1, 0.1, lag_arm + PI))
    seg.set("neck_flex", -0.5 * pitch, (1, 0.6 * trunk[0], trunk[1] + PI))  # the head stays about level
    return Draw([seg], "sit", hold="sits on the rowing machine")


def stepper(rng, person, s):
    """A stair stepper: each foot pushes its pedal down in turn (legs in antiphase), the pelvis rises and falls with
    every step; hands on the rails or swinging."""
    seg = stand(rng, person, "stepper", "exercises on a stepper")
    seg.freq = rng.uniform(0.5, 0.9) * s  # one step with each foot per cycle
    lean, hip = rng.uniform(0.1, 0.35), rng.uniform(0.2, 0.4)
    seg.set("pelvis_pitch", lean).set("pelvis_z", -0.04, (2, rng.uniform(0.01, 0.03), -PI / 2))
    seg.set("pelvis_roll", 0.0, (1, rng.uniform(0.02, 0.06), 0.0)).set("pelvis_yaw", 0.0, (1, rng.uniform(0.01, 0.04), 0.0))
    _both(seg, "hip_flex", 0.35 + lean, (1, hip, 0.0), antiphase=True)
    _both(seg, "knee_flex", 0.5, (1, 1.5 * hip, 0.2), antiphase=True)
    _both(seg, "ankle_flex", 0.1, (1, 0.15, 0.5), antiphase=True)
    if rng.uniform() < 0.8:  # holding the rails
        _both(seg, "shoulder_flex", lean + rng.uniform(0.3, 0.6))
        _both(seg, "elbow_flex", rng.uniform(0.8, 1.3))
        _both(seg, "forearm_pro", rng.uniform(0.6, 1.4))
        seg.phrase += " holding the rails"
    else:
        _both(seg, "shoulder_flex", 0.1 + lean, (1, -rng.uniform(0.1, 0.3), 0.0), antiphase=True)
        _both(seg, "elbow_flex", rng.uniform(0.3, 1.2))
    return Draw([seg], "stand", hold="stands on the stepper")


def cross_trainer(rng, person, s):
    """An elliptical cross trainer: the feet go round ellipses in antiphase (knee leading the hip by a quarter
    cycle), the arms push and pull the handles opposite to the legs."""
    seg = stand(rng, person, "cross_trainer", "exercises on a cross trainer")
    seg.freq = rng.uniform(0.7, 1.1) * s
    lean, stride = rng.uniform(0.05, 0.2), rng.uniform(0.25, 0.4)
    seg.set("pelvis_pitch", lean).set("pelvis_z", -0.03, (2, rng.uniform(0.015, 0.035), -PI / 2))
    seg.set("pelvis_x", 0.0, (2, rng.uniform(0.01, 0.03), 0.0)).set("pelvis_roll", 0.0, (1, rng.uniform(0.02, 0.05), 0.0))
    seg.set("pelvis_yaw", 0.0, (1, rng.uniform(0.03, 0.07), 0.0)).set("lumbar_twist", 0.0, (1, rng.uniform(0.02, 0.06), PI))
    _both(seg, "hip_flex", 0.25 + lean, (1, stride, 0.0), antiphase=True)
    _both(seg, "knee_flex", 0.4, (1, 0.8 * stride, PI / 2), antiphase=True)
    _both(seg, "ankle_flex", 0.1, (1, 0.15, -PI / 2), antiphase=True)
    if rng.uniform() < 0.75:  # the moving handles
        push = rng.uniform(0.2, 0.35)
        _both(seg, "shoulder_flex", 0.6 + lean, (1, -push, 0.0), antiphase=True)
        _both(seg, "elbow_flex", 1.1, (1, 1.2 * push, 0.0), antiphase=True)
        _both(seg, "forearm_pro", rng.uniform(0.0, 0.8))  # the handles are held thumbs up or turned in
    else:  # the fixed middle grips
        _both(seg, "shoulder_flex", 0.5 + lean)
        _both(seg, "elbow_flex", 1.3)
        _both(seg, "forearm_pro", rng.uniform(0.6, 1.4))
        seg.phrase += " holding the fixed grips"
    return Draw([seg], "stand", hold="stands on the cross trainer")


def dribble(rng, person, s):
    """Basketball: the right hand bounces the ball (elbow, shoulder and wrist together) in a crouch on the spot, or
    once per stride while walking or running; the other arm guards, still."""
    mode = rng.integers(3)
    if mode == 0:
        seg = stand(rng, person, "dribble", "dribbles a basketball on the spot")
        seg.freq, harmonic = rng.uniform(1.4, 2.4) * s, 1
        crouch, lean = rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.4)
        seg.set("pelvis_pitch", lean).set("pelvis_z", -0.12 * crouch, (1, rng.uniform(0.005, 0.02), 0.3))
        _both(seg, "hip_flex", crouch + lean)
        _both(seg, "knee_flex", 1.4 * crouch, (1, 0.05, 0.3))
        _both(seg, "ankle_flex", 0.5 * crouch)
    else:
        seg = (walk if mode == 1 else run)(rng, person, s).segments[0]
        seg.activity, harmonic = "dribble", 2 if mode == 1 else 1  # a bounce per step walking, per stride running
        seg.phrase = f"dribbles a basketball while {'walking' if mode == 1 else 'running'}"
    _quiet(seg, *(f"{side}_{dof}" for side in ("left", "right") for dof in ("shoulder_flex", "elbow_flex")))
    bounce = rng.uniform(0.7, 1.3)
    seg.set("right_shoulder_flex", 0.5, (harmonic, 0.2 * bounce, 0.0)).set("right_shoulder_abd", 0.3)
    seg.set("right_elbow_flex", 1.0, (harmonic, 0.45 * bounce, 0.0)).set("right_forearm_pro", 1.2)
    seg.set("right_wrist_flex", 0.1, (harmonic, 0.5 * bounce, 0.4))
    seg.set("left_shoulder_flex", rng.uniform(0.3, 0.8)).set("left_shoulder_abd", rng.uniform(0.3, 0.6))
    seg.set("left_elbow_flex", rng.uniform(0.9, 1.4))
    seg.set("lumbar_twist", 0.0, (harmonic, rng.uniform(0.01, 0.04), 0.0))
    return Draw([seg], "stand")


def elevator(rng, person, s):
    """Standing (with postural sway) or moving about in an elevator car: the car's vertical speed fades in and out
    with the lead-in and lead-out, which hold the pose still on a stationary floor."""
    up = rng.uniform() < 0.5
    if rng.uniform() < 0.6:
        seg = stand(rng, person, "elevator", f"rides an elevator {'up' if up else 'down'} standing still")
        seg.freq = rng.uniform(0.15, 0.4)
        seg.set("pelvis_x", 0.0, (1, rng.uniform(0.005, 0.015), 0.0)).set("pelvis_y", 0.0, (1, rng.uniform(0.003, 0.01), 1.0))
        seg.set("pelvis_roll", 0.0, (1, rng.uniform(0.005, 0.02), 0.5)).set("neck_twist", 0.0, (1, rng.uniform(0.02, 0.2), 2.0))
    else:
        cadence = rng.uniform(1.2, 1.7)
        seg = _gait(rng, person, "elevator", f"moves around in an elevator going {'up' if up else 'down'}", cadence,
                    rng.uniform(0.1, 0.3), bob=rng.uniform(0.005, 0.02), hip_mean=0.05, knee_mean=0.1, knee_amp=0.5,
                    elbow=rng.uniform(0.5, 1.5), arm_amp=rng.uniform(0.05, 0.2), lean=0.03, gaze=rng.uniform(0.0, 0.2))
        _both(seg, "forearm_pro", rng.uniform(0.2, 1.0))
    seg.climb = rng.uniform(0.6, 1.6) * (1.0 if up else -1.0)
    return Draw([seg], "stand", hold="stands still")


def treadmill(rng, person, s):
    """Walking (flat or inclined) or running on a treadmill: the gait of the walk/slope/run primitives without
    travel, sometimes holding the handrails."""
    kind = rng.integers(3)
    draw = walk(rng, person, s) if kind == 0 else _slope(rng, person, s, True) if kind == 1 else run(rng, person, s)
    seg = draw.segments[0]
    seg.activity, seg.speed, seg.slope = "treadmill", 0.0, 0.0  # the belt moves under the feet
    seg.phrase = ("walks on a treadmill", "walks on an inclined treadmill", "runs on a treadmill")[kind]
    if kind < 2 and rng.uniform() < 0.5:  # as most DSADS subjects walked
        _quiet(seg, "left_shoulder_flex", "right_shoulder_flex", "left_elbow_flex", "right_elbow_flex")
        _both(seg, "shoulder_flex", rng.uniform(0.4, 0.8))
        _both(seg, "elbow_flex", rng.uniform(1.0, 1.5))
        _both(seg, "forearm_pro", rng.uniform(0.6, 1.4))
        seg.phrase += " holding the handrails"
    return Draw([seg], "stand", hold="stands on the treadmill")


SAMPLERS: dict[str, Callable] = {
        "walk": walk, "run": run, "jog_in_place": jog_in_place,
        "stairs_up": lambda r, p, s: _stairs(r, p, s, True), "stairs_down": lambda r, p, s: _stairs(r, p, s, False),
        "walk_uphill": lambda r, p, s: _slope(r, p, s, True), "walk_downhill": lambda r, p, s: _slope(r, p, s, False),
        "turn": turn, "stand": _idle("stand"), "sit": _idle("sit"), "lie": _idle("lie"),
        "sit_down": _transition("stand", "sit", "sit_down", "sits down"),
        "stand_up": _transition("sit", "stand", "stand_up", "stands up from a chair"),
        "lie_down": _transition("sit", "lie", "lie_down", "lies down"),
        "sit_up": _transition("lie", "sit", "sit_up", "sits up from lying"),
        "get_up": _transition("lie", "stand", "get_up", "gets up from the floor"),
        "reach": reach, "wave": wave, "clap": clap, "throw": throw,
        "draw_circle": _draw_shape("draw_circle", "draws circles in the air", 1, 1),
        "draw_figure_eight": _draw_shape("draw_figure_eight", "draws figure eights in the air", 1, 2),
        "eat": _hand_to_mouth("eat", "eats with a spoon", 0.05), "drink": _hand_to_mouth("drink", "drinks from a cup", 0.25),
        "brush_teeth": brush_teeth, "type": type_keyboard, "comb_hair": comb_hair,
        "jump": jump, "jumping_jacks": jumping_jacks, "squat": squat, "lunge": lunge, "push_up": push_up,
        "cycle_upright": lambda r, p, s: _cycle(r, p, s, False), "cycle_recumbent": lambda r, p, s: _cycle(r, p, s, True),
        "row": row, "stepper": stepper, "cross_trainer": cross_trainer, "dribble": dribble, "elevator": elevator,
        "treadmill": treadmill,
}
ACTIVITIES: tuple[str, ...] = tuple(SAMPLERS)
ONE_HANDED = ("reach", "wave", "throw", "draw_circle", "draw_figure_eight", "eat", "drink", "brush_teeth", "comb_hair",
              "dribble")
