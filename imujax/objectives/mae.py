"""Masked-autoencoder reconstruction loss (MAE / VideoMAE / EVI-MAE / Audio-MAE convention)."""

import jax.numpy as jnp


def normalize_patches(target, eps: float = 1e-6):
    """Per-patch normalisation with the *unbiased* variance, as the upstream ``norm_pix_loss`` (torch ``.var``)."""
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, keepdims=True, ddof=1)
    return (target - mean) / jnp.sqrt(var + eps)


def masked_mse(pred, target, mask, *, norm_pix: bool = True):
    """Mean over each patch vector of the squared error, then the mean over masked tokens (mask 1 = removed).

    pred/target [B, L, D], mask [B, L]. Computed in float32 whatever the compute dtype.
    """
    target = target.astype(jnp.float32)
    if norm_pix:
        target = normalize_patches(target)
    per_token = jnp.square(pred.astype(jnp.float32) - target).mean(axis=-1)
    return (per_token * mask).sum() / jnp.maximum(mask.sum(), 1)  # mask ratio 0: no reconstruction term, not 0/0
