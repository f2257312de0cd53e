"""Channel-description and label strings for TSFM (alxdofficial/tsfm@308eea1 DATA_FORMAT.md,
model/semantic_alignment.py) and their text-model tables.

Channel string: ``"{dataset description} {channel description} (sampled at {rate:.0f}Hz, {patch:.1f}s window)"``;
padded channels use ``"[PAD]"``. Channel names follow the imujax scheme ``<location>/<sensor>_<axis>``.
Label strings keep underscores (``"walking_upstairs"``); training may swap in a template variant (``"person {}"``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from imujax.text import embedder as text_embedder

PAD = "[PAD]"
SENSORS = {"acc": "accelerometer", "gyro": "gyroscope", "mag": "magnetometer", "ori": "orientation sensor"}
LABEL_TEMPLATES = ("{}", "person {}", "{} activity", "a person {}", "someone {}")


def describe_channel(name: str) -> str:
    """``left_arm/acc_x`` -> ``accelerometer x-axis on the left arm``; unknown forms are spelled out as given."""
    location, _, sensor_axis = name.rpartition("/")
    sensor, _, axis = sensor_axis.rpartition("_")
    if sensor in SENSORS and axis in ("x", "y", "z"):
        text = f"{SENSORS[sensor]} {axis}-axis"
    else:
        text = sensor_axis.replace("_", " ")
    return f"{text} on the {location.replace('_', ' ')}" if location else text


def channel_string(dataset_description: str, channel_description: str, rate_hz: float,
                   patch_seconds: float | None) -> str:
    base = f"{dataset_description} {channel_description}".strip()
    return base if patch_seconds is None else f"{base} (sampled at {rate_hz:.0f}Hz, {patch_seconds:.1f}s window)"


def label_variants(names: Sequence[str], templates: Sequence[str] = LABEL_TEMPLATES) -> list[str]:
    """Row-major table: variant v of class c is entry c * len(templates) + v (v = 0 is the raw name)."""
    return [t.format(n) for n in names for t in templates]


def token_table(embedder, texts: Sequence[str], max_length: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """[N, S, W] token states and [N, S] masks; ``[PAD]`` entries get no valid token."""
    states, mask = text_embedder.token_states(embedder, texts, max_length)
    pad = np.array([t == PAD for t in texts])
    states[pad], mask[pad] = 0.0, False
    return states, mask


def sentence_table(embedder, texts: Sequence[str]) -> np.ndarray:
    """[N, W] L2-normalised sentence vectors; ``[PAD]`` rows are zero (the model substitutes a learned vector)."""
    out = text_embedder.sentence_embeddings(embedder, texts)
    out[np.array([t == PAD for t in texts])] = 0.0
    return out
