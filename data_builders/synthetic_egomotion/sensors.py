"""IMUs anywhere on the body: named placements, ideal readings from segment kinematics, and sensor error models.

A placement is a segment, an offset in that segment's frame and a mounting rotation whose columns are the sensor
axes in segment coordinates. The ideal accelerometer reads specific force (acceleration minus gravity: +9.81 m/s²
along the axis pointing up at rest, the Android / Xsens convention); `sign=-1` gives the iOS Core Motion
convention (gravity counted as acceleration, -1 g up), used by MotionSense.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .body import GRAVITY, Frame, moved

_UP_FORWARD = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])  # x up, y right, z forward


def _columns(x, y, z) -> np.ndarray:
    return np.stack([np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)], axis=1)


def _tilt_back(mount: np.ndarray, angle: float) -> np.ndarray:
    """The mount rotated about the segment's y axis (a unit strapped to a sloping surface)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]]) @ mount


def _about_thigh(mount: np.ndarray, angle: float) -> np.ndarray:
    """The mount rotated about the segment's long (z) axis: a pocket phone lying on the front-outer side of the thigh."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ mount


PHONE_ROLL = 0.6  # rad: sp_sw_har's seated phone readings put it about 35 deg round to the front-outer side


def _point(length: str, forward: float = 0.0, left: float = 0.0, along: float = 0.0) -> Callable[[dict], np.ndarray]:
    """An offset [3, N]: `forward` and `left` in metres, `along` the segment's z axis as a fraction of `length`."""
    return lambda lengths: np.stack([np.full_like(lengths[length], forward), np.full_like(lengths[length], left),
                                     along * lengths[length]])


@dataclasses.dataclass(frozen=True)
class Placement:
    segment: str
    offset: Callable[[dict], np.ndarray]  # lengths -> [3, ...] offset in the segment frame, m
    mount: np.ndarray  # [3, 3] columns: sensor x, y, z in segment coordinates
    sign: float = 1.0  # -1: the accelerometer reports -specific force (iOS Core Motion)
    description: str = ""
    variants: tuple[np.ndarray, ...] = ()  # alternative mounts, one drawn per clip (a phone put in either way round)


def _limb_placements() -> dict[str, Placement]:
    out = {}
    for side, s in (("left", 1.0), ("right", -1.0)):
        # Watch on the back of the wrist: x towards the hand (3 o'clock crown), z out of the face.
        out[f"{side}_wrist"] = Placement(
                f"{side}_forearm", _point("forearm", left=s * 0.03, along=-0.92),
                _columns([0, 0, -1], [-s, 0, 0], [0, s, 0]), description=f"watch on the {side} wrist")
        # Phone in the front trouser pocket: top towards the knee, screen facing forward.
        out[f"{side}_pocket"] = Placement(
                f"{side}_thigh", _point("thigh", forward=0.08, along=-0.3),
                _columns([0, -1, 0], [0, 0, -1], [1, 0, 0]), description=f"phone in the {side} front trouser pocket")
        # Unit strapped to the outside of the thigh above the knee: x down the leg, z out of the side.
        out[f"{side}_thigh"] = Placement(
                f"{side}_thigh", _point("thigh", left=s * 0.08, along=-0.75),
                _columns([0, 0, -1], [-s, 0, 0], [0, s, 0]), description=f"sensor strapped to the {side} thigh")
        out[f"{side}_ankle"] = Placement(
                f"{side}_shank", _point("shank", left=s * 0.04, along=-0.85),
                _columns([0, 0, -1], [-s, 0, 0], [0, s, 0]), description=f"sensor on the {side} ankle")
        out[f"{side}_hand"] = Placement(
                f"{side}_hand", _point("hand"), _columns([0, 0, -1], [-s, 0, 0], [0, s, 0]),
                description=f"phone held in the {side} hand")
    return out


PLACEMENTS: dict[str, Placement] = {
        "head": Placement("head", _point("head", forward=0.08, along=0.85), np.eye(3),
                          description="smart glasses"),
        "chest": Placement("chest", _point("trunk", forward=0.1, along=0.7),
                           _UP_FORWARD, description="chest strap"),
        "waist": Placement("pelvis", _point("trunk", forward=0.12, along=0.1),
                           _UP_FORWARD, description="phone on the belt"),
        **_limb_placements(),
}
# How the shared real datasets wore their sensors (see each data_builders/<name>/parsing.py for the units), under
# the location names their builders give the channels, so a corpus can share channel names with them.
PLACEMENTS |= {
        # iPhone in the front pocket; Core Motion reports gravity + user acceleration, i.e. -specific force.
        "pocket": dataclasses.replace(PLACEMENTS["right_pocket"], sign=-1.0,
                                      description="iPhone in the right front pocket (Core Motion sign)"),
        # Xsens MTx units: the torso unit sits on the sloping chest (tilted back about 0.5 rad, as both standing and
        # lying DSADS recordings show), arm units with x up the forearm, leg units above the knees.
        "torso": dataclasses.replace(PLACEMENTS["chest"], mount=_tilt_back(_UP_FORWARD, 0.5),
                                     description="Xsens unit on the chest"),
        **{f"{side}_arm": dataclasses.replace(PLACEMENTS[f"{side}_wrist"], mount=_columns([0, 0, 1], [-s, 0, 0], [0, -s, 0]),
                                              description=f"Xsens unit on the {side} forearm")
           for side, s in (("left", 1.0), ("right", -1.0))},
        "right_leg": dataclasses.replace(PLACEMENTS["right_thigh"], description="Xsens unit above the right knee"),
        "left_leg": dataclasses.replace(PLACEMENTS["left_thigh"], description="Xsens unit above the left knee"),
        # sp_sw_har: Android phone in the front trouser pocket (+specific force) in one of the four orientations its
        # executions_info.csv names: screen towards the thigh (back) or away (front), top up or down (_inv);
        # watch on the left wrist (walking reads -g on x, towards the hand).
        "phone": dataclasses.replace(
                PLACEMENTS["right_pocket"], mount=_about_thigh(_columns([0, -1, 0], [0, 0, 1], [-1, 0, 0]), PHONE_ROLL),
                variants=tuple(_about_thigh(m, PHONE_ROLL) for m in (
                        _columns([0, -1, 0], [0, 0, 1], [-1, 0, 0]), _columns([0, 1, 0], [0, 0, -1], [-1, 0, 0]),
                        _columns([0, 1, 0], [0, 0, 1], [1, 0, 0]), _columns([0, -1, 0], [0, 0, -1], [1, 0, 0]))),
                description="Android phone in the front trouser pocket, back / back_inv / front / front_inv"),
        "watch": dataclasses.replace(PLACEMENTS["left_wrist"], description="smartwatch on the left wrist"),
}
DATASET_PLACEMENTS: dict[str, dict[str, Placement]] = {
        "hapt": {"waist": PLACEMENTS["waist"]},  # Samsung Galaxy S II on the waist, upright (Android convention)
        "motionsense": {"pocket": PLACEMENTS["pocket"]},
        "dsads": {unit: PLACEMENTS[unit] for unit in ("torso", "right_arm", "left_arm", "right_leg", "left_leg")},
        "sp_sw_har": {"phone": PLACEMENTS["phone"], "watch": PLACEMENTS["watch"]},
}


def sensor_frame(segment: Frame, placement: Placement, lengths: dict, mount: np.ndarray | None = None) -> Frame:
    """The sensor's own frame (origin at the sensor, axes as mounted); `mount` [3, 3, N] overrides the placement's
    mount per sample (one of its variants per clip)."""
    at = moved(segment, placement.offset(lengths))
    if mount is None:
        rotation = np.einsum("ijn,jk->ikn", at.rotation, placement.mount)
    else:
        rotation = np.einsum("ijn,jkn->ikn", at.rotation, mount)
    return dataclasses.replace(at, rotation=rotation)


def ideal_readings(frame: Frame, sign: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Accelerometer (m/s²) and gyroscope (rad/s) [3, N] in the sensor frame: R^T (a - g) and R^T w."""
    force = frame.acceleration + np.array([0.0, 0.0, GRAVITY])[:, None]
    acc = np.einsum("ijn,in->jn", frame.rotation, force)
    gyro = np.einsum("ijn,in->jn", frame.rotation, frame.omega)
    return sign * acc, gyro


@dataclasses.dataclass(frozen=True)
class ErrorModel:
    """Ranges the per-clip, per-sensor errors are drawn from (zeros: an ideal sensor)."""

    acc_bias: float = 0.15  # m/s², std of the constant bias
    gyro_bias: float = 0.01  # rad/s
    acc_drift: float = 0.003  # m/s² per sqrt(s), bias random walk
    gyro_drift: float = 0.0005  # rad/s per sqrt(s)
    acc_noise: tuple[float, float] = (0.01, 0.06)  # m/s², white noise std per sample
    gyro_noise: tuple[float, float] = (0.002, 0.01)  # rad/s
    scale: float = 0.02  # std of the per-axis scale error
    misalignment: float = 0.01  # std of off-diagonal axis coupling
    acc_range_g: tuple[float, ...] = (4.0, 8.0, 16.0)  # full scale, one drawn per sensor
    gyro_range_dps: tuple[float, ...] = (500.0, 1000.0, 2000.0)
    jitter: float = 0.03  # sample-time jitter std as a fraction of the sample period
    drop: float = 0.005  # probability that a sample is dropped (the previous one is repeated)


IDEAL = ErrorModel(0.0, 0.0, 0.0, 0.0, (0.0, 0.0), (0.0, 0.0), 0.0, 0.0, (np.inf,), (np.inf,), 0.0, 0.0)


def sample_times(rng: np.random.Generator, model: ErrorModel, count: int, samples: int, rate_hz: float) -> np.ndarray:
    """Sample instants [B, T]: the nominal grid plus clock jitter (the motion is analytic, so it is sampled there)."""
    t = np.arange(samples) / rate_hz
    return t + rng.standard_normal((count, samples)) * (model.jitter / rate_hz)


def apply_errors(rng: np.random.Generator, model: ErrorModel, acc: np.ndarray, gyro: np.ndarray,
                 rate_hz: float) -> np.ndarray:
    """Measured [B, T, 6] float32 from ideal acc, gyro [B, T, 3]: scale/misalignment, bias + drift, noise,
    saturation, dropped samples (held)."""
    b, t, _ = acc.shape
    out = []
    for x, bias, drift, noise, ranges in ((acc, model.acc_bias, model.acc_drift, model.acc_noise,
                                           np.array(model.acc_range_g) * GRAVITY),
                                          (gyro, model.gyro_bias, model.gyro_drift, model.gyro_noise,
                                           np.deg2rad(np.array(model.gyro_range_dps)))):
        gain = np.eye(3) + rng.standard_normal((b, 3, 3)) * model.misalignment
        gain[:, np.arange(3), np.arange(3)] = 1.0 + rng.standard_normal((b, 3)) * model.scale
        y = np.einsum("bij,btj->bti", gain, x)
        walk = np.cumsum(rng.standard_normal((b, t, 3)), axis=1) * (drift / np.sqrt(rate_hz))
        y = y + rng.standard_normal((b, 1, 3)) * bias + walk
        y = y + rng.standard_normal((b, t, 3)) * rng.uniform(*noise, size=(b, 1, 1))
        limit = rng.choice(ranges, size=(b, 1, 1))
        out.append(np.clip(y, -limit, limit))
    y = np.concatenate(out, axis=-1)
    if model.drop > 0:
        kept = rng.uniform(size=(b, t)) >= model.drop
        kept[:, 0] = True
        last = np.maximum.accumulate(np.where(kept, np.arange(t), 0), axis=1)
        y = np.take_along_axis(y, last[..., None], axis=1)
    return y.astype(np.float32)
