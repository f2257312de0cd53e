"""RevalExo contrastive pretraining (IMU2CLIP-adapted): DeepConvLSTM IMU encoder <-> trainable video encoder.

Facts: revalexo/revalexo@6ca9000 pretrain/contrastive/src/modules/{contrastive_module.py, loss.py}. Both encoders train
end to end. Features go through projection heads Linear(d, d) -> ReLU -> Linear(d, D) (`models/projection.py`), are
L2-normalised, and meet in a symmetric InfoNCE averaged over the two directions, 0.5 * [CE(S) + CE(S^T)], with S = imu .
video^T / tau and tau a learnable raw scalar (init 0.1). D is the IMU encoder's feature_dim.

Video side: upstream uses X3D-XS (4 frames, 182 px) or MViT-B (16 frames, 224 px), Kinetics-pretrained, followed by
`feature_projector` = Linear -> ReLU -> Dropout(0.5). Here the backbone is the frame ViT of `models/video.py`
(`model.video_tower='vit'`, trained from scratch) or precomputed `video_features` (`'features'`), followed by the
same feature projector.

IMU side: raw [T, 42] windows (acc of 7 lower-body sensors, then gyro), no normalisation. Train augmentations kept
from upstream: scaling 0.8-1.2 (p 0.5), channel dropout (p 0.2, each channel 0.1), Gaussian noise std 0.02 (p 0.5);
magnitude and time warping are left out. Video train augmentation: RandomResizedCrop (scale 0.6-1) and horizontal
flip; colour jitter, grayscale and random erasing are left out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax import systems
from imujax.models import layers
from imujax.models.projection import ProjectionHead
from imujax.models.rnn_imu import DeepConvLSTM
from imujax.models.video import FrameViT
from imujax.objectives.infonce import info_nce_symmetric_mean, l2_normalize
from imujax.grafting import graft_converted_encoder
from imujax.models.video import frame_vit_sizes
from imujax.objectives.infonce import in_batch_top1
from imujax.transforms.contrastive_inputs import imu_window, video_target


class VisualEncoder(nnx.Module):
    """Backbone (frame ViT or precomputed features) then `feature_projector` = Linear -> ReLU -> Dropout."""

    def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        m = config.model
        if m.video_tower not in ("vit", "features"):
            raise ValueError(f"config.model.video_tower={m.video_tower!r}; expected 'vit' or 'features'")
        self.kind, self.dropout_rate = m.video_tower, float(m.visual_dropout)
        if self.kind == "vit":
            self.backbone = FrameViT(frame_vit_sizes(m.video), rngs=rngs)
            width = m.video.dim
        else:
            width = m.video_feature_dim
        self.input_width = width
        self.feature_projector = layers.torch_linear(width, m.visual_feature_dim, rngs)

    def __call__(self, video: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        if self.kind == "features":
            if video.ndim != 2 or video.shape[1] != self.input_width:
                raise ValueError(f"precomputed video features must be [B, {self.input_width}] "
                                 f"(config.model.video_feature_dim), got {video.shape}")
            feats = video
        else:
            feats = self.backbone(video)
        return layers.dropout(jax.nn.relu(self.feature_projector(feats)), self.dropout_rate, dropout_key)


class RevalExoContrastiveModel(nnx.Module):
    def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        m = config.model
        channels = len(config.data.imu_channels)
        self.imu_encoder = DeepConvLSTM(channels=channels, window_size=config.data.imu_length, **dict(m.imu_encoder),
                                        rngs=rngs)
        self.visual_encoder = VisualEncoder(config, rngs=rngs)
        d_imu, d_vis = self.imu_encoder.feature_dim, m.visual_feature_dim
        self.imu_projection = ProjectionHead(d_imu, d_imu, rngs=rngs)
        self.visual_projection = ProjectionHead(d_vis, d_imu, rngs=rngs)
        self.temperature = nnx.Param(jnp.asarray(m.temperature, jnp.float32))

    def embeddings(self, imu: jax.Array, video: jax.Array, dropout_key: jax.Array | None = None):
        """(imu embedding, video embedding), both projected and L2-normalised, [B, D]."""
        imu_emb = l2_normalize(self.imu_projection(self.imu_encoder.encode_features(imu)))
        vis_emb = l2_normalize(self.visual_projection(self.visual_encoder(video, dropout_key)))
        return imu_emb, vis_emb


def augment_window(x: np.ndarray, aug: ml_collections.ConfigDict, rng: np.random.Generator) -> np.ndarray:
    """Upstream train augmentations on one [T, C] window (each applied with its own probability)."""
    x = x.astype(np.float32, copy=True)
    if rng.random() < aug.scale_prob:
        x *= np.float32(rng.uniform(*aug.scale_range))
    if rng.random() < aug.channel_dropout_prob:
        x[:, rng.random(x.shape[1]) < aug.channel_dropout_rate] = 0.0
    if rng.random() < aug.noise_prob:
        x += rng.normal(0.0, aug.noise_std, size=x.shape).astype(np.float32)
    return x


class System(systems.System):
    """RevalExo contrastive: `imu` [T, C] (time, channel), `video` (frames or features), `label`."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    def make_model(self, rngs: nnx.Rngs) -> RevalExoContrastiveModel:
        return RevalExoContrastiveModel(self.config, rngs=rngs)

    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        d, m = self.config.data, self.config.model
        imu = imu_window(record, d.imu_channels, d.imu_rate_hz, d.imu_length, d.imu_resample).T  # [T, C]
        if rng is not None:
            imu = augment_window(imu, d.imu_augment, rng)
        video = video_target(record, d, m, rng)
        return {"imu": np.ascontiguousarray(imu), "video": video, "label": np.int32(record["label"])}

    def loss(self, model: RevalExoContrastiveModel, batch: dict[str, jax.Array], rng: jax.Array):
        imu_emb, vis_emb = model.embeddings(batch["imu"], batch["video"], dropout_key=rng)
        tau = model.temperature[...]
        loss = info_nce_symmetric_mean(imu_emb, vis_emb, tau)
        return loss, {"loss": loss, "temperature": tau, "imu2video_top1": in_batch_top1(imu_emb, vis_emb),
                      "video2imu_top1": in_batch_top1(vis_emb, imu_emb)}

    def init_from_converted(self, params: nnx.State, name: str, config: dict, converted: nnx.State) -> nnx.State:
        """Start from an `imujax.convert --model=deepconvlstm` output (e.g. a released imu_encoder_best.pt)."""
        if name != "deepconvlstm":
            raise ValueError(f"config.init_from holds a {name!r} conversion; this system needs 'deepconvlstm'")
        return graft_converted_encoder(params, converted, "config.init_from")

    def embed(self, model: RevalExoContrastiveModel, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        imu_emb, vis_emb = model.embeddings(batch["imu"], batch["video"])
        return {"imu": imu_emb, "video": vis_emb, "fused": model.imu_encoder.encode_features(batch["imu"])}
