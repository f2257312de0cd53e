"""Device mesh, logical-axis rules and placement of state and batches on the mesh.

Parameters carry logical axis names (``embed``, ``heads``, ``mlp`` ...) from ``nnx.with_partitioning``; the rules
below map them onto mesh axes ('data', 'fsdp', 'tensor'). A dimension that a mesh axis does not divide is kept
replicated rather than failing, so tiny test models and odd widths run on any mesh.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# One place for every model's sharding: logical name -> mesh axis (or axes, or None = replicated).
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", BATCH_AXES),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("conv_out", "tensor"),
    ("conv_in", None),
    ("patch", None),
    ("norm", None),
)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Start JAX's multi-controller runtime when the environment asks for it (TPU pods, SLURM, explicit flags).

    Single-process runs skip it. ``jax.distributed.initialize`` auto-detects TPU and SLURM clusters; explicit
    arguments (or IMUJAX_COORDINATOR / IMUJAX_NUM_PROCESSES / IMUJAX_PROCESS_ID) cover plain multi-process launches.
    """
    coordinator_address = coordinator_address or os.environ.get("IMUJAX_COORDINATOR")
    if num_processes is None and "IMUJAX_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["IMUJAX_NUM_PROCESSES"])
    if process_id is None and "IMUJAX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["IMUJAX_PROCESS_ID"])
    explicit = coordinator_address is not None
    on_cluster = "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1
    on_tpu_pod = "TPU_WORKER_HOSTNAMES" in os.environ and "," in os.environ["TPU_WORKER_HOSTNAMES"]
    if not (explicit or on_cluster or on_tpu_pod):
        return
    # A dead peer must end the run with an error, not a hang: the coordination service notices a process whose
    # heartbeat stops and the others abort.
    heartbeat = int(os.environ.get("IMUJAX_HEARTBEAT_TIMEOUT_S", "60"))
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, heartbeat_timeout_seconds=heartbeat)
    logging.info("jax.distributed: process %d of %d, %d global devices", jax.process_index(),
                 jax.process_count(), jax.device_count())


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Mesh ('data', 'fsdp', 'tensor') with Auto axis types; one size may be -1 to take the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got data={data}, fsdp={fsdp}, tensor={tensor}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh: {len(devices)} devices are not divisible by the fixed axis sizes (product {known})")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh: data*fsdp*tensor = {math.prod(sizes)} but {len(devices)} devices are available "
                         f"(data={sizes[0]}, fsdp={sizes[1]}, tensor={sizes[2]})")
    return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_to_spec(names: Sequence[str | None] | None, shape: Sequence[int], mesh: Mesh,
                    rules=DEFAULT_RULES) -> P:
    """Map logical names to a PartitionSpec for ``shape``.

    A mesh axis that does not divide its rule's dimension is moved to the largest other unsharded dimension it
    divides (so FSDP still shards e.g. a 384-wide ViT-S weight on 256 devices through its 1536-wide MLP dimension);
    if none fits, that axis is dropped and the tensor stays replicated along it.
    """
    if not names:
        return P()
    table = dict(rules)
    used: set[str] = set()
    spec: list = [None] * len(shape)
    unplaced: list[str] = []
    for i, (name, dim) in enumerate(zip(names, shape)):
        axes = table.get(name) if name is not None else None
        axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        if axes and dim % math.prod(mesh.shape[a] for a in axes) == 0:
            used.update(axes)
            spec[i] = axes[0] if len(axes) == 1 else axes
        else:
            unplaced += list(axes)
    for axis in unplaced:
        free = [i for i in range(len(shape)) if spec[i] is None and shape[i] % mesh.shape[axis] == 0]
        if axis not in used and free:
            spec[max(free, key=lambda i: shape[i])] = axis
            used.add(axis)
    return P(*spec)


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def state_shardings(tree, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedShardings for a pytree of (abstract) state: annotated Variables per their names, the rest replicated.

    Works for model states and for optimizer states whose moments are Variables with the params' metadata.
    """
    def one(x):
        if _is_variable(x):
            names = x.get_metadata().get("out_sharding")
            return x.replace(NamedSharding(mesh, logical_to_spec(names, x.shape, mesh, rules)))
        return NamedSharding(mesh, P())
    return jax.tree.map(one, tree, is_leaf=_is_variable)


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble per-host batches into global arrays sharded along the batch over ('data', 'fsdp')."""
    return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), np.asarray(v))
            for k, v in local.items()}


def batch_divisor(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]
