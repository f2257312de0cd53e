"""Ray-cast head-camera view of a procedural textured scene (vectorised numpy).

The scene: a ground surface (a flat tiled floor, or an incline with stair-tread stripes for the
stairs activities), textured vertical pillars, distant mountains on the horizon and a sky with
clouds. Every visible cue is fixed in the world, so the frames move exactly as the camera does:
translation shows as ground flow and pillar parallax, rotation as the horizon sliding past.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image

from .kinematics import Motion

_TREAD = 0.28  # m, horizontal depth of a stair step
_FOG_LENGTH = 25.0  # m
_TEXTURE_FADE = 8.0  # m; tile contrast fades with distance, a cheap stand-in for mip-mapping
_HAZE = np.array([0.75, 0.82, 0.9], np.float32)
_SUN = np.array([0.5, 0.3, 0.8]) / np.linalg.norm([0.5, 0.3, 0.8])
CAMERA_PITCH_DOWN = 0.25  # rad, the camera is tilted down relative to the head (like glasses cameras)
HORIZONTAL_FOV = np.deg2rad(90.0)


@dataclasses.dataclass(frozen=True)
class Scene:
    heading: float  # path direction; floor tiles and stair treads are aligned with it
    slope: float  # ground rise per metre along the heading (0 on flat ground)
    stairs: bool
    ground_color: np.ndarray  # [3]
    texture_seed: int
    pillar_xy: np.ndarray  # [K, 2]
    pillar_radius: np.ndarray  # [K]
    pillar_bottom: np.ndarray  # [K]
    pillar_top: np.ndarray  # [K]
    pillar_color: np.ndarray  # [K, 3]
    horizon_phase: np.ndarray  # [5]


def sample_scene(motion: Motion, rng: np.random.Generator, num_pillars: int = 10) -> Scene:
    """A random scene around the clip's path; pillars keep clear of the walking corridor."""
    path_length = motion.speed * motion.duration + 1.0
    forward = np.array([np.cos(motion.heading), np.sin(motion.heading)])
    left = np.array([-forward[1], forward[0]])
    local = []
    while len(local) < num_pillars:
        radius, angle = rng.uniform(2.0, 12.0), rng.uniform(0.0, 2.0 * np.pi)
        along, across = radius * np.cos(angle), radius * np.sin(angle)
        if -1.5 < along < path_length + 1.5 and abs(across) < 1.5:
            continue
        local.append((along, across))
    local = np.array(local)
    xy = local[:, :1] * forward + local[:, 1:] * left
    ground_at_pillar = motion.slope * local[:, 0]
    return Scene(
            heading=motion.heading,
            slope=motion.slope,
            stairs=motion.slope != 0.0,
            ground_color=rng.uniform(0.35, 0.8, size=3),
            texture_seed=int(rng.integers(0, 2**31 - 1)),
            pillar_xy=xy,
            pillar_radius=rng.uniform(0.2, 0.5, size=num_pillars),
            pillar_bottom=ground_at_pillar - 2.0,
            pillar_top=ground_at_pillar + rng.uniform(2.5, 6.0, size=num_pillars),
            pillar_color=rng.uniform(0.2, 0.95, size=(num_pillars, 3)),
            horizon_phase=rng.uniform(0.0, 2.0 * np.pi, size=5),
    )


def camera_directions(frame_size: int) -> np.ndarray:
    """Unit ray directions [H, W, 3] in the camera frame (x forward, y left, z up), pinhole model."""
    focal = 0.5 * frame_size / np.tan(0.5 * HORIZONTAL_FOV)
    pixel = np.arange(frame_size) + 0.5 - 0.5 * frame_size
    down, right = np.meshgrid(pixel, pixel, indexing="ij")
    directions = np.stack([np.full_like(down, focal), -right, -down], axis=-1)
    return directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def camera_mount() -> np.ndarray:
    """Camera-to-head rotation: a fixed downward tilt about the head's y axis."""
    c, s = np.cos(CAMERA_PITCH_DOWN), np.sin(CAMERA_PITCH_DOWN)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A deterministic pseudo-random value in [0, 1) per integer cell."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ seed
    h = (h * 2654435761) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0xFFFF).astype(np.float32) / 65536.0


def _sky(d: np.ndarray, scene: Scene) -> np.ndarray:
    azimuth = np.arctan2(d[..., 1], d[..., 0])
    elevation = np.arcsin(np.clip(d[..., 2], -1.0, 1.0))
    p = scene.horizon_phase
    ridge = (0.06 + 0.04 * np.sin(2 * azimuth + p[0]) + 0.03 * np.sin(5 * azimuth + p[1])
                      + 0.015 * np.sin(11 * azimuth + p[2]))
    horizon = _HAZE
    zenith = np.array([0.25, 0.45, 0.85], np.float32)
    blend = np.clip(elevation / 0.8, 0.0, 1.0)[..., None]
    sky = horizon * (1.0 - blend) + zenith * blend
    cloud = np.clip(np.sin(6 * azimuth + p[3]) * np.sin(14 * elevation + p[4]), 0.0, 1.0) ** 2
    sky = sky + (0.35 * cloud * (elevation > 0.1))[..., None] * (1.0 - sky)
    stripes = 0.85 + 0.15 * np.sin(40 * azimuth)
    mountain = np.array([0.35, 0.42, 0.38], np.float32) * stripes[..., None]
    return np.where((elevation < ridge)[..., None], mountain, sky)


def _ground(origin: np.ndarray, d: np.ndarray, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Hit distance [...] (inf on a miss) and colour [..., 3] of the ground surface."""
    forward = np.array([np.cos(scene.heading), np.sin(scene.heading), 0.0], np.float32)
    left = np.array([-forward[1], forward[0], 0.0], np.float32)
    # The surface z = slope * (x · forward) has this (unnormalised) normal.
    normal = np.array([0.0, 0.0, 1.0], np.float32) - np.float32(scene.slope) * forward
    denom = d @ normal
    distance = -(origin @ normal)[..., None, None] / np.where(denom < -1e-6, denom, -1.0)
    distance = np.where((denom < -1e-6) & (distance > 0.0), distance, np.inf)
    hit = origin[:, None, None, :] + np.where(np.isfinite(distance), distance, 0.0)[..., None] * d
    along, across = hit @ forward, hit @ left
    fade = np.exp(-np.where(np.isfinite(distance), distance, 1e3) / _TEXTURE_FADE)
    if scene.stairs:
        step = np.floor(along / _TREAD)
        nosing = (along / _TREAD - step) < 0.15
        texture = np.where(nosing, 0.45, 0.8 + 0.2 * _hash01(step, np.floor(across), scene.texture_seed))
    else:
        cell_a, cell_b = np.floor(along), np.floor(across)
        checker = np.mod(cell_a + cell_b, 2.0)
        texture = 0.55 + 0.25 * checker + 0.2 * _hash01(cell_a, cell_b, scene.texture_seed)
    shade = 0.7 + (texture - 0.7) * fade
    return distance, shade[..., None] * scene.ground_color.astype(np.float32)


def _pillars(origin: np.ndarray, d: np.ndarray, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit distance [...] and colour [..., 3] over all vertical cylinders."""
    rel = (origin[:, None, :2] - scene.pillar_xy[None]).astype(np.float32)  # [F, K, 2], pillar centre -> camera
    dx, dy = d[..., 0:1], d[..., 1:2]  # [F, H, W, 1]
    ox, oy = rel[:, None, None, :, 0], rel[:, None, None, :, 1]  # [F, 1, 1, K]
    a = dx * dx + dy * dy
    radius2 = scene.pillar_radius.astype(np.float32) ** 2
    # Cheap cull: the ray's horizontal line must pass within the radius, heading towards the pillar.
    along = ox * dx + oy * dy
    across = ox * dy - oy * dx
    f, h, w, k = np.nonzero((across * across < radius2 * a) & (along < 0.0))
    a_c, b_c = a[f, h, w, 0], 2.0 * along[f, h, w, k]
    c_c = ox[f, 0, 0, k] ** 2 + oy[f, 0, 0, k] ** 2 - radius2[k]
    root = np.sqrt(np.maximum(b_c * b_c - 4.0 * a_c * c_c, 0.0))
    hit_distance = (-b_c - root) / (2.0 * np.maximum(a_c, 1e-9))
    z = origin[f, 2] + hit_distance * d[f, h, w, 2]
    valid = (hit_distance > 1e-3) & (z > scene.pillar_bottom[k]) & (z < scene.pillar_top[k])
    distance = np.full(d.shape[:-1] + (len(radius2),), np.inf, np.float32)
    distance[f[valid], h[valid], w[valid], k[valid]] = hit_distance[valid]
    nearest = np.argmin(distance, axis=-1)
    best = np.take_along_axis(distance, nearest[..., None], -1)[..., 0]
    safe = np.where(np.isfinite(best), best, 0.0)
    hit = origin[:, None, None, :] + safe[..., None] * d
    centre = scene.pillar_xy[nearest]
    normal_xy = ((hit[..., :2] - centre) / scene.pillar_radius[nearest][..., None]).astype(np.float32)
    sun_xy = (_SUN[:2] / np.linalg.norm(_SUN[:2])).astype(np.float32)
    light = 0.45 + 0.55 * np.clip(normal_xy @ sun_xy, 0.0, 1.0)
    around = np.floor(4.0 * (np.arctan2(normal_xy[..., 1], normal_xy[..., 0]) / np.pi + 1.0))
    bands = np.floor(hit[..., 2] / 0.6)
    texture = 0.75 + 0.25 * np.mod(around + bands, 2.0)
    return best, (light * texture)[..., None] * scene.pillar_color.astype(np.float32)[nearest]


def render_frames(scene: Scene, head_position: np.ndarray, head_rotation: np.ndarray, frame_size: int,
                  with_depth: bool = False):
    """uint8 frames [F, H, W, 3] seen from head poses ([F, 3] positions, [F, 3, 3] head-to-world).

    with_depth: also return the depth image [F, H, W] float32 in metres (distance along the optical axis, inf for sky).
    """
    camera_to_world = (head_rotation @ camera_mount()).astype(np.float32)
    rays = camera_directions(frame_size).astype(np.float32)
    d = (rays.reshape(-1, 3) @ camera_to_world.transpose(0, 2, 1)).reshape((-1,) + rays.shape)
    origin = head_position.astype(np.float32)
    ground_distance, ground_color = _ground(origin, d, scene)
    pillar_distance, pillar_color = _pillars(origin, d, scene)
    distance = np.minimum(ground_distance, pillar_distance)
    color = np.where((pillar_distance < ground_distance)[..., None], pillar_color, ground_color)
    hit = np.isfinite(distance)
    fog = (1.0 - np.exp(-distance[hit] / _FOG_LENGTH))[..., None]
    color[hit] = color[hit] * (1.0 - fog) + _HAZE * fog
    color[~hit] = _sky(d[~hit], scene)  # the sky is only evaluated where no surface was hit
    rgb = np.clip(np.round(color * 255.0), 0, 255).astype(np.uint8)
    return (rgb, distance * rays[..., 0]) if with_depth else rgb


def encode_jpeg(frames: np.ndarray, quality: int = 90) -> list[bytes]:
    """Encode each HxWx3 uint8 frame with Pillow (no TensorFlow)."""
    encoded = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame, mode="RGB").save(buffer, format="JPEG", quality=quality)
        encoded.append(buffer.getvalue())
    return encoded
