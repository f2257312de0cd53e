"""Projection heads of the contrastive systems.

RevalExo `IMU2CLIPModule` (revalexo/revalexo@6ca9000 pretrain/contrastive/src/modules/contrastive_module.py):
`imu_projection` and `visual_projection` are each Linear(d, d) -> ReLU -> Linear(d, D), torch keys `<name>.0.*` and
`<name>.2.*`. `ProjectionHead.layers` keeps the same indices (index 1 is the parameter-free ReLU) so a bridge rule is
`<name>.{0,2}.weight -> <name>/layers/{0,2}`. Initialisation is PyTorch's Linear default, U(+-1/sqrt(fan_in)) for weight
and bias.
"""

from __future__ import annotations

import jax
from flax import nnx

from imujax.models.layers import torch_linear


class ReLU(nnx.Module):
    """Parameter-free ReLU, a placeholder that keeps torch Sequential indices aligned."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x)


class ProjectionHead(nnx.Module):
    """Linear(d_in, d_hidden) -> ReLU -> Linear(d_hidden, d_out)."""

    def __init__(self, d_in: int, d_out: int, d_hidden: int | None = None, *, rngs: nnx.Rngs):
        d_hidden = d_hidden or d_in
        self.d_in, self.d_out = d_in, d_out
        self.layers = nnx.List([torch_linear(d_in, d_hidden, rngs, ("embed", "mlp")), ReLU(),
                                torch_linear(d_hidden, d_out, rngs, ("mlp", "embed"))])

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.d_in:
            raise ValueError(f"ProjectionHead: expected features of width {self.d_in}, got shape {x.shape}")
        for layer in self.layers:
            x = layer(x)
        return x
