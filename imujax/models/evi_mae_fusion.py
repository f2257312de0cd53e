"""RevalExo ``EVI_MAE_Fusion``: the EVI-MAE fine-tune encoder with a feature head, then a multi-horizon classifier.

revalexo/revalexo@6ca9000 train/models/evi_mae_fusion.py. The encoder is ``EVIMAEEncoder`` in ``multimodal`` mode with
``mlp_head`` = LayerNorm(D_v + 512) -> Linear(feature_dim); the IMU arrives in RevalExo's (freq, time) layout [B, 12, F,
T], which the shared swap-then-patchify embedding turns into a (time x freq) patch grid, exactly as upstream does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from imujax.models.evi_mae import EVIMAEFT, EVIMAESizes
from imujax.models.heads import MultiHorizonClassifier


class RevalExoEncoder(EVIMAEFT):
    """``EVI_MAE_Encoder``: the EVIMAEFT head with feature_dim outputs (multimodal features -> LayerNorm -> Linear)."""

    def __init__(self, sizes: EVIMAESizes, feature_dim: int, *, use_graph: bool = True, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        super().__init__(sizes, feature_dim, use_graph=use_graph, dtype=dtype, rngs=rngs)


def _as_channels_first(imu: jax.Array, channels: int) -> jax.Array:
    """Accept [B, 12, F, T], [B, 1, 12, F, T] or [B, 4, 3, F, T] (the shapes upstream squeezes/reshapes)."""
    if imu.ndim == 5 and (imu.shape[1] == 1 or imu.shape[1] * imu.shape[2] == channels):
        imu = imu.reshape(imu.shape[0], -1, *imu.shape[3:])
    if imu.ndim != 4 or imu.shape[1] != channels:
        raise ValueError(f"imu must be [B, {channels}, freq, time] (or [B, 1, {channels}, ...] / [B, 4, 3, ...]), "
                         f"got shape {imu.shape}")
    return imu


class EVIMAEFusion(nnx.Module):
    """Returns (logits per horizon [H, B, C], encoder features [B, feature_dim])."""

    def __init__(self, sizes: EVIMAESizes, num_classes: int, *, num_horizons: int = 6, feature_dim: int = 768,
                 shared_layers: bool = True, use_graph: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
        self.encoder = RevalExoEncoder(sizes, feature_dim, use_graph=use_graph, dtype=dtype, rngs=rngs)
        self.classifier = MultiHorizonClassifier(feature_dim, num_classes, num_horizons, shared_layers=shared_layers,
                                                 dtype=dtype, rngs=rngs)

    def __call__(self, imu, video, dropout_key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        k_enc, k_cls = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        features = self.encoder(_as_channels_first(imu, self.encoder.sizes.imu_channels), video, k_enc)
        return self.classifier(features, k_cls), features
