"""TSFM Stage-2 objectives (alxdofficial/tsfm@308eea1 training_scripts/human_activity_recognition/semantic_loss.py):
soft-target InfoNCE, multi-prototype InfoNCE, SigLIP, with optional memory-bank negatives.

All embeddings are L2-normalised. The learnable temperature is s = clamp(exp(logit_scale), 1, 50) (SigLIP: [1, 100]).
The memory bank (`imujax.models.memory_bank`) is a FIFO of detached (IMU, text) pairs used as extra negatives; only its
filled part counts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG = -1e9  # finite "minus infinity": masked logits keep finite gradients


def temperature_scale(logit_scale: jax.Array, max_scale: float = 50.0) -> jax.Array:
    return jnp.clip(jnp.exp(logit_scale), 1.0, max_scale)


def standardized_soft_targets(sim: jax.Array, soft_temperature: float = 0.5, std_floor: float = 0.1) -> jax.Array:
    """softmax_row((S - mean(S)) / max(std(S), floor) / T); mean and (unbiased, torch default) std over all of S."""
    std = jnp.std(sim, ddof=1)
    return jax.nn.softmax((sim - sim.mean()) / jnp.maximum(std, std_floor) / soft_temperature, axis=-1)


def _row_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return -(targets * jax.nn.log_softmax(logits, axis=-1)).sum(-1)


def _queue_parts(queue_imu, queue_text, queue_valid, dim, dtype):
    if queue_imu is None:
        empty = jnp.zeros((0, dim), dtype)
        return empty, empty, jnp.zeros((0,), bool)
    return queue_imu, queue_text, queue_valid


def soft_info_nce(z: jax.Array, t: jax.Array, logit_scale: jax.Array, *, frozen_text: jax.Array | None = None,
                  queue_imu=None, queue_text=None, queue_valid=None, soft_weight: float = 1.0,
                  soft_temperature: float = 0.5, use_soft: bool = True) -> tuple[jax.Array, dict]:
    """Single-prototype InfoNCE; z, t [B, D]; the same target matrix serves both directions.

    Soft targets from ``frozen_text`` f [B, D]: S = f f^T (queue columns get none); otherwise S = t [t; T_q]^T.
    """
    b, d = z.shape
    qz, qt, qv = _queue_parts(queue_imu, queue_text, queue_valid, d, z.dtype)
    s = temperature_scale(logit_scale)
    col_valid = jnp.concatenate([jnp.ones((b,), bool), qv])
    i2t = jnp.where(col_valid[None], s * z @ jnp.concatenate([t, qt]).T, NEG)
    t2i = jnp.where(col_valid[None], s * t @ jnp.concatenate([z, qz]).T, NEG)
    hard = jnp.concatenate([jnp.eye(b, dtype=z.dtype), jnp.zeros((b, qz.shape[0]), z.dtype)], axis=1)
    if use_soft:
        if frozen_text is not None:
            soft = standardized_soft_targets(frozen_text @ frozen_text.T, soft_temperature)
            soft = jnp.concatenate([soft, jnp.zeros((b, qz.shape[0]), z.dtype)], axis=1)
        else:
            sim = jnp.where(col_valid[None], t @ jnp.concatenate([t, qt]).T, 0.0)
            # standardise over the valid entries only, then give masked columns no mass
            n = col_valid.sum() * b
            mean = sim.sum() / n
            std = jnp.sqrt(jnp.where(col_valid[None], jnp.square(sim - mean), 0.0).sum() / jnp.maximum(n - 1, 1))
            scaled = (sim - mean) / jnp.maximum(std, 0.1) / soft_temperature
            soft = jax.nn.softmax(jnp.where(col_valid[None], scaled, NEG), axis=-1)
        targets = (1 - soft_weight) * hard + soft_weight * soft
    else:
        targets = hard
    targets = jax.lax.stop_gradient(targets)
    rows = 0.5 * (_row_cross_entropy(i2t, targets) + _row_cross_entropy(t2i, targets))
    loss = rows.mean()
    acc = (jnp.argmax(i2t[:, :b], axis=-1) == jnp.arange(b)).mean()
    return loss, {"scale": s, "i2t_acc": acc, "per_example_loss": rows}


def multi_prototype_info_nce(z: jax.Array, t: jax.Array, logit_scale: jax.Array, *, queue_imu=None, queue_text=None,
                             queue_valid=None, soft_weight: float = 1.0, soft_temperature: float = 0.5,
                             use_soft: bool = True, prototype_temperature: float = 0.1) -> tuple[jax.Array, dict]:
    """K prototypes per label: z [B, D], t [B, K, D]. Returns (loss, metrics incl. the best prototype per sample)."""
    b, k, d = t.shape
    qz, qt, qv = _queue_parts(queue_imu, queue_text, queue_valid, d, z.dtype)
    s = temperature_scale(logit_scale)
    pos = jnp.einsum("bd,bkd->bk", z, t)
    best = jnp.argmax(pos, axis=-1)
    flat = t.reshape(b * k, d)
    cols = jnp.concatenate([jnp.ones((b * k,), bool), qv])
    i2t = jnp.where(cols[None], s * z @ jnp.concatenate([flat, qt]).T, NEG)
    proto = jax.nn.softmax(pos / prototype_temperature, axis=-1)  # [B, K] mass over sample i's own prototypes
    proto_targets = (jnp.eye(b, dtype=z.dtype)[:, :, None] * proto[:, None, :]).reshape(b, b * k)
    if use_soft:
        label_sim = jnp.einsum("ikd,jld->ijkl", t, t).max(axis=(2, 3))
        weights = standardized_soft_targets(label_sim, soft_temperature)
        soft = jnp.repeat(weights / k, k, axis=1)
        targets = (1 - soft_weight) * proto_targets + soft_weight * soft
    else:
        targets = proto_targets
    targets = jnp.concatenate([targets, jnp.zeros((b, qz.shape[0]), z.dtype)], axis=1)
    targets = jax.lax.stop_gradient(targets)
    t_best = jnp.take_along_axis(t, best[:, None, None], axis=1)[:, 0]
    col_valid = jnp.concatenate([jnp.ones((b,), bool), qv])
    t2i = jnp.where(col_valid[None], s * t_best @ jnp.concatenate([z, qz]).T, NEG)
    hard = jnp.concatenate([jnp.eye(b, dtype=z.dtype), jnp.zeros((b, qz.shape[0]), z.dtype)], axis=1)
    rows = 0.5 * (_row_cross_entropy(i2t, targets) + _row_cross_entropy(t2i, hard))
    return rows.mean(), {"scale": s, "best_prototype": best, "t_best": t_best, "per_example_loss": rows}


def siglip_loss(z: jax.Array, t: jax.Array, logit_scale: jax.Array, logit_bias: jax.Array) -> tuple[jax.Array, dict]:
    """-mean log sigmoid(y * (s z t^T + b)), y = +1 on the diagonal and -1 elsewhere; the queue is not used."""
    s = temperature_scale(logit_scale, 100.0)
    logits = s * z @ t.T + logit_bias
    y = 2 * jnp.eye(z.shape[0], dtype=z.dtype) - 1
    rows = -jax.nn.log_sigmoid(y * logits).mean(-1)
    return rows.mean(), {"scale": s, "per_example_loss": rows}
