"""The demo EVI-MAE train step compiled ahead of time for small TPU topologies (libtpu's compile-only backend, no TPU
needed) with FSDP: the program fits, and parameters and optimizer state are placed as the logical-axis rules say."""

import math
import re
import os

import jax
import numpy as np
import pytest
from flax import nnx

from configs import evi_mae as evi_mae_config
from imujax import sharding, systems, train
from tests import mesh_helpers
from benchmarks import tpu_aot
from imujax.models import rnn_imu

# libtpu reads these at start-up: without them it probes cloud metadata and warns; several processes may load it.
for name, value in dict(TPU_ACCELERATOR_TYPE="v5p-8", TPU_WORKER_HOSTNAMES="localhost", TPU_SKIP_MDS_QUERY="1",
                        ALLOW_MULTIPLE_LIBTPU_LOAD="1").items():
    os.environ.setdefault(name, value)

from jax.experimental import topologies  # noqa: E402

TOPOLOGIES = {"v5p:2x2x1": dict(data=1, fsdp=4), "v5e:2x2": dict(data=2, fsdp=2)}


def _compile(topology: str):
    config = evi_mae_config.get_config("demo")
    config.model.update(dict(dtype="bfloat16", imu_depth=1, video_depth=1, decoder_depth=1))  # one block each: cheap
    config.batch_size = 8
    devices = list(topologies.get_topology_desc(topology_name=topology, platform="tpu").devices)
    mesh = sharding.make_mesh(**TOPOLOGIES[topology], devices=devices)
    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 10, 100))
    graphdef, state, shardings = train.abstract_state(system, config, tx, mesh)
    s = system.sizes
    batch = {"imu": ((s.imu_tokens, s.imu_channels * s.patch ** 2), np.float32),
             "video": ((s.video_tokens, 3 * s.tubelet * s.patch ** 2), np.uint8), "label": ((), np.int32)}
    batch = {k: jax.ShapeDtypeStruct((config.batch_size, *shape), dtype,
                                     sharding=sharding.batch_sharding(mesh, 1 + len(shape)))
             for k, (shape, dtype) in batch.items()}
    # Made outside the mesh: the step's jax.random.key(seed) is concrete and compile-only devices cannot hold it.
    step = jax.jit(train.make_train_step(system, graphdef, tx, config.seed), donate_argnums=0,
                   out_shardings=(shardings, None))
    with jax.set_mesh(mesh):
        compiled = step.lower(state, batch).compile()
    return mesh, state, shardings, compiled


@pytest.fixture(scope="module", params=list(TOPOLOGIES))
def compiled_step(request):
    return _compile(request.param)


def _bytes(tree) -> int:
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def test_parameters_and_moments_are_sharded_as_annotated(compiled_step):
    mesh, state, shardings, compiled = compiled_step
    state_in = compiled.input_shardings[0][0]
    params_in = jax.tree.leaves(state_in["params"])
    expected = jax.tree.leaves(shardings["params"])
    assert len(params_in) == len(expected)
    for got, want, leaf in zip(params_in, expected, jax.tree.leaves(state["params"])):
        assert got.is_equivalent_to(want, leaf.ndim), (got, want, leaf.shape)
    # Every weight matrix with a dimension the FSDP size divides is sharded, in the params and in Adam's moments.
    fsdp = math.prod(mesh.shape[a] for a in sharding.mesh_axes(mesh, sharding.FSDP_AXES))
    for leaf in jax.tree.leaves(state["params"]) + jax.tree.leaves(state["opt_state"]):
        if leaf.ndim >= 2 and leaf.size >= 1024 and any(d % fsdp == 0 for d in leaf.shape):
            assert math.prod(leaf.sharding.shard_shape(leaf.shape)) * fsdp == leaf.size, (leaf.shape, leaf.sharding)
    # The updated state leaves the step on the same shardings (no resharding between steps).
    for got, want, leaf in zip(jax.tree.leaves(compiled.output_shardings[0]), jax.tree.leaves(shardings),
                               jax.tree.leaves(state)):
        assert got.is_equivalent_to(want, leaf.ndim)


def test_compiled_memory_is_the_sharded_state_plus_bounded_activations(compiled_step):
    mesh, state, _, compiled = compiled_step
    mem = compiled.memory_analysis()
    state_bytes = _bytes(state)
    full = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    fsdp = math.prod(mesh.shape[a] for a in sharding.mesh_axes(mesh, sharding.FSDP_AXES))
    assert state_bytes < 1.5 * full / fsdp  # sharded, not replicated (small vectors stay replicated)
    # Arguments: the state shards plus this chip's slice of the batch; the donated state aliases the output.
    assert state_bytes <= mem.argument_size_in_bytes < state_bytes + (2 << 20)
    assert mem.alias_size_in_bytes >= 0.9 * state_bytes
    assert 0 < mem.temp_size_in_bytes < 256 << 20


@pytest.mark.parametrize("make", [lambda rngs: rnn_imu.TorchLSTM(2688, 1024, rngs=rngs),   # DeepConvLSTM (RevalExo)
                                  lambda rngs: rnn_imu.TorchGRU(32, 512, rngs=rngs)])      # PRIMUS / IMU2CLIP
def test_recurrent_weights_are_fsdp_sharded_on_a_256_chip_pod(make):
    # benchmarks/tpu_aot.py found DeepConvLSTM's [2688, 4096] LSTM input weight replicated on every chip (42 MiB).
    mesh = mesh_helpers.abstract_mesh(256, data=1, fsdp=256)
    model = nnx.eval_shape(lambda: make(nnx.Rngs(0)))
    for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        spec = sharding.logical_to_spec(leaf.get_metadata()["out_sharding"], leaf.shape, mesh)
        shard = math.prod(jax.sharding.NamedSharding(mesh, spec).shard_shape(leaf.shape))
        if leaf.ndim == 2:
            assert shard * 256 == math.prod(leaf.shape), (path, leaf.shape, spec)


def test_recurrent_weight_is_gathered_once_not_all_reduced_per_time_step():
    # Left FSDP-sharded inside the scan, the GRU's recurrent matmul gathered activations at every step (885 MB here).
    devices = list(topologies.get_topology_desc(topology_name="v5p:2x2x1", platform="tpu").devices)
    mesh = sharding.make_mesh(data=1, fsdp=4, devices=devices)
    graphdef, params = nnx.split(nnx.eval_shape(lambda: rnn_imu.TorchGRU(32, 512, rngs=nnx.Rngs(0))))
    shardings = sharding.state_shardings(params, mesh)
    params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), params, shardings)
    x = jax.ShapeDtypeStruct((64, 250, 32), np.float32, sharding=sharding.batch_sharding(mesh, 3))
    grad = jax.grad(lambda p, x: (nnx.merge(graphdef, p)(x) ** 2).sum())
    with jax.set_mesh(mesh):
        hlo = jax.jit(grad, out_shardings=shardings).lower(params, x).compile().as_text()
    moved = sum(tpu_aot.collective_bytes(hlo).values())
    weight_bytes = sum(math.prod(a.shape) * 4 for a in jax.tree.leaves(params))
    assert moved < 4 * weight_bytes, (moved, weight_bytes)



_ENCODERS = {  # name: (model, input shape [B, ...] with B = 40, how the loss feeds it)
    "mw2_two_views": (lambda r: rnn_imu.MW2StackRNNPooling(32, 512, pool_type="adaptive", rngs=r), (20, 6, 250),
                      lambda model, x: model(jax.numpy.concatenate([x, 2 * x]))),  # PRIMUS: two views, one batch
    "deepconvlstm": (lambda r: rnn_imu.DeepConvLSTM(channels=6, window_size=40, conv_kernels=16, conv_kernel_size=5,
                                                    lstm_units=128, feature_dim=32, rngs=r), (40, 40, 6),
                     lambda model, x: model(x)),
}


@pytest.mark.parametrize("name", list(_ENCODERS))
def test_recurrent_encoders_do_not_move_global_batch_activations(name):
    # PRIMUS's concatenated views lost the batch sharding; XLA:TPU then sharded the GRU input projection over its
    # contraction and all-reduced a [3H, global batch, S] activation (2.6 GiB per chip per step on 256 v5p chips).
    # DeepConvLSTM's LSTM input projection did the same with its FSDP-sharded input weight. No collective may carry
    # an array with the global batch (40) as a dimension.
    make, shape, apply = _ENCODERS[name]
    devices = list(topologies.get_topology_desc(topology_name="v5p:2x2x1", platform="tpu").devices)
    mesh = sharding.make_mesh(data=1, fsdp=4, devices=devices)
    graphdef, params = nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(0))))
    shardings = sharding.state_shardings(params, mesh)
    params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), params, shardings)
    x = jax.ShapeDtypeStruct(shape, np.float32, sharding=sharding.batch_sharding(mesh, len(shape)))
    loss = lambda p, x: (apply(nnx.merge(graphdef, p), x) ** 2).sum()  # noqa: E731
    with jax.set_mesh(mesh):
        hlo = jax.jit(jax.grad(loss), out_shardings=shardings).lower(params, x).compile().as_text()
    moved = [line.split(" = ")[1][:200] for line in hlo.splitlines()
             if any(f" {op}(" in line or f" {op}-start(" in line for op in tpu_aot.COLLECTIVES)]
    assert moved and not [m for m in moved if re.search(r"\[(\d+,)*40[,\]]", m)], moved


def test_audio_mae_stacked_blocks_keep_activations_batch_sharded():
    # With its towers as layers.LayerStack scans and no batch constraint inside the blocks, the full-size Audio-MAE
    # step for v5p-8 needed 412 GiB of temporaries per chip (XLA gathered the global batch's activations; 66 GiB
    # with layers.constrain_batch in the blocks). Here: the collectives of a tiny model's gradient move less than
    # the weights a few times over, not activations of the whole batch.
    from imujax.models import audio_mae as am
    from imujax.objectives import mae
    sizes = am.AudioMAESizes(img_h=64, img_w=32, patch=8, embed_dim=32, depth=2, num_heads=2, decoder_dim=32,
                             decoder_depth=2, decoder_heads=2, meta_hidden=16)
    devices = list(topologies.get_topology_desc(topology_name="v5p:2x2x1", platform="tpu").devices)
    mesh = sharding.make_mesh(data=1, fsdp=4, devices=devices)
    graphdef, params = nnx.split(nnx.eval_shape(lambda: am.AudioMAE(sizes, rngs=nnx.Rngs(0))))
    shardings = sharding.state_shardings(params, mesh)
    params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), params, shardings)
    x = jax.ShapeDtypeStruct((128, 1, 64, 32), np.float32, sharding=sharding.batch_sharding(mesh, 4))
    noise = jax.ShapeDtypeStruct((128, sizes.num_tokens), np.float32, sharding=sharding.batch_sharding(mesh, 2))

    def loss(p, x, noise):
        out = nnx.merge(graphdef, p)(x, {"noise": noise}, mask_ratio=0.5)
        return mae.masked_mse(out["pred"], out["target"], out["mask"])

    with jax.set_mesh(mesh):
        hlo = jax.jit(jax.grad(loss), out_shardings=shardings).lower(params, x, noise).compile().as_text()
    moved = sum(tpu_aot.collective_bytes(hlo).values())
    weight_bytes = sum(math.prod(a.shape) * 4 for a in jax.tree.leaves(params))
    assert moved < 4 * weight_bytes, (moved, weight_bytes)


def _tsfm_encoder_grad_hlo(depth: int) -> str:
    from imujax.models import tsfm
    sizes = tsfm.TSFMSizes(d_model=32, num_heads=2, num_temporal_layers=depth, dim_feedforward=64, cnn_channels=(8, 16),
                           use_channel_encoding=True, sbert_dim=32)
    devices = list(topologies.get_topology_desc(topology_name="v5p:2x2x1", platform="tpu").devices)
    mesh = sharding.make_mesh(data=1, fsdp=4, devices=devices)
    graphdef, params, rest = nnx.split(nnx.eval_shape(lambda: tsfm.TSFMEncoder(sizes, rngs=nnx.Rngs(0))), nnx.Param,
                                       ...)
    rest = jax.tree.map(lambda a: jax.numpy.zeros(a.shape, a.dtype), rest)
    shardings = sharding.state_shardings(params, mesh)
    params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), params, shardings)
    b, p, c = 12, 5, 7  # global batch 12: no other dimension of the program is 12
    sh = lambda *shape, dtype=np.float32: jax.ShapeDtypeStruct(  # noqa: E731
        shape, dtype, sharding=sharding.batch_sharding(mesh, len(shape)))
    inputs = (sh(b, p, 64, c), sh(b, p, dtype=bool), sh(b, c, dtype=bool), sh(b, c, 32))

    def loss(params, x):  # the training path: dropout on
        out = nnx.merge(graphdef, params, rest)(*x[:3], channel_sentence=x[3], dropout_key=jax.random.key(0))
        return (out ** 2).sum()

    with jax.set_mesh(mesh):
        return jax.jit(jax.grad(loss), out_shardings=shardings).lower(params, inputs).compile().as_text()


def test_tsfm_encoder_compiles_one_block_whatever_its_depth():
    # TSFM Stage 1 at full size did not compile for 256 v5p chips in 20 minutes (benchmarks/tpu_aot.py): its 4
    # dual-branch blocks ran as a Python loop, so XLA:TPU compiled every block of both views, forward and backward.
    # They now run as one lax.scan: the compiled program does not grow with the depth, and no collective carries an
    # array with the global batch (12) as a dimension.
    sizes = {}
    for depth in (2, 4):
        hlo = _tsfm_encoder_grad_hlo(depth)
        sizes[depth] = sum(" = " in line for line in hlo.splitlines())
        moved = [line.split(" = ")[1][:200] for line in hlo.splitlines()
                 if any(f" {op}(" in line or f" {op}-start(" in line for op in tpu_aot.COLLECTIVES)]
        assert not [m for m in moved if re.search(r"\[(\d+,)*12[,\]]", m)], moved
    assert sizes[4] < 1.05 * sizes[2], sizes


def test_fsdp_split_follows_the_slice_topology():
    """A v6e 16x16 pod takes FSDP 256 only as 16 x 16 (whole physical axes), not the default 64 x 4; a v5p 4x4x8
    slice takes 128 as 32 x 4, not 64 x 2; where the default fits (v5e 16x16) it stays."""
    def mesh(topology, **axes):
        devices = list(topologies.get_topology_desc(topology_name=topology, platform="tpu").devices)
        return dict(sharding.make_mesh(devices=devices, **axes).shape)

    assert mesh("v6e:16x16", data=1, fsdp=256) == {"data": 1, "fsdp": 16, "fsdp_inner": 16, "tensor": 1}
    assert mesh("v5p:4x4x8", data=1, fsdp=128) == {"data": 1, "fsdp": 32, "fsdp_inner": 4, "tensor": 1}
    assert mesh("v5e:16x16", data=1, fsdp=256) == {"data": 1, "fsdp": 64, "fsdp_inner": 4, "tensor": 1}
    with pytest.raises(NotImplementedError):  # an explicit split is the user's: no silent change
        mesh("v6e:16x16", data=1, fsdp=256, fsdp_inner=4)


def test_multislice_mesh_runs_data_over_slices():
    """Two v5p slices (DCN between them): 'data' runs over the slices, FSDP within each; jax.make_mesh alone lays out
    one slice's physical topology and refuses devices from two."""
    devices = list(topologies.get_topology_desc(topology_name="v5p:2x2x1", platform="tpu", num_slices=2).devices)
    mesh = sharding.make_mesh(data=2, fsdp=4, devices=devices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "fsdp_inner": 1, "tensor": 1}
    slice_of = np.vectorize(lambda d: d.slice_index)(mesh.devices)
    assert [set(slice_of[i].ravel()) for i in range(2)] == [{0}, {1}]
    with pytest.raises(ValueError, match="multiple of 2"):
        sharding.make_mesh(data=1, fsdp=8, devices=devices)
