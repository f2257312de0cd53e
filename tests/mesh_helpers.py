"""Meshes this machine does not have, for checking sharding rules at pod scale (256 and 512 chips)."""

from jax.sharding import AbstractMesh, AxisType

from imujax import sharding
from imujax.mesh_axes import MESH_AXES


def abstract_mesh(num_devices: int, data: int = -1, fsdp: int = 1, tensor: int = 1, *,
                  fsdp_inner: int | None = None) -> AbstractMesh:
    """The device-free twin of ``sharding.make_mesh``: shardings and shard shapes without the devices."""
    shape = sharding.mesh_shape(num_devices, data, fsdp, tensor, fsdp_inner)
    return AbstractMesh(tuple(shape.values()), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
