"""The contrastive systems (IMU2CLIP, PRIMUS, RevalExo) end to end on tiny sizes.

Records come from the tiny synthetic egomotion config (built in memory, no TFDS build); one jitted train step per
system runs on the 8 fake CPU devices through the real train-step code of `imujax/train.py`.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from configs import imu2clip as imu2clip_config
from configs import primus as primus_config
from configs import revalexo_contrastive as revalexo_config
from data_builders.synthetic_egomotion import TINY, clips
from imujax import sharding, systems, train
from imujax.models import text_hash

BATCH = 8


# -- tiny configs and records -----------------------------------------------------------------------------------------
def _tiny_video(config) -> None:
    config.model.video.update(dict(dim=16, depth=1, heads=2, patch=16, img_size=32, num_frames=2, pool="mean"))
    config.data.name = "synthetic_egomotion/tiny"


def tiny_configs() -> dict:
    c1 = imu2clip_config.get_config("demo")
    c1.model.imu_encoder.size_embeddings = 24
    _tiny_video(c1)
    c2 = primus_config.get_config("demo")
    c2.model.imu_encoder.size_embeddings = 24
    c2.loss.queue_size = 12
    _tiny_video(c2)
    c3 = revalexo_config.get_config("demo")
    c3.model.imu_encoder.update(dict(conv_kernels=4, lstm_units=16, feature_dim=8))
    c3.model.visual_feature_dim = 8
    _tiny_video(c3)
    return {"imu2clip": c1, "primus": c2, "revalexo_contrastive": c3}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    # One clip per class from two subjects: 16 records in the project schema (video as JPEG bytes).
    return [clips.clip_example(TINY, subject, cls, 0) for subject in (0, 1) for cls in range(8)]


@pytest.fixture(scope="module")
def mesh():
    return sharding.make_mesh(data=-1)


def _batch(system, recs, seed: int) -> dict[str, np.ndarray]:
    rows = [system.preprocess(r, np.random.default_rng(seed + i)) for i, r in enumerate(recs)]
    return {k: np.stack([row[k] for row in rows]) for k in rows[0]}


def _run_steps(name: str, config, recs_per_step: list[list[dict]], mesh):
    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, optax.constant_schedule(config.optimizer.learning_rate))
    with jax.set_mesh(mesh):
        graphdef, state, _ = train.create_state(system, config, tx, mesh)
        step_fn = jax.jit(train.make_train_step(system, graphdef, tx, config.seed))
        states, metrics, batches = [state], [], []
        for i, recs in enumerate(recs_per_step):
            local = _batch(system, recs, seed=100 * i)
            batches.append(local)
            state, m = step_fn(state, sharding.global_batch(local, mesh))
            states.append(state)
            metrics.append(jax.device_get(m))
    return system, graphdef, states, metrics, batches


@pytest.fixture(scope="module")
def runs(records, mesh):
    out = {}
    for name, config in tiny_configs().items():
        plan = [records[:BATCH]]
        if name == "primus":  # a second, different batch: 8 + 8 entries wrap around the 12-slot queue
            plan.append(records[BATCH:2 * BATCH][::-1])
        out[name] = _run_steps(name, config, plan, mesh)
    return out


# -- train steps ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["imu2clip", "primus", "revalexo_contrastive"])
def test_one_step_gives_finite_loss_and_moves_params(runs, name):
    _, _, states, metrics, _ = runs[name]
    assert np.isfinite(metrics[0]["loss"]) and metrics[0]["loss"] > 0
    before = jax.tree.leaves(jax.device_get(states[0]["params"]))
    after = jax.tree.leaves(jax.device_get(states[1]["params"]))
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    assert sum(changed) > len(changed) // 2, f"{name}: only {sum(changed)}/{len(changed)} params changed"


def test_temperatures_are_trained_params(runs):
    _, _, states, _, _ = runs["primus"]
    for key in ("mmcl_temperature", "ssl_temperature"):
        t0, t1 = (float(jax.device_get(s["params"][key][...])) for s in states[:2])
        assert t0 == pytest.approx(0.1) and t1 != t0
    _, _, states, _, _ = runs["imu2clip"]
    assert float(jax.device_get(states[1]["params"]["temperature"][...])) != pytest.approx(0.1, abs=1e-9)


def test_primus_queue_wraps_inside_the_train_state(runs):
    system, graphdef, states, _, batches = runs["primus"]
    models = [nnx.merge(graphdef, s["params"], jax.device_get(s["other"])) for s in states]
    assert [int(m.queue_ptr[...]) for m in models] == [0, 8, 4]  # 8 rows, then 8 more wrap (16 mod 12)
    text = [b["text"] / np.linalg.norm(b["text"], axis=1, keepdims=True) for b in batches]
    q1, q2 = (np.asarray(m.queue["text"][...]) for m in models[1:])
    np.testing.assert_allclose(q1[:8], text[0], atol=1e-6)
    np.testing.assert_array_equal(q1[8:], 0.0)
    # Second batch: rows 0-3 fill slots 8-11, rows 4-7 wrap into slots 0-3; slots 4-7 keep batch 1's rows 4-7.
    np.testing.assert_allclose(q2[8:12], text[1][:4], atol=1e-6)
    np.testing.assert_allclose(q2[0:4], text[1][4:], atol=1e-6)
    np.testing.assert_allclose(q2[4:8], text[0][4:], atol=1e-6)
    # The queue is non-param state: it lives in 'other', so it is checkpointed with the run but never optimised.
    assert "queue" in states[2]["other"] and "queue" not in states[2]["params"]


# -- preprocessing ----------------------------------------------------------------------------------------------------
def test_preprocess_shapes(records):
    configs = tiny_configs()
    record = records[3]
    expected = {
        "imu2clip": {"imu": (6, 1000), "video": (2, 32, 32, 3), "text": (24,), "label": ()},
        "primus": {"imu": (6, 250), "imu_aug": (6, 250), "video": (2, 32, 32, 3), "text": (24,), "label": ()},
        "revalexo_contrastive": {"imu": (120, 30), "video": (2, 32, 32, 3), "label": ()},
    }
    for name, config in configs.items():
        system = systems.make_system(config)
        train_out = system.preprocess(record, np.random.default_rng(0))
        assert {k: v.shape for k, v in train_out.items()} == expected[name], name
        assert all(v.dtype in (np.float32, np.int32) for v in train_out.values()), name
        eval_out = system.preprocess(record, None)
        assert "imu_aug" not in eval_out
        again = system.preprocess(record, None)
        for key in eval_out:  # the eval transform is deterministic
            np.testing.assert_array_equal(eval_out[key], again[key])
        assert int(eval_out["label"]) == record["label"]


def test_imu_window_resamples_band_limited_signal(records):
    # A 3 Hz sine recorded at 100 Hz and resampled to 500 Hz equals the sine on the new grid (away from the edges).
    from imujax.transforms.contrastive_inputs import imu_window

    t = np.arange(200) / 100.0
    record = dict(records[0], imu=np.zeros((200, 30), np.float32))
    names = list(records[0]["channels"])
    record["imu"][:, names.index("head/gyro_y")] = np.sin(2 * np.pi * 3 * t)
    out = imu_window(record, ["head/acc_x", "head/gyro_y"], 500, 1000)
    t_new = np.arange(1000) / 500.0
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_allclose(out[1, 100:900], np.sin(2 * np.pi * 3 * t_new[100:900]), atol=2e-3)
    with pytest.raises(KeyError, match="left_hip/acc_x"):
        imu_window(record, ["left_hip/acc_x"], 500, 1000)


def test_text_hash_is_deterministic_and_word_based():
    a = text_hash.embed_text("A person walking forward", 64)
    np.testing.assert_array_equal(a, text_hash.embed_text(b"a person walking forward!", 64))
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-6)
    same_words = float(a @ text_hash.embed_text("a person walking", 64))
    other = float(a @ text_hash.embed_text("sitting down from standing", 64))
    assert same_words > 0.6 and abs(other) < same_words
