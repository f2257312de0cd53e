"""A small 1-D convolutional IMU encoder for contrastive pretraining on real recordings (CPU-sized).

[B, C, T] -> blocks of (conv k, LayerNorm over channels, GELU, stride-2 downsampling) -> mean and max over time,
concatenated -> linear to `dim` (the embedding probes use). A two-layer projection head maps it to the contrastive
space (SimCLR's head: the loss sees the projection, downstream tasks the embedding before it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class ConvBlock(nnx.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(cin, cout, kernel_size=(kernel,), strides=(stride,), padding="SAME", rngs=rngs)
        self.norm = nnx.LayerNorm(cout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, C] channels-last
        return jax.nn.gelu(self.norm(self.conv(x)))


class ConvIMUEncoder(nnx.Module):
    def __init__(self, in_channels: int = 6, widths: tuple[int, ...] = (64, 128, 128), kernel: int = 5,
                 dim: int = 128, proj_dim: int = 64, *, rngs: nnx.Rngs):
        chans = (in_channels, *widths)
        self.blocks = nnx.List([ConvBlock(a, b, kernel, 1 if i == 0 else 2, rngs=rngs)
                                for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))])
        self.embed = nnx.Linear(2 * widths[-1], dim, rngs=rngs)
        self.proj_hidden = nnx.Linear(dim, dim, rngs=rngs)
        self.proj_out = nnx.Linear(dim, proj_dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, C, T] -> embedding [B, dim]."""
        h = jnp.swapaxes(x, 1, 2)
        for block in self.blocks:
            h = block(h)
        return self.embed(jnp.concatenate([h.mean(axis=1), h.max(axis=1)], axis=-1))

    def project(self, emb: jax.Array) -> jax.Array:
        return self.proj_out(jax.nn.gelu(self.proj_hidden(emb)))
