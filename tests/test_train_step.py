"""One EVI-MAE train step: the same numbers on 1 device and on a data=2 x fsdp=4 mesh, params sharded as annotated."""

import re

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from configs import evi_mae as evi_mae_config
from imujax import sharding, summary, systems, train


def tiny_config():
    config = evi_mae_config.get_config("demo")
    config.model.update(dict(imu_dim=32, imu_heads=2, imu_depth=1, video_dim=16, video_heads=2, video_depth=1,
                             decoder_dim=16, decoder_heads=2, decoder_depth=1, graph_hidden=16))
    config.batch_size = 8
    return config


def random_batch(config, seed=0):
    rng = np.random.default_rng(seed)
    m = config.model
    return {"imu": rng.normal(size=(config.batch_size, m.imu_channels, m.imu_time, m.imu_freq)).astype(np.float32),
            "video": rng.normal(size=(config.batch_size, 3, m.num_frames, m.img_size, m.img_size)).astype(np.float32),
            "label": rng.integers(0, 8, config.batch_size).astype(np.int32)}


def run_steps(config, mesh, batch, num_steps=2):
    system = systems.make_system(config)
    schedule = train.make_schedule(config.optimizer, 10, 100)
    tx = train.make_optimizer(config.optimizer, schedule)
    with jax.set_mesh(mesh):
        graphdef, state, shardings = train.create_state(system, config, tx, mesh)
        step = jax.jit(train.make_train_step(system, graphdef, tx, config.seed), out_shardings=(shardings, None))
        losses = []
        for _ in range(num_steps):
            state, metrics = step(state, sharding.global_batch(batch, mesh))
            losses.append({k: float(v) for k, v in metrics.items()})
    return state, losses


@pytest.fixture(scope="module")
def runs():
    config = tiny_config()
    batch = random_batch(config)
    single = run_steps(config, sharding.make_mesh(devices=jax.devices()[:1]), batch)
    sharded = run_steps(config, sharding.make_mesh(data=2, fsdp=4), batch)
    return config, single, sharded


def test_eight_devices_match_one_device(runs):
    _, (_, single), (_, sharded) = runs
    for a, b in zip(single, sharded):
        for key in ("loss", "mae_imu", "mae_video", "contrast", "graph"):
            assert abs(a[key] - b[key]) <= 1e-5, (key, a[key], b[key])
    assert single[1]["loss"] != single[0]["loss"]  # the second step saw updated parameters


def test_params_sharded_as_annotated(runs):
    _, _, (state, _) = runs
    # Stacked layers ([depth, ...]): the layer axis is never sharded, the others as annotated.
    qkv = state["params"]["blocks_a"]["block"]["attn"]["qkv"]["kernel"]
    assert qkv.sharding.spec == P(None, "fsdp", None)  # ('embed', 'heads'): heads -> tensor axis of size 1 stays replicated
    assert qkv.addressable_shards[0].data.shape == (qkv.shape[0], qkv.shape[1] // 4, qkv.shape[2])
    fc2 = state["params"]["blocks_video"]["block"]["mlp"]["fc2"]["kernel"]
    assert fc2.sharding.spec == P(None, None, "fsdp")
    norm = state["params"]["norm"]["scale"]
    assert all(axis is None for axis in norm.sharding.spec) and norm.addressable_shards[0].data.shape == norm.shape
    # Adam moments follow their parameters.
    mu = optax.tree_utils.tree_get(state["opt_state"], "mu")["blocks_a"]["block"]["attn"]["qkv"]["kernel"]
    assert mu.sharding.spec == P(None, "fsdp", None)


def test_fsdp_gathers_weights_one_layer_at_a_time_and_no_token_activations():
    """Every all-gather in the FSDP step is of rank <= 2: one layer's weight matrix or a pooled [batch, dim] embedding
    for the contrastive loss. A token-level activation gathered across the batch ([parts, batch, tokens, dim]) makes
    per-device memory grow with the global batch; so would gathering all of a `LayerStack`'s layers at once."""
    config = tiny_config()
    mesh = sharding.make_mesh(data=1, fsdp=8)
    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 10, 100))
    batch = random_batch(config)
    with jax.set_mesh(mesh):
        graphdef, state, _ = train.abstract_state(system, config, tx, mesh)
        batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding.batch_sharding(mesh, v.ndim))
                 for k, v in batch.items()}
        hlo = jax.jit(train.make_train_step(system, graphdef, tx, config.seed)).lower(state, batch).compile().as_text()
    gathers = re.findall(r"= \w+\[([\d,]*)\]\S* all-gather(?:-start)?\(", hlo)
    assert gathers, "expected FSDP all-gathers in the compiled step"
    assert [shape for shape in gathers if shape.count(",") >= 2] == []


def test_uneven_dimension_moves_or_stays_replicated():
    mesh = sharding.make_mesh(data=2, fsdp=4)
    assert sharding.logical_to_spec(("embed", "mlp"), (8, 8), mesh) == P("fsdp", None)
    assert sharding.logical_to_spec(("embed", "mlp"), (6, 8), mesh) == P(None, "fsdp")  # moved to a divisible dim
    assert sharding.logical_to_spec(("embed", "mlp"), (6, 6), mesh) == P(None, None)


def test_released_size_parameter_count():
    config = evi_mae_config.get_config()
    assert sum(summary.count_parameters(config).values()) == 108_926_725


def test_mesh_errors_are_explicit():
    with pytest.raises(ValueError, match="devices"):
        sharding.make_mesh(data=3, fsdp=1)
