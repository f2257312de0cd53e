"""Graph reconstruction loss of GraphMAE: scaled cosine error (SCE)."""

import jax.numpy as jnp

from imujax.objectives.infonce import l2_normalize


def sce_loss(recon, original, selected, *, alpha: float = 1.0):
    """Mean over selected rows of (1 - cos(recon, original))^alpha. recon/original [..., D], selected [...] bool."""
    cos = (l2_normalize(recon.astype(jnp.float32)) * l2_normalize(original.astype(jnp.float32))).sum(axis=-1)
    per_row = jnp.power(1.0 - cos, alpha)
    return jnp.where(selected, per_row, 0.0).sum() / selected.sum()
