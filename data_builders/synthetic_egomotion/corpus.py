"""The articulated motion corpus: clips generated in vectorised chunks, deterministic by (seed, split, chunk).

A chunk of clips shares one random stream, one program evaluation and one skeleton pass (arrays [3, chunk x T]),
so generation costs a few dozen numpy operations per chunk. Any process or machine can generate any chunk; the
records of a chunk do not depend on which worker made it or on how many there are.
"""
from __future__ import annotations

import dataclasses
import types

import numpy as np

from . import body as body_lib
from . import composition, motion_program, render, sensors
from .body import Angle
from .primitives import ACTIVITIES, Person

SPLIT_IDS = {"train": 0, "test": 1}


@dataclasses.dataclass(frozen=True)
class Batch:
    """What one chunk's evaluation gives (enough for tests and records)."""

    clips: list[composition.Clip]
    subjects: np.ndarray  # [B]
    program: motion_program.Program
    bodies: body_lib.Body
    times: np.ndarray  # [B, T]


def subject_body(seed: int, subjects: np.ndarray) -> body_lib.Body:
    """Each subject id has one body for the whole corpus."""
    per = [body_lib.sample_bodies(np.random.default_rng([seed, 0, int(s)]), 1) for s in subjects]
    return body_lib.Body(np.concatenate([b.height for b in per]),
                         {k: np.concatenate([b.lengths[k] for b in per]) for k in per[0].lengths})


def person(bodies: body_lib.Body, i: int) -> Person:
    lengths = {k: float(v[i]) for k, v in bodies.lengths.items()}
    return Person(float(bodies.height[i]), lengths["thigh"] + lengths["shank"] + lengths["ankle_height"],
                  lengths["upper_arm"], lengths["forearm"])


def sample_batch(seed: int, split: str, chunk: int, size: int, subjects: range, duration: float,
                 activities: list[str | None] | None = None,
                 pool: tuple[str, ...] = ACTIVITIES) -> tuple[Batch, np.random.Generator]:
    """Subjects, bodies and motion programs of one chunk, and the chunk's random stream for what follows; a clip's
    main primitive is activities[i], or drawn uniformly from `pool`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, SPLIT_IDS[split], chunk]))
    ids = rng.integers(subjects.start, subjects.stop, size=size)
    bodies = subject_body(seed, ids)
    activities = activities or [None] * size
    clips = [composition.sample_clip(rng, person(bodies, i), duration, activities[i], pool) for i in range(size)]
    program = composition.stack(rng, clips, rng.uniform(0, 2 * np.pi, size=size))
    return Batch(clips, ids, program, bodies, np.zeros((size, 0))), rng


def segment_frames(batch: Batch, times: np.ndarray) -> dict[str, body_lib.Frame]:
    """Every segment's frame at times [B, T] (flattened to N = B x T)."""
    trajectory = motion_program.evaluate(batch.program, times)
    b, t = times.shape
    flat = lambda x: x.reshape(3, b * t)
    dofs = {name: Angle(*flat(trajectory.dofs[..., d])) for d, name in enumerate(body_lib.DOFS)}
    root = tuple(trajectory.root[j].reshape(3, b * t) for j in range(3))
    lengths = {k: np.repeat(v, t) for k, v in batch.bodies.lengths.items()}
    hip = lengths["thigh"] + lengths["shank"] + lengths["ankle_height"]
    return body_lib.skeleton(dofs, root, Angle(*flat(trajectory.heading)), lengths, hip)


def ideal_imu(batch: Batch, times: np.ndarray, placements: dict[str, sensors.Placement],
              variants: dict[str, np.ndarray] | None = None) -> dict[str, tuple]:
    """placement name -> (acc, gyro) [B, T, 3] of ideal sensors; variants: placement name -> [B] index of the mount
    variant each clip uses (placements with variants not named here use their default mount)."""
    frames = segment_frames(batch, times)
    lengths = {k: np.repeat(v, times.shape[1]) for k, v in batch.bodies.lengths.items()}
    out = {}
    for name, placement in placements.items():
        mount = None
        if variants and name in variants:
            mount = np.repeat(np.stack(placement.variants, axis=-1)[:, :, variants[name]], times.shape[1], axis=-1)
        frame = sensors.sensor_frame(frames[placement.segment], placement, lengths, mount)
        acc, gyro = sensors.ideal_readings(frame, placement.sign)
        out[name] = tuple(x.T.reshape(times.shape + (3,)) for x in (acc, gyro))
    return out


def channel_names(placement_names) -> list[str]:
    return [f"{p}/{s}_{a}" for p in placement_names for s in ("acc", "gyro") for a in "xyz"]


def generate(config, split: str, chunk: int) -> list[tuple[str, dict]]:
    """(key, record) for every clip of one chunk of `split`."""
    if split not in SPLIT_IDS or not 0 <= chunk < config.num_chunks(split):
        raise ValueError(f"{config.name}: no chunk {chunk} of split {split!r} (splits {tuple(SPLIT_IDS)}, "
                         f"chunks 0..{config.num_chunks(split) - 1} of {config.chunk_size} clips)")
    first = chunk * config.chunk_size
    size = min(config.chunk_size, config.split_clips(split) - first)
    batch, rng = sample_batch(config.seed, split, chunk, size, config.subjects(split), config.clip_seconds,
                              pool=config.activities or ACTIVITIES)
    model = config.error_model
    times = sensors.sample_times(rng, model, size, config.num_imu_samples, config.imu_rate_hz)
    placements = {p: sensors.PLACEMENTS[p] for p in config.placements}
    variants = {p: rng.integers(len(pl.variants), size=size) for p, pl in placements.items() if pl.variants}
    readings = ideal_imu(batch, times, placements, variants)
    imu = np.concatenate([sensors.apply_errors(rng, model, acc, gyro, config.imu_rate_hz)
                          for acc, gyro in readings.values()], axis=-1)
    weights = motion_program.segment_weights(batch.program, times)[0][0]  # [B, K, T]
    segment_label = np.array([[ACTIVITIES.index(s.activity) for s in c.segments] for c in batch.clips])
    sample_label = np.take_along_axis(segment_label, np.argmax(weights, axis=1), axis=1)
    video = _video(config, batch, rng) if config.video_fps > 0 else None
    channels = channel_names(config.placements)
    records = []
    for i, clip in enumerate(batch.clips):
        key = f"{split}_{first + i:09d}"
        record = {
                "imu": imu[i], "channels": channels, "imu_rate_hz": np.float32(config.imu_rate_hz),
                "video_fps": np.float32(config.video_fps), "label": ACTIVITIES.index(clip.activity),
                "sample_label": sample_label[i].astype(np.int32), "text": clip.text,
                "subject": np.int32(batch.subjects[i]), "id": key,
        }
        if video is not None:
            record["video"] = render.encode_jpeg(video[0][i])
            if config.depth:
                record["depth"] = video[1][i]
        records.append((key, record))
    return records


def _video(config, batch: Batch, rng: np.random.Generator):
    """Head-camera frames [B, F, S, S, 3] (and depth in mm [B, F, S, S] uint16) through the existing renderer."""
    frames_t = np.broadcast_to(np.arange(config.num_frames) / config.video_fps, (len(batch.clips), config.num_frames))
    b, f = frames_t.shape
    lengths = {k: np.repeat(v, f) for k, v in batch.bodies.lengths.items()}
    head = segment_frames(batch, np.ascontiguousarray(frames_t))["head"]
    head = sensors.sensor_frame(head, sensors.PLACEMENTS["head"], lengths)  # the camera sits on the glasses
    position = head.position.T.reshape(b, f, 3)
    rotation = head.rotation.transpose(2, 0, 1).reshape(b, f, 3, 3)
    rgb, depth = [], []
    for i, clip in enumerate(batch.clips):
        main = next(s for s in clip.segments if s.activity == clip.activity)
        where = types.SimpleNamespace(speed=main.speed, duration=config.clip_seconds, heading=batch.program.heading[i, 0],
                                      slope=main.slope)
        scene = render.sample_scene(where, rng)
        image, distance = render.render_frames(scene, position[i], rotation[i], config.frame_size, with_depth=True)
        rgb.append(image)
        depth.append(np.clip(np.nan_to_num(distance * 1000.0, posinf=65535.0), 0, 65535).astype(np.uint16))
    return rgb, depth
