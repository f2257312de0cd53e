"""A clip's composition in time: lead-in, main primitive, lead-out, with style variation and a text description."""
from __future__ import annotations

import dataclasses

import numpy as np

from . import primitives
from .body import DOFS
from .motion_program import F, H, Program, Segment
from .primitives import ACTIVITIES, Person

K = 3  # segments per clip (shorter compositions repeat their last segment)
_POSITION_DOFS = np.array([d in ("pelvis_x", "pelvis_y", "pelvis_z") for d in DOFS])


@dataclasses.dataclass(frozen=True)
class Clip:
    activity: str
    segments: list[Segment]  # exactly K
    centre: np.ndarray  # [K - 1] cross-fade centres, s
    width: np.ndarray  # [K - 1] cross-fade durations, s
    text: str


def _adverbs(activity: str, speed: float, amplitude: float) -> str:
    words = []
    if activity not in ("stand", "sit", "lie") and not activity.startswith(("sit_", "stand_", "lie_", "get_")):
        words += ["slowly"] if speed < 0.9 else ["quickly"] if speed > 1.12 else []
        words += ["gently"] if amplitude < 0.85 else ["vigorously"] if amplitude > 1.15 else []
    return " and ".join(words)


def sample_clip(rng: np.random.Generator, person: Person, duration: float, activity: str | None = None,
                pool: tuple[str, ...] = ACTIVITIES) -> Clip:
    """Draw the main primitive (uniform over `pool` unless given) and what comes before and after it."""
    activity = activity or pool[rng.integers(len(pool))]
    speed, amplitude = rng.uniform(0.8, 1.25), rng.uniform(0.7, 1.3)
    draw = primitives.SAMPLERS[activity](rng, person, speed)
    main = draw.segments
    for seg in main:
        seg.amp = seg.amp * np.where(_POSITION_DOFS, min(amplitude, 1.0), amplitude)
    phrase = main[0].phrase
    if activity in primitives.ONE_HANDED:
        left = rng.uniform() < 0.3
        main = [primitives.mirror(seg) for seg in main] if left else main
        phrase += f" with the {'left' if left else 'right'} hand"
    adverbs = _adverbs(activity, speed, amplitude)
    phrase = f"{phrase} {adverbs}".strip()
    if draw.posture == "sit" and not draw.hold and activity not in ("sit", "sit_down", "sit_up", "type"):
        phrase += " while sitting"
    phrases = [phrase]
    ride = main[0].climb != 0.0  # an elevator: its start and stop are the cross-fades, so they are long and likely
    if draw.transition:
        segments, centre, width = main, [rng.uniform(0.35, 0.65) * duration], [rng.uniform(1.0, 2.5)]
    else:
        segments, centre, width = list(main), [], []
        lead = activity == "turn" or rng.uniform() < (0.7 if ride else 0.4)
        if lead:  # turning happens during the cross-fade into the turn segment
            before = _neighbour(rng, person, draw, speed, main[0])
            segments.insert(0, before)
            phrases.insert(0, before.phrase)
            centre.append(rng.uniform(0.15, 0.3) * duration)
            width.append(rng.uniform(1.5, 3.0) if activity == "turn" or ride else rng.uniform(0.5, 1.5))
        if rng.uniform() < (0.5 if ride else 0.3):
            after = _neighbour(rng, person, draw, speed, main[-1])
            segments.append(after)
            phrases.append(after.phrase)
            centre.append(rng.uniform(0.75, 0.85) * duration)
            width.append(rng.uniform(1.5, 3.0) if ride else rng.uniform(0.5, 1.5))
    while len(segments) < K:  # an identical segment never fading in changes nothing
        segments.append(segments[-1])
        centre.append(duration + 10.0)
        width.append(1.0)
    text = "a person " + ", then ".join(p for p in phrases if p)
    return Clip(activity, segments, np.array(centre), np.array(width), text)


def _neighbour(rng: np.random.Generator, person: Person, draw: primitives.Draw, speed: float,
               main: Segment) -> Segment:
    """A lead-in or lead-out compatible with the main primitive's posture: idle in it, or walking when standing.
    On the floor (lying, push-ups), on a machine or in an elevator it is the main pose held still (no travel, no
    climb), so the body does not roll over in a second or teleport off the bike."""
    posture = draw.posture
    if posture == "lie" or draw.hold:
        phrase = "rests on the floor" if posture == "lie" else draw.hold
        return dataclasses.replace(main, activity=posture, phrase=phrase, amp=np.zeros_like(main.amp), speed=0.0,
                                   climb=0.0, turn=0.0)
    if posture == "stand" and rng.uniform() < 0.5:
        return primitives.walk(rng, person, speed).segments[0]
    return primitives.POSTURES[posture](rng, person)


def stack(rng: np.random.Generator, clips: list[Clip], start_heading: np.ndarray) -> Program:
    """The batch's arrays, with per-segment phase, speed-variation and amplitude-variation draws and idle fidgets."""
    b = len(clips)
    seg = [c.segments for c in clips]
    field = lambda name: np.array([[getattr(s, name) for s in row] for row in seg])
    phase = field("phase")
    amp = field("amp")
    turn = field("turn")
    heading = start_heading[:, None] + np.cumsum(turn, axis=1) - turn[:, :1]  # the first segment's turn is ignored
    fidget_scale = np.where(_POSITION_DOFS, 0.004, 0.02)
    fidget = rng.standard_normal((b, F, H, len(DOFS))) * fidget_scale / np.arange(1, H + 1)[:, None]
    fidget_phase = rng.uniform(0, 2 * np.pi, size=fidget.shape)
    u = lambda lo, hi: rng.uniform(lo, hi, size=(b, K))
    return Program(
            mean=field("mean"), amp_sin=amp * np.cos(phase), amp_cos=amp * np.sin(phase), freq=field("freq"),
            theta0=u(0, 2 * np.pi), fm_depth=u(0.0, 0.1), fm_rate=u(0.05, 0.3), fm_phase=u(0, 2 * np.pi),
            env_depth=u(0.0, 0.2), env_rate=u(0.05, 0.3), env_phase=u(0, 2 * np.pi),
            speed=field("speed"), slope=field("slope"), climb=field("climb"), heading=heading,
            centre=np.stack([c.centre for c in clips]), width=np.stack([c.width for c in clips]),
            fidget_freq=rng.uniform(0.1, 0.4, size=(b, F)),
            fidget_sin=fidget * np.cos(fidget_phase), fidget_cos=fidget * np.sin(fidget_phase))
