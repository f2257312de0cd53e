"""InfoNCE losses with the conventions of each upstream, computed over the *global* batch.

All functions are pure functions of [B, D] embeddings. Called inside `jax.jit` on arrays sharded along the batch
axis of a mesh, the [B, B] similarity matrix spans the whole global batch, so every sample's negatives come from the
whole data-parallel mesh (XLA inserts the all-gather). The upstream code contrasts only within one GPU's batch; here
the negative set grows with the pod. Temperatures are raw divisors (no log-parameterisation, no clamping), so a
learnable temperature is simply an array argument to differentiate through.

Conventions (S = normalise(q) normalise(k)^T / tau, positives on the diagonal):

| function                      | system              | loss                                                         |
|-------------------------------|---------------------|--------------------------------------------------------------|
| `info_nce`                    | generic             | CE over rows (softmax over keys for each query), mean       |
| `info_nce_symmetric_sum`      | IMU2CLIP, PRIMUS    | CE over columns + CE over rows, each a (masked) mean, ADDED  |
| `info_nce_symmetric_mean`     | RevalExo            | (CE + CE^T) / 2                                              |
| `evi_mae_info_nce`            | EVI-MAE             | -mean diag log_softmax(S, axis=0), video -> IMU, tau 0.05    |

IMU2CLIP sums `info_nce_symmetric_sum` over its target modalities (text, video) unweighted; PRIMUS weights the terms
(see `objectives/primus.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from imujax.ops import l2_normalize

HIGHEST = jax.lax.Precision.HIGHEST


def _check_pair(query: jax.Array, key: jax.Array, name: str) -> None:
    if query.ndim != 2 or key.ndim != 2 or query.shape != key.shape:
        raise ValueError(f"{name}: expected two [B, D] embeddings of equal shape, got {query.shape} and {key.shape}")


def similarity_logits(query: jax.Array, key: jax.Array, temperature: jax.Array | float,
                      normalize: bool = True) -> jax.Array:
    """[B, B] logits S_ij = <q_i, k_j> / tau (cosine when normalize=True)."""
    if normalize:
        query, key = l2_normalize(query), l2_normalize(key)
    return jnp.matmul(query, key.T, precision=HIGHEST) / temperature


def _diag_log_softmax(logits: jax.Array, axis: int) -> jax.Array:
    """log_softmax(logits, axis)[i, i] for every i, without building the full log-probability matrix."""
    return jnp.diagonal(logits) - jax.nn.logsumexp(logits, axis=axis)


def _masked_mean(per_sample: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(per_sample)
    mask = mask.astype(per_sample.dtype)
    total = jnp.sum(mask)
    # PRIMUS: weight by the mask, divide by its sum, and return 0 when nothing is selected.
    return jnp.where(total > 0, jnp.sum(per_sample * mask) / jnp.where(total > 0, total, 1.0), 0.0)


def info_nce(query: jax.Array, key: jax.Array, temperature: jax.Array | float = 0.1, *, normalize: bool = True,
             mask: jax.Array | None = None) -> jax.Array:
    """One direction: for each query i, cross-entropy of softmax_j(S_ij) against j = i, averaged over the batch."""
    _check_pair(query, key, "info_nce")
    logits = similarity_logits(query, key, temperature, normalize)
    return _masked_mean(-_diag_log_softmax(logits, axis=1), mask)


def info_nce_symmetric_sum(query: jax.Array, key: jax.Array, temperature: jax.Array | float = 0.1, *,
                           mask: jax.Array | None = None) -> jax.Array:
    """IMU2CLIP / PRIMUS `info_nce(symmetric_loss=True)`: CE(softmax over dim 0) + CE(softmax over dim 1).

    Each direction is a mean over the B diagonal terms (or PRIMUS's mask-weighted mean; masked samples still act as
    negatives; an all-zero mask gives 0) and the two directions are added, not averaged.
    """
    _check_pair(query, key, "info_nce_symmetric_sum")
    logits = similarity_logits(query, key, temperature)
    key_to_query = _masked_mean(-_diag_log_softmax(logits, axis=0), mask)
    query_to_key = _masked_mean(-_diag_log_softmax(logits, axis=1), mask)
    return key_to_query + query_to_key


def info_nce_symmetric_mean(query: jax.Array, key: jax.Array, temperature: jax.Array | float = 0.1) -> jax.Array:
    """RevalExo `IMU2CLIPModule`: (CE(S, arange) + CE(S^T, arange)) / 2 on L2-normalised embeddings."""
    _check_pair(query, key, "info_nce_symmetric_mean")
    logits = similarity_logits(query, key, temperature)
    return 0.5 * (jnp.mean(-_diag_log_softmax(logits, axis=1)) + jnp.mean(-_diag_log_softmax(logits, axis=0)))


def evi_mae_info_nce(imu: jax.Array, video: jax.Array, temperature: float = 0.05, *,
                     bidirectional: bool = False) -> tuple[jax.Array, jax.Array]:
    """EVI-MAE contrastive term (before its 0.01 weight) and c_acc.

    S = imu_n video_n^T / tau with rows = IMU, columns = video. The loss is -mean diag(log_softmax(S, axis=0)): for
    each video column the softmax runs over IMU rows (video -> IMU). With `bidirectional` the row direction is
    added and the two are halved (upstream's `bidirect_contrast=True`, CAV-MAE style). c_acc is the fraction of video
    columns whose argmax over IMU rows is the matching row (averaged with the row direction when bidirectional).
    """
    _check_pair(imu, video, "evi_mae_info_nce")
    logits = similarity_logits(imu, video, temperature)
    labels = jnp.arange(logits.shape[0])
    loss = -jnp.mean(_diag_log_softmax(logits, axis=0))
    c_acc = jnp.mean((jnp.argmax(logits, axis=0) == labels).astype(jnp.float32))
    if bidirectional:  # both the loss and c_acc average the two directions
        loss = 0.5 * (loss - jnp.mean(_diag_log_softmax(logits, axis=1)))
        c_acc = 0.5 * (c_acc + jnp.mean((jnp.argmax(logits, axis=1) == labels).astype(jnp.float32)))
    return loss, c_acc


def in_batch_top1(query: jax.Array, key: jax.Array) -> jax.Array:
    """Fraction of queries whose most similar key (cosine) is their own pair."""
    logits = similarity_logits(query, key, 1.0)
    return jnp.mean((jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0])).astype(jnp.float32))


def supervised_contrastive(embeddings: jax.Array, labels: jax.Array, temperature: jax.Array | float = 0.1
                           ) -> jax.Array:
    """SupCon, L_out (Khosla et al. 2020, arXiv:2004.11362, eq. 2) over [N, D] embeddings with integer labels.

    For anchor i the softmax runs over every other embedding; its positives are the others with the same label
    (the other views of one window included), and -mean log-probability over them is i's loss; anchors without a
    positive count 0 and are left out of the mean.
    """
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"supervised_contrastive: expected [N, D] embeddings and [N] labels, got "
                         f"{embeddings.shape} and {labels.shape}")
    z = l2_normalize(embeddings)
    self_mask = jnp.eye(z.shape[0], dtype=bool)
    logits = jnp.where(self_mask, -jnp.inf, jnp.matmul(z, z.T, precision=HIGHEST) / temperature)
    log_prob = jax.nn.log_softmax(logits, axis=1)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    count = jnp.sum(positive, axis=1)
    per_anchor = -jnp.sum(jnp.where(positive, log_prob, 0.0), axis=1) / jnp.maximum(count, 1)
    has = count > 0
    return jnp.sum(jnp.where(has, per_anchor, 0.0)) / jnp.maximum(jnp.sum(has), 1)
