"""Multi-dataset training (config.data.mixture): the mixed grain pipeline is host-invariant and resumes exactly, the
TSFM transforms map each dataset's records with that dataset's channels and patch length, and the train step reports
per-dataset metrics; one tiny TSFM Stage-1 run on synthetic + the real sp_sw_har sample writes them to metrics.jsonl
and resumes from its checkpoint (grain iterator of the mixture included)."""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import tsfm_stage1, tsfm_stage2
from imujax import input_pipeline, mixture, run_metrics, train
from imujax.systems import tsfm_stage1 as s1
from imujax.systems import tsfm_stage2 as s2
from tests import run_helpers


def _source(n: int, tag: str, channels: int):
    return [{"imu": np.full((10, channels), i, np.float32), "label": i % 3, "id": f"{tag}{i}".encode()}
            for i in range(n)]


def _preprocess(record, rng):
    noise = 0.0 if rng is None else rng.normal()
    return {"x": np.float32(record["imu"].sum() + noise), "label": np.int32(record["label"])}


def _mixture():
    return input_pipeline.Mixture([_source(11, "a", 3), _source(40, "b", 5)], ("a/x", "b/y"), temperature=0.5)


def _batches(process_index, process_count, steps, state=None):
    it = iter(input_pipeline.train_dataset(_mixture(), _preprocess, global_batch=8, seed=3, worker_count=0,
                                           process_index=process_index, process_count=process_count))
    if state is not None:
        it.set_state(state)
    return [next(it) for _ in range(steps)], it


def test_mixed_pipeline_is_host_invariant():
    one, _ = _batches(0, 1, 6)
    host0, _ = _batches(0, 2, 6)
    host1, _ = _batches(1, 2, 6)
    for full, a, b in zip(one, host0, host1):
        for key in ("x", "label", "id", "dataset_index"):
            np.testing.assert_array_equal(full[key], np.concatenate([a[key], b[key]]))
    ids = np.concatenate([b["id"] for b in one])
    index = np.concatenate([b["dataset_index"] for b in one])
    assert all(i.decode()[0] == "ab"[d] for i, d in zip(ids, index))  # the tag matches the source
    assert set(index.tolist()) == {0, 1}


def test_mixed_iterator_state_restores_exactly():
    _, it = _batches(0, 1, 3)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]
    resumed, _ = _batches(0, 1, 4, state=state)
    for want, got in zip(expected, resumed):
        for key in want:
            np.testing.assert_array_equal(want[key], got[key])


def test_mixture_config_checks(tmp_path):
    config = tsfm_stage1.get_config("demo")
    assert mixture.dataset_names(config) == ("synthetic_egomotion/default", "sp_sw_har/default")
    assert mixture.dataset_settings(config, 1).patch_seconds == 0.4
    assert mixture.dataset_settings(config, 0).patch_seconds == 0.5
    config.data.name = "uci_har/default"
    with pytest.raises(ValueError, match="must be one of config.data.mixture"):
        mixture.dataset_names(config)
    config = tsfm_stage1.get_config("demo")
    # the embedded dataset is built first (the tiny config: the default one took 20 s to generate), then uci_har fails
    config.data.name = "synthetic_egomotion/tiny"
    config.data.mixture = ("synthetic_egomotion/tiny", "uci_har/default")
    with pytest.raises(ValueError, match="manual_dirs has no 'uci_har'"):
        input_pipeline.ensure_built(config, str(tmp_path))
    config.data.per_dataset.uci_har = {"no_such_field": 1}
    with pytest.raises(ValueError, match="no_such_field"):
        mixture.dataset_settings(config, 1)
    config = tsfm_stage1.get_config("demo")
    config.data.data_dir = str(tmp_path)
    with pytest.raises(input_pipeline.DatasetNotBuiltError, match="--manual_dir="):
        input_pipeline.open_source(config, str(tmp_path), "train", "sp_sw_har/default")


# -- TSFM transforms on records of two datasets ----------------------------------------------------------------------
A_CHANNELS = ("left_arm/acc_x", "left_arm/acc_y", "left_arm/acc_z")
B_CHANNELS = ("phone/acc_x", "phone/acc_y", "phone/acc_z", "phone/gyro_x", "phone/gyro_y")
TINY = dict(d_model=16, num_heads=2, num_temporal_layers=1, dim_feedforward=32, cnn_channels=(4, 8), max_positions=16)


def _mixture_config(config):
    config.text.update(dict(embedder="hashed", hashed_width=24, cache_dir=""))
    config.data.update(dict(name="a/default", mixture=("a/default", "b/default"), channel_names=A_CHANNELS,
                            patch_seconds=0.5, max_patches=4, max_channels=6, sampling_rate_hz=50.0,
                            rotation_prob=0.0, dataset_description="Dataset A."))
    config.data.per_dataset.b = dict(channel_names=B_CHANNELS, patch_seconds=0.25, sampling_rate_hz=100.0,
                                     dataset_description="Dataset B.")
    config.model.update(TINY)
    return config


def _record(channels, rate, seconds, dataset_index=None, label=0):
    r = {"imu": np.random.default_rng(0).normal(size=(int(rate * seconds), len(channels))).astype(np.float32),
         "imu_rate_hz": np.float32(rate), "channels": list(channels), "label": label}
    return r if dataset_index is None else dict(r, dataset_index=np.int32(dataset_index))


def test_stage1_maps_each_dataset_with_its_channels_and_patch_length():
    config = _mixture_config(tsfm_stage1.get_config())
    config.model.sbert_dim = 24
    system = s1.System(config)
    assert system.channel_sentences.shape[0] == len(A_CHANNELS) + len(B_CHANNELS)
    a = system.preprocess(_record(A_CHANNELS, 50.0, 1.5, 0), np.random.default_rng(0))
    b = system.preprocess(_record(B_CHANNELS, 100.0, 0.75, 1), np.random.default_rng(0))
    evaluation = system.preprocess(_record(A_CHANNELS, 50.0, 1.5), None)  # no dataset_index: config.data.name
    assert a["patches"].shape == b["patches"].shape == (4, 64, 6)
    np.testing.assert_array_equal(a["patch_mask"], [True, True, True, False])  # 1.5 s / 0.5 s patches
    np.testing.assert_array_equal(b["patch_mask"], [True, True, True, False])  # 0.75 s / 0.25 s patches
    np.testing.assert_array_equal(a["channel_ids"][:3], [0, 1, 2])
    np.testing.assert_array_equal(b["channel_ids"][:5], [3, 4, 5, 6, 7])  # B's own description rows
    np.testing.assert_array_equal(evaluation["channel_ids"][:3], [0, 1, 2])
    # the description rows carry each dataset's description, rate and patch length
    assert not np.allclose(system.channel_sentences[0], system.channel_sentences[3])


def test_stage2_label_table_is_the_union_and_eval_uses_the_eval_dataset():
    config = _mixture_config(tsfm_stage2.get_config())
    config.data.update(dict(class_names=("walk", "run", "sit"), patch_seconds_choices=()))
    config.data.per_dataset.b.class_names = ("sit", "jump")
    config.model.update(dict(text_dim=24, semantic_dim=24, d_model_fused=16, num_semantic_temporal_layers=1,
                             num_fusion_queries=2, num_pool_queries=2, label_bank_num_queries=2,
                             label_bank_num_heads=2, channel_text_num_heads=2, feature_extractor="cnn"))
    config.loss.memory_bank_size = 8
    system = s2.System(config)
    assert system.label_names == ["walk", "run", "sit", "jump"] and system.class_names == ["walk", "run", "sit"]
    n_t = len(system.templates)
    b = system.preprocess(_record(B_CHANNELS, 100.0, 0.75, 1, label=1), None)  # B's "jump"
    assert b["label"] == 1 and b["label_variant"] == 3 * n_t
    b = system.preprocess(_record(B_CHANNELS, 100.0, 0.75, 1, label=0), None)  # B's "sit" is the shared row 2
    assert b["label_variant"] == 2 * n_t
    np.testing.assert_array_equal(b["channel_ids"][:6], [4, 5, 6, 7, 8, 0])  # row 0: [PAD]
    model = system.make_model(nnx.Rngs(0))
    assert system.label_embeddings(model).shape[0] == 3


# -- per-dataset metrics in the train step -----------------------------------------------------------------------------
class _ToySystem:
    def make_model(self, rngs):
        return nnx.Linear(2, 1, rngs=rngs)

    def loss(self, model, batch, rng):
        rows = jnp.square(model(batch["x"])[:, 0] - batch["y"])
        out = {"loss": rows.mean(), run_metrics.PER_EXAMPLE: {"loss": rows}}
        if "dataset_index" in batch:  # a system's own per-dataset values, e.g. ratios of sums
            out[run_metrics.PER_DATASET] = {"half": run_metrics.segment_ratio(rows, 2 * jnp.ones_like(rows),
                                                                          batch["dataset_index"], 3)}
        return rows.mean(), out


def test_train_step_reports_per_dataset_loss_and_counts():
    system = _ToySystem()
    tx = optax.sgd(0.0)
    graphdef, params, other = nnx.split(system.make_model(nnx.Rngs(0)), nnx.Param, ...)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "other": other, "opt_state": tx.init(params)}
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    batch = {"x": x, "y": np.zeros(6, np.float32), "dataset_index": np.array([0, 0, 1, 0, 1, 1], np.int32)}
    step = jax.jit(train.make_train_step(system, graphdef, tx, 0, ("syn", "real", "absent")))
    _, out = step(state, batch)
    scalars = run_metrics.drop_absent(run_metrics.to_host(out), ("syn", "real", "absent"))
    rows = np.square(np.asarray(nnx.merge(graphdef, params, other)(jnp.asarray(x)))[:, 0])
    assert scalars["samples/syn"] == 3 and scalars["samples/real"] == 3 and scalars["samples/absent"] == 0
    assert scalars["loss/syn"] == pytest.approx(rows[[0, 1, 3]].mean(), rel=1e-5)
    assert scalars["loss/real"] == pytest.approx(rows[[2, 4, 5]].mean(), rel=1e-5)
    assert scalars["half/real"] == pytest.approx(rows[[2, 4, 5]].mean() / 2, rel=1e-5)
    assert "loss/absent" not in scalars and "half/absent" not in scalars
    assert not {"per_example", "per_dataset"} & set(scalars)
    # without a mixture the per-example values are dropped and nothing per-dataset is added
    _, plain = jax.jit(train.make_train_step(system, graphdef, tx, 0))(state, {k: batch[k] for k in ("x", "y")})
    assert set(plain) == {"loss", "grad_norm"}


# -- end to end: tiny Stage-1 run on synthetic/tiny + the real sp_sw_har sample ----------------------------------------
# The real sample pack beside the repository (the config's default is $IMUJAX_DATA_DIR/sp_sw_har).
SP_SW_HAR_SAMPLE = os.path.join(run_helpers.REPO, "..", "shared", "data", "sp_sw_har")


@pytest.mark.skipif(not os.path.isdir(SP_SW_HAR_SAMPLE), reason="shared/data/sp_sw_har not present")
def test_stage1_mixture_run_logs_per_dataset_metrics_and_resumes(tmp_path, tiny_data_dir):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.symlink(os.path.join(tiny_data_dir, "synthetic_egomotion"), data_dir / "synthetic_egomotion")
    workdir = str(tmp_path / "run")

    def command(total_steps):
        tiny = dict(TINY, max_positions=64)
        return [sys.executable, "-m", "imujax.main", "--config=configs/tsfm_stage1.py:demo", f"--workdir={workdir}",
                "--config.data.name=synthetic_egomotion/tiny",
                "--config.data.mixture=('synthetic_egomotion/tiny','sp_sw_har/default')",
                f"--config.data.data_dir={data_dir}", f"--config.data.manual_dirs.sp_sw_har={SP_SW_HAR_SAMPLE}",
                "--config.batch_size=8", f"--config.total_steps={total_steps}",
                "--config.checkpoint.every_steps=2", "--config.log_every_steps=1", "--config.eval.linear_probe=False",
                "--config.figures=False", "--config.text.embedder=hashed", "--config.text.hashed_width=24",
                "--config.model.sbert_dim=24", "--config.model.dropout=0.0",
                *[f"--config.model.{k}={v}" for k, v in tiny.items()]]

    result = run_helpers.run(command(2), env=run_helpers.env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.isdir(data_dir / "sp_sw_har")  # built on first use from config.data.manual_dirs
    result = run_helpers.run(command(3), env=run_helpers.env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_helpers.logged_steps(result.stdout) == [3]  # resumed from step 2 (mixture iterator restored)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if '"loss"' in line]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["samples/synthetic_egomotion"] + r["samples/sp_sw_har"] == 8
        for name in ("synthetic_egomotion", "sp_sw_har"):
            if r[f"samples/{name}"]:
                assert np.isfinite(r[f"loss/{name}"]) and np.isfinite(r[f"mae/{name}"])
    assert any(r["samples/sp_sw_har"] for r in rows) and any(r["samples/synthetic_egomotion"] for r in rows)


def test_stage2_end_of_run_protocol_reports_zero_shot_and_10pct(tiny_data_dir, tmp_path):
    """system.evaluate (called by the Evaluator at the end of a run): closed-set zero-shot + chance, 10% protocol."""
    config = tsfm_stage2.get_config()
    config.text.update(dict(embedder="hashed", hashed_width=24, cache_dir=""))
    config.data.update(dict(name="synthetic_egomotion/tiny", data_dir=tiny_data_dir, patch_seconds=0.5,
                            max_patches=4, max_channels=30))
    config.model.update(dict(TINY, text_dim=24, semantic_dim=24, d_model_fused=16, num_semantic_temporal_layers=1,
                             num_fusion_queries=2, num_pool_queries=2, label_bank_num_queries=2,
                             label_bank_num_heads=2, channel_text_num_heads=2, feature_extractor="cnn", dropout=0.0))
    config.loss.memory_bank_size = 8
    system = s2.System(config)
    graphdef, params, other = nnx.split(system.make_model(nnx.Rngs(0)), nnx.Param, ...)
    source = input_pipeline.open_source(config, str(tmp_path), config.data.eval_split)
    out = system.evaluate(graphdef, {"params": params, "other": other}, source)
    assert out["zs_closed/chance_acc"] == pytest.approx(1 / 8)
    assert 0.0 <= out["zs_closed/macro_f1"] <= 1.0 and 0.0 <= out["supervised_10pct/acc"] <= 1.0
    assert 1 <= out["supervised_10pct/train_examples"] <= 8  # <= 1 per class (max(1, int(0.1 * 12) // 8))
    config.eval.zero_shot = False
    assert system.evaluate(graphdef, {"params": params, "other": other}, source) == {}
