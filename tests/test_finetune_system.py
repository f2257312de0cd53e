"""EVI-MAE fine-tune system: targets, losses against numpy references, one train step of each head, the x100 head
learning-rate group, and the fine-tune / LOSO configs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from flax import nnx

import data_builders.synthetic_egomotion as se
from configs import evi_mae_finetune, revalexo_loso
from imujax import train
from imujax.systems import evi_mae_finetune as ft

TINY_MODEL = dict(imu_dim=32, imu_depth=1, imu_heads=2, imu_time=64, imu_freq=32, video_dim=32, video_depth=1,
                  video_heads=2, num_frames=4, img_size=32, graph_hidden=16)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("egomotion"))
    se.build(data_dir, "tiny")
    source = tfds.data_source("synthetic_egomotion/tiny", data_dir=data_dir, split="train")
    return [source[i] for i in range(4)]


def _config(variant: str, module=evi_mae_finetune):
    config = module.get_config(variant)
    config.model.update(TINY_MODEL)
    config.data.update(dict(frame_stride=1, n_fft=64, win_length=16))  # 64 x 32 spectrograms
    return config


def _batch(system, records, train=True):
    rng = np.random.default_rng(0)
    items = [system.preprocess(r, rng if train else None) for r in records]
    return {k: jnp.asarray(np.stack([it[k] for it in items])) for k in items[0]}


def test_smoothed_targets_match_the_evi_mae_dataloader_rule():
    np.testing.assert_allclose(ft.smoothed_multi_hot(np.array([1, 3]), 4, 0.1), [0.025, 0.9, 0.025, 0.9])
    np.testing.assert_allclose(ft.smoothed_multi_hot(np.array([], int), 3, 0.0), [0, 0, 0])
    with pytest.raises(ValueError, match="'labels' has shape"):
        ft.record_positives({"labels": np.zeros(3), "id": "x"}, 4)


def _bce_numpy(logits, targets):
    x, z = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
    return np.mean(np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x))))


def _ce_numpy(logits, labels, smoothing):
    x = np.asarray(logits, np.float64)
    c = x.shape[-1]
    target = np.eye(c)[labels] * (1 - smoothing) + smoothing / c
    logp = x - x.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    return np.mean(-(target * logp).sum(-1))


def _loss_and_logits(system, model, batch, key):
    """Loss and the logits it was computed from (same dropout key), in one compiled call."""
    return nnx.jit(lambda m, b, k: (system.loss(m, b, k)[0], system.logits(m, b, k)))(model, batch, key)


def _one_step(system, config, batch, multipliers):
    model = system.make_model(nnx.Rngs(0))
    graphdef, params, other = nnx.split(model, nnx.Param, ...)
    opt = config.optimizer
    if not multipliers:
        opt.lr_multipliers = {}
    tx = train.make_optimizer(opt, optax.constant_schedule(opt.learning_rate))
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "other": other, "opt_state": tx.init(params)}
    new_state, step_metrics = jax.jit(train.make_train_step(system, graphdef, tx, seed=0))(state, batch)
    return state, new_state, step_metrics


def test_evimaeft_bce_step_and_head_lr_multiplier(records):
    config = _config("")
    config.finetune.num_classes = 8  # synthetic labels, BCE recipe
    system = ft.System(config)
    batch = _batch(system, records)
    np.testing.assert_allclose(np.asarray(batch["targets"]).sum(1), 0.9 + 7 * 0.1 / 8, rtol=1e-6)

    model = system.make_model(nnx.Rngs(1))
    loss, logits = _loss_and_logits(system, model, batch, jax.random.key(3))
    assert float(loss) == pytest.approx(_bce_numpy(logits, batch["targets"]), rel=1e-5)

    before, after, m = _one_step(system, config, batch, multipliers=True)
    assert np.isfinite(float(m["loss"])) and int(after["step"]) == 1
    assert not np.allclose(after["params"]["mlp_head"][1]["kernel"][...], before["params"]["mlp_head"][1]["kernel"][...])

    # The multiplier transform on the real parameter tree: head updates x100, everything else unchanged.
    params = before["params"]
    opt = config.optimizer
    scaled = train.make_optimizer(opt, optax.constant_schedule(opt.learning_rate))
    without = opt.copy_and_resolve_references()
    without.lr_multipliers = {}
    plain = train.make_optimizer(without, optax.constant_schedule(opt.learning_rate))
    grads = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)), params)
    u_plain, _ = plain.update(grads, plain.init(params), params)
    u_scaled, _ = scaled.update(grads, scaled.init(params), params)
    flat_plain = dict(jax.tree_util.tree_leaves_with_path(u_plain))
    for path, value in jax.tree_util.tree_leaves_with_path(u_scaled):
        factor = 100.0 if "mlp_head" in jax.tree_util.keystr(path) else 1.0
        np.testing.assert_allclose(np.asarray(value), factor * np.asarray(flat_plain[path]), rtol=1e-6)
    assert any("mlp_head" in jax.tree_util.keystr(p) for p in flat_plain)

    model.eval()
    emb = nnx.jit(system.embed)(model, batch)
    assert emb["fused"].shape == (4, 32 + 16) and emb["logits"].shape == (4, 8)


def test_revalexo_fusion_step_on_synthetic_demo(records):
    config = _config("demo", revalexo_loso)
    config.finetune.horizons = (0.0, 0.5)  # two heads on the synthetic single label
    system = ft.System(config)
    batch = _batch(system, records)
    assert batch["imu"].shape == (4, 12, 32, 64) and batch["labels"].shape == (4, 2)
    model = system.make_model(nnx.Rngs(0))
    loss, logits = _loss_and_logits(system, model, batch, jax.random.key(5))
    logits = np.asarray(logits)  # [H, B, C]
    reference = np.mean([_ce_numpy(logits[h], np.asarray(batch["labels"][:, h]), 0.1) for h in range(2)])
    assert float(loss) == pytest.approx(reference, rel=1e-5)
    _, new_state, step_metrics = _one_step(system, config, batch, multipliers=False)
    assert np.isfinite(float(step_metrics["loss"])) and int(new_state["step"]) == 1
    eval_batch = _batch(system, records, train=False)
    model.eval()
    emb = nnx.jit(system.embed)(model, eval_batch)
    assert emb["fused"].shape == (4, 64) and emb["logits"].shape == (4, 2, 8)


def test_configs_reproduce_the_upstream_recipes():
    cmu = evi_mae_finetune.get_config()
    assert (cmu.optimizer.learning_rate, cmu.optimizer.b1, cmu.optimizer.weight_decay) == (5e-5, 0.95, 5e-7)
    assert dict(cmu.optimizer.lr_multipliers) == {"mlp_head": 100.0}
    assert cmu.optimizer.milestones_epochs[:3] == (60, 120, 180) and cmu.optimizer.gamma == 0.5
    assert (cmu.batch_size, cmu.num_epochs, cmu.finetune.loss, cmu.finetune.label_smoothing) == (16, 200, "bce", 0.1)
    wear = evi_mae_finetune.get_config("wear")
    assert (wear.finetune.num_classes, wear.data.imu_mean) == (18, -51.17)
    fold = revalexo_loso.get_config("Subject05")
    train_subjects = fold.data.train_split.split("+")
    assert len(train_subjects) == 12 and "Subject05" not in train_subjects and fold.data.eval_split == "Subject05"
    assert (fold.optimizer.name, fold.optimizer.learning_rate, fold.optimizer.weight_decay) == ("adamw", 5e-5, 0.05)
    assert fold.finetune.horizons == (0.0, 0.1, 0.2, 0.3, 0.5, 1.0) and fold.batch_size == 8
    with pytest.raises(ValueError, match="unknown variant"):
        revalexo_loso.get_config("Subject04")
