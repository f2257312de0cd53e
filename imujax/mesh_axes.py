"""Mesh axis names, the one vocabulary shared by the models and `imujax.sharding`.

Models name the mesh axes an activation's batch is split over (`models.layers.constrain_batch`) without knowing how a
mesh is built or how logical parameter names map onto it: that policy stays in `imujax.sharding`.
"""

MESH_AXES = ("data", "fsdp", "fsdp_inner", "tensor")
FSDP_AXES = ("fsdp", "fsdp_inner")  # major, minor: flattened, the same device order as one N-wide 'fsdp' axis
BATCH_AXES = ("data", *FSDP_AXES)
