"""IMU2CLIP pretraining: align an MW2 stack-RNN IMU encoder with video and text embeddings.

Facts: facebookresearch/imu2clip@6353031 lib/{imu_models.py, loss.py, train_modules.py}. Loss = sum over targets {video,
text} of the symmetric InfoNCE (CE over columns + CE over rows, added) on L2-normalised embeddings, one raw temperature
shared by all targets (learnable from 0.1 at upstream HEAD, fixed 0.1 in the original release). The IMU encoder output
(final GRU state) is compared directly with the target embeddings: there is no projection on the IMU side.

Targets:
* video: `model.video_tower='features'` reads a precomputed per-clip embedding from the record's `video_features`
  ([F, D] averaged over F, or [D]), the stand-in for the frozen CLIP image tower; `'vit'` trains a small frame ViT
  (`models/video.py`) plus a linear map to the embedding size (used by the synthetic demo, where no CLIP exists).
* text: `data.text_source='features'` reads `text_features` [D]; `'hash'` embeds the record's `text` with the
  deterministic hashed bag-of-words stand-in (`models/text_hash.py`).

The record helpers below (`imu_window`, `video_clip`, `precomputed_video`, `text_embedding`) are shared with the
PRIMUS and RevalExo contrastive systems.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax.models import text_hash
from imujax.models.projection import torch_linear
from imujax.models.rnn_imu import MW2StackRNNPooling
from imujax.models.video import FrameViT, FrameViTSizes
from imujax.objectives.infonce import info_nce_symmetric_sum, l2_normalize, similarity_logits
from imujax.transforms import imu as imu_tf
from imujax.transforms import records
from imujax.transforms import video as video_tf

TARGETS = ("video", "text")


# -- record helpers (shared by the contrastive systems) ------------------------------------------------------------
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


def frame_vit_sizes(video: ml_collections.ConfigDict) -> FrameViTSizes:
    return FrameViTSizes(**dict(video))


def in_batch_top1(query: jax.Array, key: jax.Array) -> jax.Array:
    """Fraction of queries whose most similar key (cosine) is their own pair."""
    logits = similarity_logits(query, key, 1.0)
    return jnp.mean((jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0])).astype(jnp.float32))


def check_targets(targets) -> tuple[str, ...]:
    targets = tuple(targets)
    if not targets or set(targets) - set(TARGETS):
        raise ValueError(f"config.loss.targets={targets}; expected a non-empty subset of {TARGETS}")
    return targets


def graft_converted_encoder(params: nnx.State, converted: nnx.State, source: str,
                            scalars: dict[str, float | None] | None = None) -> nnx.State:
    """Train-state params with `imu_encoder` replaced by a converted encoder (`python -m imujax.convert` output) and
    the named scalar params (temperatures read from the checkpoint) set where the checkpoint had them."""
    pure = params.to_pure_dict()
    new_encoder = nnx.State(converted).to_pure_dict() if not isinstance(converted, dict) else converted
    current = jax.tree.map(lambda x: tuple(np.shape(x)), pure["imu_encoder"])
    loaded = jax.tree.map(lambda x: tuple(np.shape(x)), new_encoder)
    if current != loaded:
        raise ValueError(f"{source}: the converted IMU encoder does not match config.model.imu_encoder "
                         f"(parameter shapes differ); set the config sizes to those in its imujax_convert.json")
    pure["imu_encoder"] = jax.tree.map(lambda new, old: jnp.asarray(new, jnp.asarray(old).dtype), new_encoder,
                                       pure["imu_encoder"])
    for name, value in (scalars or {}).items():
        if value is not None and name in pure:
            pure[name] = jnp.asarray(value, jnp.float32)
    nnx.replace_by_pure_dict(params, pure)
    return params


class VideoTower(nnx.Module):
    """'vit': FrameViT then a Linear to the embedding size when the widths differ; 'features': identity on the
    precomputed features (which must already have the embedding width)."""

    def __init__(self, kind: str, video: ml_collections.ConfigDict, embed_dim: int, *, rngs: nnx.Rngs):
        if kind not in ("vit", "features"):
            raise ValueError(f"config.model.video_tower={kind!r}; expected 'vit' or 'features'")
        self.kind, self.embed_dim = kind, embed_dim
        if kind == "vit":
            sizes = frame_vit_sizes(video)
            self.encoder = FrameViT(sizes, rngs=rngs)
            self.projection = torch_linear(sizes.dim, embed_dim, rngs) if sizes.dim != embed_dim else None

    def __call__(self, video: jax.Array) -> jax.Array:
        if self.kind == "features":
            if video.ndim != 2 or video.shape[1] != self.embed_dim:
                raise ValueError(f"precomputed video features must be [B, {self.embed_dim}] (the IMU embedding "
                                 f"size), got {video.shape}")
            return video
        feats = self.encoder(video)
        return feats if self.projection is None else self.projection(feats)


class IMU2CLIPModel(nnx.Module):
    def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        m = config.model
        self.imu_encoder = MW2StackRNNPooling(**dict(m.imu_encoder), rngs=rngs)
        self.embed_dim = m.imu_encoder.size_embeddings
        self.video_encoder = VideoTower(m.video_tower, m.video, self.embed_dim, rngs=rngs)
        # HEAD's learnable raw divisor (a param, so Adam updates it); None = the original fixed temperature.
        self.temperature = nnx.Param(jnp.asarray(m.temperature, jnp.float32)) if m.learn_temperature else None
        self.fixed_temperature = float(m.temperature)

    def tau(self) -> jax.Array | float:
        return self.temperature[...] if self.temperature is not None else self.fixed_temperature


class System:
    """IMU2CLIP: `imu` [6, T] (T in the encoder's valid range, 1000 upstream), `video`, `text` [D], `label`."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.targets = check_targets(config.loss.targets)

    def make_model(self, rngs: nnx.Rngs) -> IMU2CLIPModel:
        model = IMU2CLIPModel(self.config, rngs=rngs)
        valid = model.imu_encoder.valid_input_lengths()
        length = self.config.data.imu_length
        if valid is None or not valid[0] <= length <= valid[1]:
            raise ValueError(f"config.data.imu_length={length} does not fit the IMU2CLIP encoder, which accepts "
                             f"{valid} samples (set imu_rate_hz/imu_length accordingly)")
        return model

    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        d, m = self.config.data, self.config.model
        out = {"imu": imu_window(record, d.imu_channels, d.imu_rate_hz, d.imu_length, d.imu_resample),
               "label": np.int32(record["label"])}
        if "video" in self.targets or self.config.eval.retrieval:
            out["video"] = (video_clip(record, d, m.video.num_frames, m.video.img_size, rng)
                            if m.video_tower == "vit" else precomputed_video(record))
        if "text" in self.targets:
            out["text"] = text_embedding(record, d, m.imu_encoder.size_embeddings)
        return out

    def loss(self, model: IMU2CLIPModel, batch: dict[str, jax.Array], rng: jax.Array):
        del rng  # deterministic: no dropout, no augmentation in the upstream recipe
        emb = model.imu_encoder(batch["imu"])
        tau = model.tau()
        metrics: dict[str, jax.Array] = {}
        total = jnp.zeros((), jnp.float32)
        for name in self.targets:
            target = model.video_encoder(batch["video"]) if name == "video" else batch["text"]
            term = info_nce_symmetric_sum(emb, target, tau)
            metrics[f"imu2{name}"] = term
            metrics[f"imu2{name}_top1"] = in_batch_top1(emb, target)
            total = total + term
        metrics.update(loss=total, temperature=jnp.asarray(tau, jnp.float32))
        return total, metrics

    def init_from_converted(self, params: nnx.State, name: str, config: dict, converted: nnx.State) -> nnx.State:
        """Start from an `imujax.convert --model=imu2clip` output: the encoder, and its temperature if learnable."""
        if name != "imu2clip":
            raise ValueError(f"config.init_from holds a {name!r} conversion; the imu2clip system needs 'imu2clip'")
        return graft_converted_encoder(params, converted, "config.init_from",
                                       {"temperature": config.get("temperature")})

    def embed(self, model: IMU2CLIPModel, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        emb = model.imu_encoder(batch["imu"])
        out = {"imu": l2_normalize(emb), "fused": emb}
        if "video" in batch:
            out["video"] = l2_normalize(model.video_encoder(batch["video"]))
        return out
