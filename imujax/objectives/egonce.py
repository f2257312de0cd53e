"""EgoNCE (EgoVLPv2): action-aware multi-positive InfoNCE with scene-aware hard negatives, for IMU<->video/text.

Facts: facebookresearch/EgoVLPv2@550c059 EgoVLPv2/model/loss.py. S = cos(a, b) [N, N] (rows = the first modality, e.g.
text or IMU). Positives P_ij = [cos(verb_i, verb_j) * cos(noun_i, noun_j) > 0] or i == j, i.e. the pair shares a verb
*and* a noun (multi-hot tags). With tau = 0.05:

    L = -(1/N) sum_i log sum_{j in P_i} softmax_j(S_i. / tau) - (1/N) sum_j log sum_{k in P_j} softmax_k(S_.j / tau)

(the column direction uses the same mask row j, as upstream; the mask is symmetric). Scene-aware hard negatives are a
batching rule: each item brings another clip of the same video and 60 s chunk, and the negatives are concatenated to
the batch (2N rows) before the loss, so they are ordinary rows here. Called under `jax.jit` on batch-sharded arrays,
S spans the global batch, like upstream's all-gather.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from imujax.objectives.infonce import HIGHEST, l2_normalize


def cosine_matrix(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
    """EgoVLP `sim_matrix`: rows normalised by max(||x||, eps), then a_n b_n^T."""
    return jnp.matmul(l2_normalize(a, eps), l2_normalize(b, eps).T, precision=HIGHEST)


def action_positive_mask(verbs: jax.Array, nouns: jax.Array, *, use_verb: bool = True,
                         use_noun: bool = True) -> jax.Array:
    """[N, N] bool positives from multi-hot verb [N, V] and noun [N, M] tags; the diagonal is always positive."""
    if not (use_verb or use_noun):
        raise ValueError("action_positive_mask: at least one of use_verb / use_noun must be true")
    if verbs.shape[0] != nouns.shape[0]:
        raise ValueError(f"action_positive_mask: verbs has {verbs.shape[0]} rows but nouns has {nouns.shape[0]}")
    verbs, nouns = verbs.astype(jnp.float32), nouns.astype(jnp.float32)
    if use_verb and use_noun:
        score = cosine_matrix(verbs, verbs) * cosine_matrix(nouns, nouns)
    elif use_noun:
        score = cosine_matrix(nouns, nouns)
    else:
        score = cosine_matrix(verbs, verbs)
    return (score + jnp.eye(verbs.shape[0], dtype=score.dtype)) > 0


def egonce_loss(emb_a: jax.Array, emb_b: jax.Array, positive_mask: jax.Array,
                temperature: jax.Array | float = 0.05) -> jax.Array:
    """EgoNCE on [N, D] embeddings (cosine similarity inside) with a [N, N] boolean positive mask."""
    if emb_a.ndim != 2 or emb_a.shape != emb_b.shape:
        raise ValueError(f"egonce_loss: expected two [N, D] embeddings of equal shape, got {emb_a.shape}, {emb_b.shape}")
    n = emb_a.shape[0]
    if positive_mask.shape != (n, n):
        raise ValueError(f"egonce_loss: positive_mask must be [{n}, {n}], got {positive_mask.shape}")
    logits = cosine_matrix(emb_a, emb_b) / temperature
    mask = positive_mask.astype(bool)
    # log of the softmax mass on the positives = logsumexp over positives - logsumexp over all.
    rows = jax.nn.logsumexp(logits, axis=1, where=mask) - jax.nn.logsumexp(logits, axis=1)
    cols = jax.nn.logsumexp(logits.T, axis=1, where=mask) - jax.nn.logsumexp(logits.T, axis=1)
    return -jnp.mean(rows) - jnp.mean(cols)


def scene_segment_ids(video_uids: Sequence[str], times_s: np.ndarray, chunk_s: float = 60.0) -> np.ndarray:
    """Segment id per clip: video uid + index of its `chunk_s` chunk (EgoVLP `neg_param` 60)."""
    times_s = np.asarray(times_s)
    if len(video_uids) != len(times_s):
        raise ValueError(f"scene_segment_ids: {len(video_uids)} video uids but {len(times_s)} times")
    return np.array([f"{uid}_{int(t // chunk_s)}" for uid, t in zip(video_uids, times_s)])


def sample_scene_negatives(segment_ids: np.ndarray, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each dataset index, a uniformly drawn index with the same segment id (possibly itself, as upstream)."""
    segment_ids = np.asarray(segment_ids)
    members: dict[str, np.ndarray] = {}
    out = np.empty(len(indices), np.int64)
    for pos, index in enumerate(np.asarray(indices)):
        segment = segment_ids[index]
        if segment not in members:
            members[segment] = np.flatnonzero(segment_ids == segment)
        out[pos] = rng.choice(members[segment])
    return out


def with_scene_negatives(batch: Mapping[str, np.ndarray], negatives: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate the negatives after the batch along axis 0 (every key must be in both)."""
    if set(batch) != set(negatives):
        raise ValueError(f"with_scene_negatives: batch keys {sorted(batch)} differ from negative keys "
                         f"{sorted(negatives)}")
    return {key: np.concatenate([batch[key], negatives[key]], axis=0) for key in batch}
