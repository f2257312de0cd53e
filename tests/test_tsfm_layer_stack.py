"""TSFM's dual-branch blocks as one `layers.LayerStack`: the scan draws the dropout keys of a Python loop over the
blocks, and convert outputs and training checkpoints hold the stacked layout ([depth, ...] under ``layers/block``),
restore from it and seed Stage 2's encoder from Stage 1 (``init_only=encoder``)."""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imujax import checkpointing, sharding, systems, train
from imujax.bridges.torch import conversion, tsfm_rules
from imujax.models import tsfm
from tests import test_tsfm_parity as parity
from tests import test_tsfm_systems as tiny

BLOCKS = ("encoder", "transformer", "transformer", "layers", "block")


def _get(tree, path):
    for part in path:
        tree = tree[part]
    return tree


def test_blocks_draw_the_keys_of_a_python_loop():
    """Block i's j-th dropout key is fold_in(key, start + 7 i + j), as when the blocks ran one by one: the scan's
    output equals the blocks run one at a time with those keys, and the key count moves past all of them."""
    depth, start = 3, 5  # start: keys already drawn before the blocks (the feature extractor's)
    sizes = tsfm.TSFMSizes(d_model=16, num_heads=2, num_temporal_layers=depth, dim_feedforward=32, dropout=0.3)
    transformer = tsfm.IMUTransformer(sizes, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 4, 5, 16)), jnp.float32)
    patch_mask, channel_mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 1, 1]], bool), jnp.asarray(rng.random((2, 5)) > 0.3)
    key = jax.random.key(3)
    keys = tsfm._Keys(key)
    keys.count = start
    got = transformer(x, patch_mask, channel_mask, keys)
    assert keys.count == start + depth * tsfm.DualBranchBlock.NUM_KEYS

    want = x
    for i in range(depth):
        row = jnp.stack([jax.random.fold_in(key, start + 7 * i + j) for j in range(1, 8)])
        want = transformer.transformer.layers.layer(i)(want, patch_mask, channel_mask, row)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)
    evaluated = transformer(x, patch_mask, channel_mask, tsfm._Keys(None))
    assert float(jnp.abs(got - evaluated).max()) > 0.1  # the keys were used: dropout changed the output
    with pytest.raises(ValueError, match="drew more than the 6 dropout keys"):
        transformer.transformer.layers.layer(0)(x, patch_mask, channel_mask, row[:6])


def test_converted_checkpoint_stores_stacked_blocks(tmp_path):
    """convert output: the encoder blocks stacked [depth, ...] under layers/block; reloaded it gives the same outputs
    and exports the torch state_dict bit-exactly; an output of the per-block layout (format_version 3) is refused."""
    cfg = parity.VARIANTS["cnn_pooled_k1"]
    _, _, ckpt = parity._checkpoint(cfg)
    sd = tsfm_rules.merge_checkpoint(ckpt)
    converted = conversion.convert_state_dict("tsfm", sd, parity._overrides(cfg))
    out_dir = tmp_path / "conv"
    conversion.save_converted(str(out_dir), converted)
    name, config, state = conversion.load_converted(str(out_dir))
    stacked = _get(state.to_pure_dict(), BLOCKS[:-1])
    assert set(stacked) == {"block"}
    depth, d = cfg["num_temporal_layers"], cfg["d_model"]
    assert stacked["block"]["temporal_attn"]["q_proj"]["kernel"].shape == (depth, d, d)
    np.testing.assert_array_equal(np.asarray(stacked["block"]["feed_forward"]["fc1"]["kernel"][1]),
                                  sd["encoder.transformer.transformer.layers.1.feed_forward.fc1.weight"].T)
    exported = conversion.export_state_dict(name, config, state)
    assert set(exported) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(np.asarray(exported[k]), v, err_msg=k)
    _, _, model = conversion.load_converted_model(str(out_dir))
    x = parity._inputs(cfg)
    np.testing.assert_array_equal(conversion.run_forward("tsfm", model, x)["emb_session"],
                                  conversion.run_forward("tsfm", converted.model, x)["emb_session"])
    meta_path = out_dir / conversion.CONFIG_FILE
    meta_path.write_text(meta_path.read_text().replace('"format_version": 4', '"format_version": 3'))
    with pytest.raises(ValueError, match="format_version 3, this imujax reads 4 for tsfm"):
        conversion.load_converted(str(out_dir))


def _state(config):
    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 1, 1))
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    with jax.set_mesh(mesh):
        _, state, shardings = train.create_state(system, config, tx, mesh)
    return state, shardings


def _iterator():
    return iter(grain.MapDataset.range(4).to_iter_dataset())


def test_stage1_checkpoint_is_stacked_restores_and_seeds_the_stage2_encoder(tmp_path):
    config1 = tiny.stage1_config()
    config1.model.num_temporal_layers = 2
    state1, _ = _state(config1)
    kernel = lambda state: np.asarray(_get(state["params"], BLOCKS)["temporal_attn"]["q_proj"]["kernel"][...])
    assert kernel(state1).shape == (2, 16, 16)
    ckpt = checkpointing.Checkpointer(str(tmp_path / "run" / "checkpoints"), use_async=False)
    try:
        ckpt.save(3, state1, _iterator(), config1)
        ckpt.wait()
        saved = checkpointing.array_layout(ckpt.manager.item_metadata(3)["state"])
        assert saved["params/" + "/".join(BLOCKS) + "/temporal_attn/q_proj/kernel"] == (2, 16, 16)
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state1)
        step, restored, _ = ckpt.restore_latest_good(abstract, _iterator(), config1)
        assert step == 3
        np.testing.assert_array_equal(kernel(restored), kernel(state1))
    finally:
        ckpt.close()

    config2 = tiny.stage2_config()
    config2.model.num_temporal_layers = 2
    config2.update(init_from=f"{tmp_path / 'run'}:latest", init_only="encoder")
    state2, shardings2 = _state(config2)
    loaded = train._init_from(state2, config2, shardings2)
    np.testing.assert_array_equal(kernel(loaded), kernel(state1))
    assert not np.array_equal(kernel(state2), kernel(state1))
    head = lambda state: np.asarray(state["params"]["semantic_head"]["projection_head"]["mlp"]["layers"][0]["kernel"][...])
    np.testing.assert_array_equal(head(loaded), head(state2))  # outside the encoder: its own initialisation
