"""Trainable video tower: a small ViT over a few frames (ViT-S/16 at the default sizes).

The upstream towers are frozen and not shipped (IMU2CLIP: CLIP ViT-B/32; PRIMUS: clip4clip; RevalExo: X3D-XS or
MViT-B, trainable). Records may carry precomputed `video_features` instead; this module is the option for
RevalExo-style end-to-end training and for the synthetic demos.

Frames [B, F, H, W, 3] (normalised, channels last) are cut into non-overlapping p x p patches per frame, flattened
in PyTorch's (c, kh, kw) order and embedded with `layers.PatchEmbed` (a matmul). Each token gets a learned spatial
position (shared by frames) plus a learned per-frame temporal embedding (Frozen-in-Time style); a CLS token is
prepended, the tokens go through joint space-time `layers.Block`s and a LayerNorm, and the clip feature is the CLS
token (`pool='cls'`) or the mean of the patch tokens (`pool='mean'`).
"""

from __future__ import annotations

import dataclasses

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from imujax.models import layers

trunc_normal = nnx.initializers.truncated_normal(stddev=0.02)


@dataclasses.dataclass(frozen=True)
class FrameViTSizes:
    """Defaults: ViT-S/16 (384 wide, 12 blocks, 6 heads) on 4 frames of 224 x 224."""

    dim: int = 384
    depth: int = 12
    heads: int = 6
    patch: int = 16
    img_size: int = 224
    num_frames: int = 4
    mlp_ratio: float = 4.0
    pool: str = "cls"
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.img_size % self.patch:
            raise ValueError(f"FrameViTSizes: img_size {self.img_size} is not a multiple of patch {self.patch}")
        if self.dim % self.heads:
            raise ValueError(f"FrameViTSizes: dim {self.dim} is not divisible by heads {self.heads}")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"FrameViTSizes: pool must be 'cls' or 'mean', got {self.pool!r}")

    @property
    def patches_per_frame(self) -> int:
        return (self.img_size // self.patch) ** 2


class FrameViT(nnx.Module):
    """[B, F, H, W, 3] -> clip feature [B, dim]."""

    def __init__(self, sizes: FrameViTSizes = FrameViTSizes(), *, rngs: nnx.Rngs):
        self.sizes = sizes
        d = sizes.dim
        self.patch_embed = layers.PatchEmbed(3 * sizes.patch ** 2, d, rngs=rngs)
        self.cls_token = nnx.Param(layers.partitioned(trunc_normal, (None, None, "embed"))(rngs.params(), (1, 1, d)))
        self.pos_embed = nnx.Param(layers.partitioned(trunc_normal, (None, None, "embed"))(
            rngs.params(), (1, sizes.patches_per_frame, d)))
        self.temporal_embed = nnx.Param(layers.partitioned(trunc_normal, (None, None, "embed"))(
            rngs.params(), (1, sizes.num_frames, d)))
        self.blocks = nnx.List([layers.Block(d, sizes.heads, mlp_ratio=sizes.mlp_ratio, eps=sizes.norm_eps,
                                             rngs=rngs) for _ in range(sizes.depth)])
        self.norm = layers.LayerNorm(d, eps=sizes.norm_eps, rngs=rngs)

    def __call__(self, frames: jax.Array) -> jax.Array:
        s = self.sizes
        expected = (s.num_frames, s.img_size, s.img_size, 3)
        if frames.ndim != 5 or tuple(frames.shape[1:]) != expected:
            raise ValueError(f"FrameViT: expected frames [B, {', '.join(map(str, expected))}], got {frames.shape}")
        patches = einops.rearrange(frames, "b f (h p) (w q) c -> b f (h w) (c p q)", p=s.patch, q=s.patch)
        tokens = self.patch_embed(patches) + self.pos_embed[...][:, None] + self.temporal_embed[...][:, :, None]
        tokens = einops.rearrange(tokens, "b f n d -> b (f n) d")
        cls = jnp.broadcast_to(self.cls_token[...], (tokens.shape[0], 1, s.dim)).astype(tokens.dtype)
        x = jnp.concatenate([cls, tokens], axis=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 0] if s.pool == "cls" else x[:, 1:].mean(axis=1)


def frame_vit_sizes(video) -> FrameViTSizes:
    """config.model.video (a mapping of FrameViTSizes fields) -> FrameViTSizes."""
    return FrameViTSizes(**dict(video))


class VideoTower(nnx.Module):
    """'vit': FrameViT then a Linear to the embedding size when the widths differ; 'features': identity on the
    precomputed features (which must already have the embedding width). The video target of the contrastive systems."""

    def __init__(self, kind: str, video, embed_dim: int, *, rngs: nnx.Rngs):
        if kind not in ("vit", "features"):
            raise ValueError(f"config.model.video_tower={kind!r}; expected 'vit' or 'features'")
        self.kind, self.embed_dim = kind, embed_dim
        if kind == "vit":
            sizes = frame_vit_sizes(video)
            self.encoder = FrameViT(sizes, rngs=rngs)
            self.projection = layers.torch_linear(sizes.dim, embed_dim, rngs) if sizes.dim != embed_dim else None

    def __call__(self, video: jax.Array) -> jax.Array:
        if self.kind == "features":
            if video.ndim != 2 or video.shape[1] != self.embed_dim:
                raise ValueError(f"precomputed video features must be [B, {self.embed_dim}] (the IMU embedding "
                                 f"size), got {video.shape}")
            return video
        feats = self.encoder(video)
        return feats if self.projection is None else self.projection(feats)
