"""Classification heads shared by several systems.

``MultiHorizonClassifier`` is RevalExo's head (revalexo/revalexo@6ca9000 ``train/models/base_models.py``): one
prediction per horizon. With shared layers (the EVI-MAE fusion, 6 horizons) it is ``shared_net.0`` Linear + ReLU +
Dropout, then ``heads.k`` Linear; without (or with one horizon) each head is Dropout then Linear, keyed
``heads.k.1``. Dropout draws from an explicit key; no key means eval mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from imujax.models import layers
from imujax.models.layers import Linear


class DropoutSlot(nnx.Module):
    """Parameter-free placeholder that keeps PyTorch's ``Sequential(Dropout, Linear)`` index layout (``.1``)."""

    def __init__(self, rate: float):
        self.rate = rate

    def __call__(self, x, key):
        return layers.dropout(x, self.rate, key)


class MultiHorizonClassifier(nnx.Module):
    """[B, D] features -> logits [H, B, C], one Linear head per prediction horizon."""

    def __init__(self, dim: int, num_classes: int, num_horizons: int, *, shared_layers: bool = True,
                 dropout: float = 0.5, dtype=jnp.float32, rngs: nnx.Rngs):
        self.shared = shared_layers and num_horizons > 1  # upstream uses the shared trunk only for several horizons
        self.dropout = dropout
        if self.shared:
            self.shared_net = nnx.List([Linear(dim, dim, ("embed", "mlp"), dtype=dtype, rngs=rngs)])
            self.heads = nnx.List([Linear(dim, num_classes, ("mlp", "vocab"), dtype=dtype, rngs=rngs)
                                   for _ in range(num_horizons)])
        else:
            self.heads = nnx.List([nnx.List([DropoutSlot(dropout),
                                             Linear(dim, num_classes, ("embed", "vocab"), dtype=dtype, rngs=rngs)])
                                   for _ in range(num_horizons)])

    def __call__(self, x, dropout_key: jax.Array | None = None) -> jax.Array:
        n = len(self.heads) + 1  # one key for the shared trunk, one per head
        keys = [None] * n if dropout_key is None else list(jax.random.split(dropout_key, n))
        if self.shared:
            h = layers.dropout(jax.nn.relu(self.shared_net[0](x)), self.dropout, keys[0])
            return jnp.stack([head(h) for head in self.heads])
        return jnp.stack([head[1](head[0](x, keys[i + 1])) for i, head in enumerate(self.heads)])
