"""Record -> inputs of the contrastive IMU systems (IMU2CLIP, PRIMUS, RevalExo contrastive): a raw IMU window, a video
clip or precomputed video features, and a text target (precomputed features or the hashed stand-in).
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np

from imujax.models import text_hash
from imujax.transforms import imu as imu_tf
from imujax.transforms import records
from imujax.transforms import video as video_tf

TARGETS = ("video", "text")


def check_targets(targets) -> tuple[str, ...]:
    targets = tuple(targets)
    if not targets or set(targets) - set(TARGETS):
        raise ValueError(f"config.loss.targets={targets}; expected a non-empty subset of {TARGETS}")
    return targets


def imu_window(record: dict, channels, rate_hz: float, length: int, method: str = "sinc") -> np.ndarray:
    """record['imu'] -> float32 [len(channels), length]: channels by name, resampled to rate_hz, then zero-padded or
    cut at the end to `length` samples (as the upstream window loaders do). No normalisation: raw units.

    `method='sinc'` is torchaudio's windowed-sinc resampler (integer rates); `'linear'` interpolates on the time grid.
    """
    if not channels:
        raise ValueError("config.data.imu_channels is empty: name the IMU channels to feed the encoder")
    x = records.select_channels(record, list(channels)).T  # [C, T]
    source_rate = float(np.asarray(record["imu_rate_hz"]))
    if source_rate <= 0:
        raise ValueError(f"record {record.get('id', '?')!r}: imu_rate_hz must be positive, got {source_rate}")
    if source_rate != rate_hz:
        if method == "sinc":
            if source_rate != int(source_rate) or rate_hz != int(rate_hz):
                raise ValueError(f"record {record.get('id', '?')!r}: sinc resampling needs integer rates, got "
                                 f"{source_rate} -> {rate_hz} Hz; set config.data.imu_resample='linear'")
            x = imu_tf.sinc_resample(x, int(source_rate), int(rate_hz))
        elif method == "linear":
            count = int(math.ceil(x.shape[1] * rate_hz / source_rate))
            t_new = np.arange(count) / rate_hz
            t_old = np.arange(x.shape[1]) / source_rate
            x = np.stack([np.interp(t_new, t_old, row) for row in x]).astype(np.float32)
        else:
            raise ValueError(f"config.data.imu_resample={method!r}; expected 'sinc' or 'linear'")
    x = x[:, :length]
    if x.shape[1] < length:
        x = np.pad(x, ((0, 0), (0, length - x.shape[1])))
    return np.ascontiguousarray(x, dtype=np.float32)


def video_clip(record: dict, data: ml_collections.ConfigDict, num_frames: int, img_size: int,
               rng: np.random.Generator | None) -> np.ndarray:
    """record['video'] -> float32 [num_frames, img_size, img_size, 3]: linspace frames over the clip, normalised.

    Train (rng given): RandomResizedCrop with scale data.crop_scale, horizontal flip with data.hflip_prob.
    Eval: centre square crop of the short side, resized. Encoded (JPEG bytes) frames are decoded only when sampled.
    """
    video = record.get("video")
    if video is None or len(video) == 0:
        raise KeyError(f"record {record.get('id', '?')!r} has no 'video' frames; the video tower 'vit' needs them "
                       f"(use model.video_tower='features' for records with precomputed video_features)")
    ids = video_tf.linspace_frame_indices(len(video), num_frames)
    if isinstance(video[0], (bytes, np.bytes_)):
        clip = video_tf.decode_frames(video, ids)
    else:
        clip = records.frames(record)[ids]
    if rng is not None:
        clip = video_tf.random_resized_crop(clip, img_size, rng, scale=tuple(data.crop_scale))
        if rng.random() < data.hflip_prob:
            clip = video_tf.horizontal_flip(clip)
    else:
        clip = video_tf.resize_frames(video_tf.center_crop(clip, min(clip.shape[1:3])), img_size)
    return np.ascontiguousarray(video_tf.normalize(clip, data.video_mean, data.video_std))


def precomputed_video(record: dict) -> np.ndarray:
    """record['video_features'] [F, D] or [D] -> float32 [D] (the average over frames / windows)."""
    if "video_features" not in record:
        raise KeyError(f"record {record.get('id', '?')!r} has no 'video_features'; model.video_tower='features' "
                       f"needs precomputed features (or use model.video_tower='vit' on records with frames)")
    feats = np.asarray(record["video_features"], np.float32)
    if feats.ndim not in (1, 2):
        raise ValueError(f"record {record.get('id', '?')!r}: video_features must be [F, D] or [D], got {feats.shape}")
    return feats if feats.ndim == 1 else feats.mean(axis=0)


def text_embedding(record: dict, data: ml_collections.ConfigDict, dim: int) -> np.ndarray:
    """float32 [dim] text target: precomputed `text_features` or the hashed stand-in of `text`."""
    if data.text_source == "features":
        if "text_features" not in record:
            raise KeyError(f"record {record.get('id', '?')!r} has no 'text_features' (config.data.text_source="
                           f"'features'); use text_source='hash' to embed the record's 'text'")
        feats = np.asarray(record["text_features"], np.float32).reshape(-1)
        if feats.shape[0] != dim:
            raise ValueError(f"record {record.get('id', '?')!r}: text_features has width {feats.shape[0]}, "
                             f"the embedding size is {dim}")
        return feats
    if data.text_source == "hash":
        if "text" not in record:
            raise KeyError(f"record {record.get('id', '?')!r} has no 'text' field to embed")
        return text_hash.embed_text(record["text"], dim, data.text_hash_seed)
    raise ValueError(f"config.data.text_source={data.text_source!r}; expected 'features' or 'hash'")


def video_target(record: dict, data: ml_collections.ConfigDict, model: ml_collections.ConfigDict,
                 rng: np.random.Generator | None) -> np.ndarray:
    """The input of `models.video.VideoTower`: a frame clip for the 'vit' tower, precomputed features otherwise."""
    if model.video_tower == "vit":
        return video_clip(record, data, model.video.num_frames, model.video.img_size, rng)
    return precomputed_video(record)


def alignment_targets(record: dict, config: ml_collections.ConfigDict, targets: tuple[str, ...],
                      rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    """The 'video' (a target, or needed for retrieval) and 'text' entries of an IMU-to-video/text example."""
    d, m = config.data, config.model
    out = {}
    if "video" in targets or config.eval.retrieval:
        out["video"] = video_target(record, d, m, rng)
    if "text" in targets:
        out["text"] = text_embedding(record, d, m.imu_encoder.size_embeddings)
    return out
