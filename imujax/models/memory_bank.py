"""TSFM Stage-2 memory bank (alxdofficial/tsfm@308eea1 training_scripts/human_activity_recognition/memory_bank.py).

Model-side state: a module that holds queues belongs with the models; the losses in `imujax.objectives.prototypes`
only read the negatives it hands them. Under jit an invalid entry cannot raise, so non-finite or zero-norm pairs are
skipped and counted instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class MemoryBank(nnx.Module):
    """MoCo-style FIFO of (IMU, text) embeddings; state lives in nnx.BatchStat so the train loop carries it."""

    def __init__(self, size: int, dim: int):
        self.imu_queue = nnx.BatchStat(jnp.zeros((size, dim), jnp.float32))
        self.text_queue = nnx.BatchStat(jnp.zeros((size, dim), jnp.float32))
        self.ptr = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.filled = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def valid(self) -> jax.Array:
        return jnp.arange(self.imu_queue.shape[0]) < self.filled[...]

    def negatives(self) -> dict:
        return dict(queue_imu=self.imu_queue[...], queue_text=self.text_queue[...], queue_valid=self.valid())

    def enqueue(self, z: jax.Array, t: jax.Array) -> jax.Array:
        """Append detached pairs with wrap-around; returns the number of rejected (non-finite / zero-norm) pairs."""
        z, t = jax.lax.stop_gradient(z), jax.lax.stop_gradient(t)
        ok = (jnp.isfinite(z).all(-1) & jnp.isfinite(t).all(-1) & (jnp.linalg.norm(z, axis=-1) > 0)
              & (jnp.linalg.norm(t, axis=-1) > 0))
        size = self.imu_queue.shape[0]
        order = jnp.argsort(~ok, stable=True)  # accepted pairs first, in batch order
        n_ok = ok.sum().astype(jnp.int32)
        rows = (self.ptr[...] + jnp.arange(z.shape[0])) % size
        take = jnp.arange(z.shape[0]) < jnp.minimum(n_ok, size)
        # rows beyond the accepted count are written to an out-of-range index and dropped
        rows = jnp.where(take, rows, size)
        self.imu_queue[...] = self.imu_queue[...].at[rows].set(z[order].astype(jnp.float32), mode="drop")
        self.text_queue[...] = self.text_queue[...].at[rows].set(t[order].astype(jnp.float32), mode="drop")
        self.ptr[...] = (self.ptr[...] + jnp.minimum(n_ok, size)) % size
        self.filled[...] = jnp.minimum(self.filled[...] + n_ok, size)
        return z.shape[0] - n_ok
