"""TSFM systems end to end on hand-made records (hashed text embedder, tiny sizes): preprocess, loss, grad, embed.

Checks the data contract (fixed shapes, masks, label variants, channel ids) and that one jitted training step of each
Stage is finite, moves the loss state (EMA, memory bank) and leaves padded inputs without influence.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tsfm_stage1, tsfm_stage2
from imujax.systems import tsfm_stage1 as s1
from imujax.systems import tsfm_stage2 as s2

CHANNELS = ("left_arm/acc_x", "left_arm/acc_y", "left_arm/acc_z", "left_arm/gyro_x", "left_arm/gyro_y",
            "left_arm/gyro_z", "head/acc_x", "head/acc_y", "head/acc_z")
TINY = dict(d_model=16, num_heads=2, num_temporal_layers=1, dim_feedforward=32, cnn_channels=(4, 8), max_positions=16)


def _records(n=4, t=100, seed=0):
    rng = np.random.default_rng(seed)
    return [{"imu": rng.normal(size=(t, len(CHANNELS))).astype(np.float32), "imu_rate_hz": np.float32(50.0),
             "channels": list(CHANNELS), "label": i % 3} for i in range(n)]


def _common(config):
    config.text.update(dict(embedder="hashed", hashed_width=24, cache_dir=""))
    config.data.update(dict(channel_names=CHANNELS, patch_seconds=0.5, max_patches=4, max_channels=10,
                            sampling_rate_hz=50.0, rotation_prob=1.0))
    config.model.update(TINY)
    config.model.dropout = 0.0  # smaller graphs compile faster; the demos exercise dropout
    return config


def stage1_config():
    config = _common(tsfm_stage1.get_config())
    config.model.sbert_dim = 24
    return config


def stage2_config(kind: str = "infonce"):
    config = _common(tsfm_stage2.get_config())
    config.data.update(dict(class_names=("walk", "run", "sit"), patch_seconds_choices=(0.4, 0.5)))
    config.model.update(dict(text_dim=24, semantic_dim=24, d_model_fused=16, num_semantic_temporal_layers=1,
                             num_fusion_queries=2, num_pool_queries=2, label_bank_num_queries=2,
                             label_bank_num_heads=2, channel_text_num_heads=2, feature_extractor="cnn"))
    config.loss.memory_bank_size = 8
    if kind == "k3":
        config.model.num_prototypes = 3
    return config


@pytest.fixture(scope="module")
def stage1():
    return s1.System(stage1_config())


@functools.lru_cache(maxsize=None)
def _stage2_system(kind: str) -> s2.System:
    system = s2.System(stage2_config(kind))
    system.jit_embed = nnx.jit(lambda model, batch: system.embed(model, batch)["fused"])
    return system


@pytest.fixture(scope="module", params=["infonce", "k3"])
def stage2(request):
    return _stage2_system(request.param)


def _batch(system, rng):
    rows = [system.preprocess(r, rng) for r in _records()]
    return {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]}


def test_stage1_preprocess_contract(stage1):
    out = stage1.preprocess(_records(1, t=75)[0], np.random.default_rng(0))
    assert out["patches"].shape == (4, 64, 10) and out["patches_view"].shape == (4, 64, 10)
    np.testing.assert_array_equal(out["patch_mask"], [True, True, True, False])  # 75 steps / 25 per patch
    np.testing.assert_array_equal(out["channel_mask"], np.arange(10) < 9)
    assert not out["patches"][3].any() and not out["patches"][:, :, 9].any()
    assert not (out["mae_mask"] & ~out["patch_mask"]).any() and not (out["channel_drop"] & ~out["channel_mask"]).any()
    np.testing.assert_array_equal(out["channel_ids"][:9], np.arange(9))
    eval_out = stage1.preprocess(_records(1, t=75)[0], None)
    assert "mae_mask" not in eval_out


def test_stage1_step_is_finite_and_updates_the_ema(stage1):
    model = stage1.make_model(nnx.Rngs(0))
    batch = _batch(stage1, np.random.default_rng(1))

    @nnx.jit
    def step(model, batch, key):
        (loss, metrics), grads = nnx.value_and_grad(lambda m: stage1.loss(m, batch, key), has_aux=True)(model)
        return loss, metrics, grads

    loss, metrics, grads = step(model, batch, jax.random.key(0))
    assert np.isfinite(float(loss)) and float(loss) == pytest.approx(2.0, rel=1e-5)  # first step: each term / itself
    assert bool(model.loss_ema_ready[...]) and np.all(np.asarray(model.loss_ema[...]) > 0)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert float(jnp.abs(grads.encoder.mask_token[...]).sum()) > 0  # masked patches reach the mask token
    assert nnx.jit(lambda m, b: stage1.embed(m, b)["fused"])(model, batch).shape == (4, 16)


def test_stage2_preprocess_label_variants(stage2):
    rng = np.random.default_rng(0)
    rows = [stage2.preprocess(r, rng) for r in _records(40)]
    n_t = len(stage2.templates)
    for r in rows:
        assert r["label_variant"] // n_t == r["label"]
    assert 0.6 < np.mean([r["label_variant"] % n_t != 0 for r in rows]) <= 1.0  # text augmentation p = 0.8
    assert all(r["channel_ids"][9] == 0 for r in rows)  # the padded channel points at "[PAD]"
    assert stage2.preprocess(_records(1)[0], None)["label_variant"] % n_t == 0


def test_stage2_step_is_finite_and_fills_the_bank(stage2):
    """K=1: a full value-and-grad step; K=3: the loss alone (one compile each keeps the module fast)."""
    model = stage2.make_model(nnx.Rngs(0))
    batch = _batch(stage2, np.random.default_rng(2))
    with_grad = stage2.sizes.num_prototypes == 1

    @nnx.jit
    def step(model, batch, key):
        if not with_grad:
            return stage2.loss(model, batch, key)[0], None
        (loss, _), grads = nnx.value_and_grad(lambda m: stage2.loss(m, batch, key), has_aux=True)(model)
        return loss, grads

    loss, grads = step(model, batch, jax.random.key(0))
    assert np.isfinite(float(loss))
    if with_grad:
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(nnx.state(grads, nnx.Param)))
    assert int(model.memory_bank.filled[...]) == 4
    loss2, _ = step(model, batch, jax.random.key(0))  # the queue now adds negatives: the loss changes
    assert float(loss2) != float(loss)
    model.eval()
    emb = stage2.jit_embed(model, batch)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(emb), axis=-1), 1.0, atol=1e-5)
    assert stage2.label_embeddings(model).shape == (3, stage2.sizes.num_prototypes, 24)


def test_stage2_padding_has_no_influence():
    """Changing values in padded patches / channels leaves the eval embedding unchanged (masks everywhere)."""
    stage2 = _stage2_system("infonce")
    model = stage2.make_model(nnx.Rngs(1))
    model.eval()
    batch = dict(_batch(stage2, np.random.default_rng(3)))
    pm, cm = np.asarray(batch["patch_mask"]), np.asarray(batch["channel_mask"])
    noisy = np.asarray(batch["patches"]).copy()
    pad = ~(pm[:, :, None, None] & cm[:, None, None, :])
    noisy[np.broadcast_to(pad, noisy.shape)] = 7.0
    ids = np.asarray(batch["channel_ids"]).copy()
    ids[:, 9] = 3  # a different description for the padded channel
    a = stage2.jit_embed(model, batch)
    b = stage2.jit_embed(model, dict(batch, patches=jnp.asarray(noisy), channel_ids=jnp.asarray(ids)))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
