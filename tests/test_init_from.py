"""`--config.init_from`: a converted PyTorch checkpoint or another run's checkpoint seeds the train state (params and
BatchNorm statistics), inside or outside a mesh, on any mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from configs import evi_mae as evi_mae_config
from imujax import sharding, systems, train
from imujax.bridges.torch import conversion
from tests.torch_reference import evi_mae as ref

SIZES = dict(imu_dim=32, imu_depth=1, imu_heads=2, imu_time=32, imu_freq=32, video_dim=16, video_depth=1,
             video_heads=2, num_frames=4, img_size=32, decoder_dim=8, decoder_heads=2, decoder_depth=1,
             graph_hidden=16)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    directory = tmp_path_factory.mktemp("init_from")
    model = ref.randomize_(ref.EVIMAE(ref.RefSizes(**SIZES)), seed=5)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, directory / "best_evi_model.pth")
    heads = {"imu_heads": "2", "video_heads": "2", "decoder_heads": "2", "imu_time": "32", "imu_freq": "32",
             "num_frames": "4", "img_size": "32"}
    conversion.convert_file("evi_mae", str(directory / "best_evi_model.pth"), str(directory / "out"), heads)
    return model.state_dict(), str(directory / "out")


def make_state(config, mesh=None):
    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 1, 1))
    mesh = mesh or sharding.make_mesh(devices=jax.devices()[:1])
    with jax.set_mesh(mesh):
        _, state, shardings = train.create_state(system, config, tx, mesh)
    return state, shardings


def test_init_from_loads_params_and_batchnorm_statistics(converted):
    torch_sd, directory = converted
    config = evi_mae_config.get_config("demo")
    config.model.update(SIZES)
    config.init_from = directory
    state, shardings = make_state(config)
    loaded = train._init_from(state, config, shardings)
    qkv = loaded["params"]["blocks_a"]["block"]["attn"]["qkv"]["kernel"][...][0]
    np.testing.assert_array_equal(np.asarray(qkv), torch_sd["blocks_a.0.attn.qkv.weight"].numpy().T)
    bn = loaded["other"]["graph_encoder"]["layers"][0]["apply_func"]["norm"]["mean"][...]
    np.testing.assert_array_equal(np.asarray(bn), torch_sd["graph_encoder.layers.0.apply_func.norm.running_mean"].numpy())
    assert not np.array_equal(np.asarray(state["params"]["blocks_a"]["block"]["attn"]["qkv"]["kernel"][...][0]), np.asarray(qkv))


def test_shape_mismatched_arrays_keep_their_initialisation(converted):
    torch_sd, directory = converted
    config = evi_mae_config.get_config("demo")
    config.model.update(dict(SIZES, imu_dim=16))  # narrower IMU tower: its matrices cannot load
    config.init_from = directory
    state, shardings = make_state(config)
    loaded = train._init_from(state, config, shardings)
    before = np.asarray(state["params"]["blocks_a"]["block"]["attn"]["qkv"]["kernel"][...][0])
    np.testing.assert_array_equal(np.asarray(loaded["params"]["blocks_a"]["block"]["attn"]["qkv"]["kernel"][...][0]), before)
    video_qkv = loaded["params"]["blocks_video"]["block"]["attn"]["qkv"]["kernel"][...][0]  # same shape: loaded
    np.testing.assert_array_equal(np.asarray(video_qkv), torch_sd["blocks_video.0.attn.qkv.weight"].numpy().T)


def test_init_from_a_converted_checkpoint_inside_an_fsdp_mesh(converted):
    """The converted model's abstract state is built outside the run's mesh (its 'layers' axis is no mesh axis)."""
    torch_sd, directory = converted
    config = evi_mae_config.get_config("demo")
    config.model.update(SIZES)
    config.init_from = directory
    mesh = sharding.make_mesh(fsdp=2)  # 8 fake devices: data 4 x fsdp 2
    state, shardings = make_state(config, mesh)
    with jax.set_mesh(mesh):
        loaded = train._init_from(state, config, shardings)
    qkv = loaded["params"]["blocks_a"]["block"]["attn"]["qkv"]["kernel"][...]
    assert qkv.sharding == state["params"]["blocks_a"]["block"]["attn"]["qkv"]["kernel"][...].sharding
    np.testing.assert_array_equal(np.asarray(qkv)[0], torch_sd["blocks_a.0.attn.qkv.weight"].numpy().T)


def test_init_from_another_run_on_an_fsdp_mesh_starts_from_its_weights(tmp_path, tiny_data_dir, uninterrupted_run):
    """`python -m imujax.main --config.init_from=RUN_DIR` on 8 devices with fsdp=2: with a zero learning rate the
    first step keeps the weights, so the new run's step-1 parameters are the first run's final ones."""
    from tests import run_helpers as rh
    workdir = str(tmp_path / "from_run")
    result = rh.run(rh.train_command(workdir, tiny_data_dir, f"--config.init_from={uninterrupted_run}:latest",
                                     "--config.mesh.fsdp=2", "--config.optimizer.learning_rate=0.0",
                                     total_steps=1), env=rh.env(devices=8))
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = rh.final_params(uninterrupted_run, rh.TOTAL_STEPS), rh.final_params(workdir, 1)
    assert len(first) == len(second) > 10
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_init_from_refuses_what_is_neither_a_run_nor_a_conversion(tmp_path):
    config = evi_mae_config.get_config("demo")
    config.init_from = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither an imujax.convert output"):
        train._init_from({}, config, {})


class _EncoderAndHead(nnx.Module):
    def __init__(self, rngs):
        self.encoder = nnx.Linear(3, 4, rngs=rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)


def _tiny_state(seed):
    _, params, other = nnx.split(_EncoderAndHead(nnx.Rngs(seed)), nnx.Param, ...)
    return {"step": jnp.int32(0), "params": params, "other": other}


@pytest.mark.parametrize("keys", [dict(init_only="encoder"), dict(encoder_init_from=True)])
def test_init_only_loads_a_subset_of_another_runs_checkpoint(tmp_path, keys):
    """TSFM Stage 2 from a Stage-1 run: only the encoder (also through the older encoder_init_from alias)."""
    import grain
    import ml_collections
    from imujax import checkpointing
    source = _tiny_state(1)
    ckpt = checkpointing.Checkpointer(str(tmp_path / "run" / "checkpoints"), use_async=False)
    ckpt.save(5, source, iter(grain.MapDataset.range(4).to_iter_dataset()), ml_collections.ConfigDict({"system": "x"}))
    ckpt.wait()
    ckpt.close()
    run_dir = str(tmp_path / "run")
    config = ml_collections.ConfigDict(dict(init_from="", init_only="", encoder_init_from=""))
    if "init_only" in keys:
        config.update(init_from=f"{run_dir}:latest", init_only="encoder")
    else:
        config.encoder_init_from = run_dir
    state = _tiny_state(2)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    loaded = train._init_from(state, config, shardings)
    np.testing.assert_array_equal(np.asarray(loaded["params"]["encoder"]["kernel"][...]),
                                  np.asarray(source["params"]["encoder"]["kernel"][...]))
    np.testing.assert_array_equal(np.asarray(loaded["params"]["head"]["kernel"][...]),
                                  np.asarray(state["params"]["head"]["kernel"][...]))
    assert not np.array_equal(np.asarray(source["params"]["head"]["kernel"][...]),
                              np.asarray(state["params"]["head"]["kernel"][...]))
