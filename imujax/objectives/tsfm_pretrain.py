"""TSFM Stage-1 objectives (alxdofficial/tsfm@308eea1 training_scripts/human_activity_recognition/losses.py): masked
patch reconstruction + patch-level NT-Xent, balanced.

total = w_mae * L_mae / EMA(L_mae) + w_con * L_con / EMA(L_con); the EMAs (decay 0.99, initialised to the first
values) are carried as state between steps. Whether upstream divides by the EMA before or after folding in the
current value is not pinned down in the spec; here the EMA is updated first (so step 1 gives exactly w_mae + w_con).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rezscore_target(patches: jax.Array, floor: float = 1e-6) -> jax.Array:
    """Per (patch, channel) z-score over the 64 steps (population std clamped at ``floor``). [B, P, T, C]."""
    mean = patches.mean(axis=2, keepdims=True)
    std = jnp.sqrt(jnp.square(patches - mean).mean(axis=2, keepdims=True))
    return (patches - mean) / jnp.maximum(std, floor)


def _mae_terms(recon, patches, mae_mask, patch_mask, channel_mask, channel_drop):
    err = jnp.square(recon - rezscore_target(patches)).mean(axis=2)  # [B, P, C]
    chan = channel_mask if channel_drop is None else channel_mask & ~channel_drop
    w_c = chan.astype(err.dtype)[:, None, :]
    per_patch = (err * w_c).sum(-1) / jnp.maximum(w_c.sum(-1), 1.0)
    return per_patch, (mae_mask & patch_mask).astype(err.dtype)  # [B, P] each


def mae_loss(recon: jax.Array, patches: jax.Array, mae_mask: jax.Array, patch_mask: jax.Array,
             channel_mask: jax.Array, channel_drop: jax.Array | None = None) -> jax.Array:
    """MSE over time, then over valid non-dropped channels, then over patches that are masked AND valid."""
    per_patch, w_p = _mae_terms(recon, patches, mae_mask, patch_mask, channel_mask, channel_drop)
    return (per_patch * w_p).sum() / jnp.maximum(w_p.sum(), 1.0)


def mae_sums(recon: jax.Array, patches: jax.Array, mae_mask: jax.Array, patch_mask: jax.Array,
             channel_mask: jax.Array, channel_drop: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Per sample ([B], [B]): the sum of its masked valid patches' errors and their count. Summed over any subset of
    the batch, their ratio is ``mae_loss`` restricted to it (per-dataset metrics)."""
    per_patch, w_p = _mae_terms(recon, patches, mae_mask, patch_mask, channel_mask, channel_drop)
    return (per_patch * w_p).sum(-1), w_p.sum(-1)


def pool_channels(proj: jax.Array, channel_mask: jax.Array) -> jax.Array:
    """Mean over valid channels, then L2-normalise. [B, P, C, D] -> [B, P, D]."""
    w = channel_mask.astype(proj.dtype)[:, None, :, None]
    pooled = (proj * w).sum(2) / jnp.maximum(w.sum(2), 1.0)
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def patch_nt_xent(proj1: jax.Array, proj2: jax.Array, patch_mask: jax.Array, channel_mask: jax.Array,
                  temperature: float = 0.2, per_example: bool = False):
    """NT-Xent over the 2N valid patches of both views (positive i <-> i+N), diagonal excluded. -> (loss, acc), plus
    with ``per_example`` a pair ([B], [B]): each sample's summed NLL over the anchors of its valid patches in both
    views and their count (a subset's sums give the loss over its anchors; per-dataset metrics).

    Padding patches are removed by masking (shapes stay static under jit): they are neither anchors nor candidates.
    """
    a = pool_channels(proj1, channel_mask).reshape(-1, proj1.shape[-1])
    b = pool_channels(proj2, channel_mask).reshape(-1, proj2.shape[-1])
    valid = patch_mask.reshape(-1)
    n = a.shape[0]
    z = jnp.concatenate([a, b])
    v = jnp.concatenate([valid, valid])
    logits = z @ z.T / temperature
    allowed = v[None, :] & ~jnp.eye(2 * n, dtype=bool)
    logits = jnp.where(allowed, logits, -1e9)  # finite: no NaN gradients through masked rows
    pos = jnp.concatenate([jnp.arange(n) + n, jnp.arange(n)])
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, pos[:, None], axis=1)[:, 0]
    w = v.astype(nll.dtype)
    loss = jnp.where(v, nll, 0.0).sum() / jnp.maximum(w.sum(), 1.0)
    acc = ((jnp.argmax(logits, axis=-1) == pos) * w).sum() / jnp.maximum(w.sum(), 1.0)
    if not per_example:
        return loss, acc
    shape = (2,) + patch_mask.shape  # anchors ordered [view, sample, patch]
    return loss, acc, (jnp.where(v, nll, 0.0).reshape(shape).sum((0, 2)), w.reshape(shape).sum((0, 2)))


def ema_balanced_total(l_mae: jax.Array, l_con: jax.Array, ema: jax.Array, initialized: jax.Array,
                       decay: float = 0.99, w_mae: float = 1.0, w_con: float = 1.0
                       ) -> tuple[jax.Array, jax.Array]:
    """(total, new_ema). ``ema`` [2] holds EMA(L_mae), EMA(L_con); the first call initialises it to the losses."""
    current = jax.lax.stop_gradient(jnp.stack([l_mae, l_con]))
    new_ema = jnp.where(initialized, decay * ema + (1 - decay) * current, current)
    safe = jnp.maximum(new_ema, 1e-8)
    return w_mae * l_mae / safe[0] + w_con * l_con / safe[1], new_ema
