"""PRIMUS objective: multimodal + self-supervised InfoNCE plus nearest-neighbour positives from a feature queue.

Facts: Nokia-Bell-Labs/pretrained-imu-encoders@562e142 lib/train_modules.py `PRIMUSLearningModule`, lib/loss.py. With
lambda = ssl_coeff (0.5 in the released recipe):

    L_MM = (1 - lambda) * sum_t NCE_mm(mmcl(x), e_t)                      t in targets (text, video)
    L_SS = lambda * NCE_ss(ssl(x), ssl(aug(x)))
    L_NN = (1 - lambda) * sum_t NCE_mm(mmcl(x), Q_t[j*]) + lambda * NCE_ss(ssl(x), Q_imu[j*])

Every NCE is `info_nce_symmetric_sum` (both directions added) with a raw learnable divisor: tau_mm is shared by all
IMU<->text/video terms, tau_ss by all IMU<->IMU terms. j*(i) is the top-1 cosine neighbour of sample i in the queue
of the lookup domain (video when video is a target, else text; the IMU `ssl` queue when lambda = 1). The lookup uses
the queue *before* the current batch is enqueued. The queue stores the (detached) target embeddings as given and
the unnormalised `ssl` output of view 0.

The queue is a functional ring buffer (arrays + pointer) so it lives in the train state and can be jitted. Under a
mesh it receives the global batch (upstream keeps one queue per GPU). Upstream's released per-sample branch crashes
(`torch.Tensor(list_of_tensors)`); this port implements its intent: per-sample lookup, IMU-only samples (mask 0) look
up in the IMU queue and are not enqueued, the rest is enqueued stacked. Ties (e.g. an all-zero fresh queue) resolve to
the lowest slot; tied zero slots hold identical zero vectors, so the loss does not depend on the choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from imujax.objectives.infonce import HIGHEST, info_nce_symmetric_sum, l2_normalize


class FeatureQueue(NamedTuple):
    """FIFO ring buffers sharing one write pointer: feats[name] is [size, D]; ptr is the next slot (int32 scalar)."""

    feats: dict[str, jax.Array]
    ptr: jax.Array


def init_feature_queue(size: int = 8192, dims: Mapping[str, int] | None = None) -> FeatureQueue:
    """Zero-initialised queues, by default video, text and imu of width 512 (as upstream)."""
    dims = dict(dims or {"video": 512, "text": 512, "imu": 512})
    return FeatureQueue({name: jnp.zeros((size, dim), jnp.float32) for name, dim in dims.items()},
                        jnp.zeros((), jnp.int32))


def queue_size(queue: FeatureQueue) -> int:
    return next(iter(queue.feats.values())).shape[0]


def enqueue(queue: FeatureQueue, batch: Mapping[str, jax.Array], keep: jax.Array | None = None) -> FeatureQueue:
    """Write the rows of `batch` (one entry per queue name) at the pointer, wrapping around; `keep` skips rows."""
    if set(batch) != set(queue.feats):
        raise ValueError(f"enqueue: batch has keys {sorted(batch)} but the queue holds {sorted(queue.feats)}")
    size = queue_size(queue)
    rows = next(iter(batch.values())).shape[0]
    if rows > size:
        raise ValueError(f"enqueue: batch size {rows} is larger than the queue size {size}")
    keep = jnp.ones((rows,), bool) if keep is None else keep.astype(bool)
    offsets = jnp.cumsum(keep.astype(jnp.int32)) - 1
    # Skipped rows get an out-of-range slot and are dropped by the scatter.
    slots = jnp.where(keep, (queue.ptr + offsets) % size, size)
    feats = {name: queue.feats[name].at[slots].set(jax.lax.stop_gradient(batch[name]).astype(queue.feats[name].dtype),
                                                   mode="drop")
             for name in queue.feats}
    return FeatureQueue(feats, (queue.ptr + jnp.sum(keep.astype(jnp.int32))) % size)


def nearest_slots(queue_feats: jax.Array, query: jax.Array) -> jax.Array:
    """Top-1 cosine neighbour slot in `queue_feats` [Q, D] for every row of `query` [B, D] (zero rows score 0)."""
    sims = jnp.matmul(l2_normalize(query, 1e-8), l2_normalize(queue_feats, 1e-8).T, precision=HIGHEST)
    return jnp.argmax(jax.lax.stop_gradient(sims), axis=1)


def primus_loss(mmcl: jax.Array, ssl_view0: jax.Array, ssl_view1: jax.Array, targets: Mapping[str, jax.Array],
                tau_mm: jax.Array | float, tau_ss: jax.Array | float, queue: FeatureQueue | None = None, *,
                ssl_coeff: float = 0.5, mask: jax.Array | None = None
                ) -> tuple[jax.Array, FeatureQueue | None, dict[str, jax.Array]]:
    """Total PRIMUS loss, the updated queue (None when nearest-neighbour terms are off) and per-term metrics.

    mmcl, ssl_view0, ssl_view1: [B, D] encoder heads for the raw view (0) and the augmented view (1).
    targets: {'text': [B, D], 'video': [B, D]} (any non-empty subset) frozen-tower embeddings.
    mask: optional [B] with 0 for IMU-only samples; it masks the multimodal terms only (as upstream).
    """
    if not targets:
        raise ValueError("primus_loss: targets must hold at least one of 'text' / 'video'")
    unknown = set(targets) - {"text", "video"}
    if unknown:
        raise ValueError(f"primus_loss: unknown target modalities {sorted(unknown)}; expected 'text' and/or 'video'")
    lam = ssl_coeff
    metrics: dict[str, jax.Array] = {}
    total = jnp.zeros((), jnp.float32)

    if lam < 1:
        for name in sorted(targets):
            term = info_nce_symmetric_sum(mmcl, targets[name], tau_mm, mask=mask)
            metrics[f"mm_imu2{name}"] = term
            total = total + (1 - lam) * term
    if lam > 0:
        term = info_nce_symmetric_sum(ssl_view0, ssl_view1, tau_ss)
        metrics["ssl"] = term
        total = total + lam * term

    if queue is None:
        metrics["loss"] = total
        return total, None, metrics

    needed = set(targets) | {"imu"}
    if not needed <= set(queue.feats):
        raise ValueError(f"primus_loss: the queue holds {sorted(queue.feats)} but needs {sorted(needed)}")
    if lam == 1:
        slots = nearest_slots(queue.feats["imu"], ssl_view0)
    else:
        domain = "video" if "video" in targets else "text"
        slots = nearest_slots(queue.feats[domain], targets[domain])
        if mask is not None:  # IMU-only samples look up in the IMU queue
            slots = jnp.where(mask.astype(bool), slots, nearest_slots(queue.feats["imu"], ssl_view0))
    neighbours = {name: queue.feats[name][slots] for name in queue.feats}

    if lam < 1:
        for name in sorted(targets):
            term = info_nce_symmetric_sum(mmcl, neighbours[name], tau_mm)
            metrics[f"nn_imu2{name}"] = term
            total = total + (1 - lam) * term
    if lam > 0:
        term = info_nce_symmetric_sum(ssl_view0, neighbours["imu"], tau_ss)
        metrics["nn_ssl"] = term
        total = total + lam * term

    new_entries = {name: targets[name] for name in targets} | {"imu": ssl_view0}
    new_entries |= {name: jnp.zeros_like(ssl_view0, shape=(ssl_view0.shape[0], feats.shape[1]))
                    for name, feats in queue.feats.items() if name not in new_entries}
    new_queue = enqueue(queue, new_entries, keep=mask)
    metrics["loss"] = total
    return total, new_queue, metrics
