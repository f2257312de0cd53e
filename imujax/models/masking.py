"""MAE random masking (Audio-MAE / VideoMAE / EVI-MAE alike): per sample, keep the int(L * (1 - ratio)) tokens with
the lowest noise, in argsort(noise) order. The noise is an input, drawn by the caller from the step's key, so a torch
reference given the same noise masks the same tokens.
"""

from __future__ import annotations

import jax.numpy as jnp


def num_kept(length: int, mask_ratio: float) -> int:
    """Upstream truncation: int(L * (1 - ratio)) (L=512, 0.8 -> 102; L=160, 0.9 -> 15)."""
    return int(length * (1 - mask_ratio))


def masking_ids(noise, mask_ratio: float):
    """(ids_keep [B, K], mask [B, L] with 1 = removed, ids_restore [B, L]) of one draw."""
    batch, length = noise.shape
    keep = num_kept(length, mask_ratio)
    ids_shuffle = jnp.argsort(noise, axis=1)
    ids_restore = jnp.argsort(ids_shuffle, axis=1)
    mask = jnp.concatenate([jnp.zeros((batch, keep)), jnp.ones((batch, length - keep))], axis=1)
    return ids_shuffle[:, :keep], jnp.take_along_axis(mask, ids_restore, axis=1), ids_restore


def random_masking(x, noise, mask_ratio: float):
    """(kept tokens [B, K, D], mask [B, L], ids_restore [B, L]) of the `masking_ids` draw."""
    ids_keep, mask, ids_restore = masking_ids(noise, mask_ratio)
    return jnp.take_along_axis(x, ids_keep[..., None], axis=1), mask, ids_restore
