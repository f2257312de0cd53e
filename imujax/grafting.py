"""Start a system's model from a converted checkpoint (`python -m imujax.convert` output) by grafting one sub-tree.

The converted IMU encoder replaces the ``imu_encoder`` params of a freshly initialised train state, with the same
shapes, and named scalars (temperatures read from the checkpoint) are set where the checkpoint had them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def graft_converted_encoder(params: nnx.State, converted: nnx.State, source: str,
                            scalars: dict[str, float | None] | None = None) -> nnx.State:
    """Train-state params with `imu_encoder` replaced by a converted encoder (`python -m imujax.convert` output) and
    the named scalar params (temperatures read from the checkpoint) set where the checkpoint had them."""
    pure = params.to_pure_dict()
    new_encoder = nnx.State(converted).to_pure_dict() if not isinstance(converted, dict) else converted
    current = jax.tree.map(lambda x: tuple(np.shape(x)), pure["imu_encoder"])
    loaded = jax.tree.map(lambda x: tuple(np.shape(x)), new_encoder)
    if current != loaded:
        raise ValueError(f"{source}: the converted IMU encoder does not match config.model.imu_encoder "
                         f"(parameter shapes differ); set the config sizes to those in its imujax_convert.json")
    pure["imu_encoder"] = jax.tree.map(lambda new, old: jnp.asarray(new, jnp.asarray(old).dtype), new_encoder,
                                       pure["imu_encoder"])
    for name, value in (scalars or {}).items():
        if value is not None and name in pure:
            pure[name] = jnp.asarray(value, jnp.float32)
    nnx.replace_by_pure_dict(params, pure)
    return params
