"""FSDP placement rules: weights that the FSDP size divides in neither dimension are split over two dimensions."""

import math

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import evi_mae as evi_mae_config
from imujax import sharding, systems, train
from tests import mesh_helpers


def shard_size(mesh, names, shape):
    return math.prod(NamedSharding(mesh, sharding.logical_to_spec(names, shape, mesh)).shard_shape(shape))


def test_fsdp_256_is_two_axes_whose_product_is_256():
    mesh = mesh_helpers.abstract_mesh(256, data=1, fsdp=256)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 64, "fsdp_inner": 4, "tensor": 1}
    assert mesh.shape["fsdp"] * mesh.shape["fsdp_inner"] == 256 and sharding.batch_divisor(mesh) == 256
    # Up to 64 devices FSDP stays one axis (the inner one has size 1 and never appears in a spec).
    assert dict(mesh_helpers.abstract_mesh(64, data=1, fsdp=64).shape)["fsdp_inner"] == 1
    assert dict(mesh_helpers.abstract_mesh(512, data=2, fsdp=-1).shape) == {"data": 2, "fsdp": 64, "fsdp_inner": 4,
                                                                        "tensor": 1}


@pytest.mark.parametrize("names, shape", [(("embed", "heads"), (384, 1152)),   # ViT-S qkv
                                          (("heads", "embed"), (384, 384)),    # ViT-S proj
                                          (("embed", "heads"), (192, 576)),    # decoder qkv
                                          (("embed", "mlp"), (384, 192))])
def test_weight_no_dimension_of_which_256_divides_is_sharded_256_ways(names, shape):
    mesh = mesh_helpers.abstract_mesh(256, data=1, fsdp=256)
    spec = sharding.logical_to_spec(names, shape, mesh)
    assert sorted(a for a in spec if a) == ["fsdp", "fsdp_inner"], spec
    assert shard_size(mesh, names, shape) == math.prod(shape) // 256
    # On 64 devices the same weight keeps its one-dimensional FSDP layout.
    mesh64 = mesh_helpers.abstract_mesh(64, data=1, fsdp=64)
    assert shard_size(mesh64, names, shape) == math.prod(shape) // 64
    assert sum(a is not None for a in sharding.logical_to_spec(names, shape, mesh64)) == 1


def test_dimension_divisible_by_whole_fsdp_keeps_one_dimensional_layout():
    mesh = mesh_helpers.abstract_mesh(256, data=1, fsdp=256)
    assert sharding.logical_to_spec(("embed", "mlp"), (768, 3072), mesh) == P(("fsdp", "fsdp_inner"), None)
    assert sharding.logical_to_spec(("embed", "mlp"), (384, 1536), mesh) == P(None, ("fsdp", "fsdp_inner"))
    assert sharding.logical_to_spec(("embed",), (384,), mesh) == P("fsdp")  # in part: 64 of 256 ways
    assert sharding.logical_to_spec(("norm",), (384,), mesh) == P(None)


def test_layer_axis_of_stacked_params_is_never_sharded():
    """A `LayerStack` weight shards like one layer's; the spill-over never lands on the layer axis."""
    mesh = mesh_helpers.abstract_mesh(256, data=1, fsdp=256)
    one_layer = sharding.logical_to_spec(("embed", "heads"), (384, 1152), mesh)
    assert sharding.logical_to_spec(("layers", "embed", "heads"), (12, 384, 1152), mesh) == P(None, *one_layer)
    # 384 takes 64 of the 256 ways; the other 4 ('fsdp_inner') would fit only the 12 layers.
    assert sharding.logical_to_spec(("layers", "embed"), (12, 384), mesh) == P(None, "fsdp")


def test_full_size_evi_mae_state_on_256_devices():
    """Every parameter and Adam moment of >= 4096 elements per layer is sharded 256 ways; only small vectors (also
    when stacked over a `LayerStack`'s unsharded layer axis) stay replicated."""
    config = evi_mae_config.get_config()
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 10, 100))
    init, _ = train._init_fn(systems.make_system(config), config, tx)
    abstract = jax.eval_shape(init)
    mesh = mesh_helpers.abstract_mesh(256, data=1, fsdp=256)
    shardings = sharding.state_shardings(abstract, mesh)
    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    total = per_device = 0
    leaves = jax.tree_util.tree_leaves_with_path(abstract, is_leaf=is_var)
    for (path, a), s in zip(leaves, jax.tree.leaves(shardings, is_leaf=is_var)):
        s = s.get_value() if is_var(s) else s
        size, shard = math.prod(a.shape), math.prod(s.shard_shape(a.shape))
        total, per_device = total + size, per_device + shard
        stacked = any(getattr(k, "key", None) == "block" for k in path)
        if stacked:
            assert s.spec[0] is None, (path, s.spec)  # the scan slices the layer axis: never sharded
        if size // (a.shape[0] if stacked else 1) >= 4096:
            assert shard * 256 == size, (a.shape, s.spec)
    assert per_device * 256 < 1.7 * total


def test_factored_fsdp_on_real_devices():
    """fsdp=8 as 4 x 2: a 6x4 weight is sharded 8 ways over both dimensions; matmuls and batches still work."""
    mesh = sharding.make_mesh(data=1, fsdp=8, fsdp_inner=2)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "fsdp_inner": 2, "tensor": 1}
    spec = sharding.logical_to_spec(("embed", "mlp"), (6, 4), mesh)
    assert spec == P("fsdp_inner", "fsdp")
    w = np.arange(24, dtype=np.float32).reshape(6, 4)
    x = np.linspace(-1, 1, 8 * 6, dtype=np.float32).reshape(8, 6)
    wd = jax.device_put(w, NamedSharding(mesh, spec))
    assert {s.data.shape for s in wd.addressable_shards} == {(3, 1)} and len(wd.addressable_shards) == 8
    with jax.set_mesh(mesh):
        xd = sharding.global_batch({"x": x}, mesh)["x"]
        assert {s.data.shape for s in xd.addressable_shards} == {(1, 6)}
        y = jax.jit(lambda a, b: a @ b)(xd, wd)
    np.testing.assert_allclose(np.asarray(y), x @ w, rtol=1e-6)
    with pytest.raises(ValueError, match="fsdp_inner"):
        sharding.make_mesh(data=1, fsdp=8, fsdp_inner=3)
