"""Own recordings end to end (issue 19): build -> pretrain -> probe -> fine-tune as four commands on a tiny
real-format folder, on 8 fake devices, with no Python between them; plus the pieces they rest on (own-data configs,
learning alarms, the validation split for model selection, per-recording metrics)."""

import json
import os
import sys

import numpy as np
import pytest

from tests import own_data_fixture, run_helpers

NAME = "imu_video_folder/default"
# EVI-MAE small enough to compile in seconds; 8 frames of 32 px (16 video tokens: one survives the 0.9 masking)
TINY = dict(imu_dim=32, imu_depth=1, imu_heads=2, imu_time=64, imu_freq=32, video_dim=32, video_depth=1,
            video_heads=2, num_frames=8, img_size=32, graph_hidden=16, decoder_depth=1, decoder_dim=16)
TINY_FLAGS = [*(f"--config.model.{k}={v}" for k, v in TINY.items()), "--config.data.n_fft=64",
              "--config.batch_size=8", "--config.figures=False"]


def _main(workdir, config):
    return [sys.executable, "-m", "imujax.main", f"--config={config}", f"--workdir={workdir}"]


def _ok(result):
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Command 1: build the folder with the documented command."""
    root = tmp_path_factory.mktemp("own")
    folder = own_data_fixture.write(str(root / "recordings"))
    data_dir = str(root / "data")
    _ok(run_helpers.run([sys.executable, "-m", "imujax.build_dataset", "data_builders/imu_video_folder",
                         f"--data_dir={data_dir}", f"--manual_dir={folder}"], env=run_helpers.env()))
    return data_dir


def _config(module, data_dir, **model):
    import importlib
    config = importlib.import_module(f"configs.{module}").get_config("own")
    config.data.update(dict(name=NAME, data_dir=data_dir))
    if "imu_time" in config.model:
        config.model.update(TINY)
        config.data.n_fft = 64
    return config


def test_own_configs_read_the_built_dataset(built, tmp_path):
    from imujax import own_data
    evi = own_data.resolve(_config("evi_mae", built), str(tmp_path), overridden=["model.num_frames"])
    # one 6-axis wrist sensor: two 3-axis parts, the clip from the window's frames, measured statistics (cached)
    assert evi.data.imu_channels == own_data_fixture.CHANNELS
    assert (evi.model.imu_channels, evi.model.imu_parts, evi.model.num_frames) == (6, 2, 8)
    stats = json.load(open(os.path.join(own_data.read_facts(evi, str(tmp_path)).directory, own_data.STATS_FILE)))
    (key, value), = stats.items()
    assert "stretched_db_spectrogram" in key and value["std"] > 0 and evi.data.imu_mean == value["mean"]
    tsfm = own_data.resolve(_config("tsfm_stage1", built), str(tmp_path))
    assert tsfm.data.channel_names == own_data_fixture.CHANNELS and tsfm.data.sampling_rate_hz == 50
    assert tsfm.data.mixture == () and tsfm.data.max_patches == 4  # 2 s windows of 0.5 s patches
    ft = own_data.resolve(_config("evi_mae_finetune", built), str(tmp_path))
    assert ft.finetune.num_classes == 2 and ft.checkpoint.select_on == "validation"
    himu = own_data.resolve(_config("himu_mae", built), str(tmp_path))
    assert himu.data.imu_channels == own_data_fixture.CHANNELS[:3] and len(himu.data.spec_mean) == 3
    # a sensor without a complete triad: EVI-MAE says what it takes
    facts = own_data.DatasetFacts(name="x", channels=("a/acc_x", "a/acc_y"), common_channels=("a/acc_x", "a/acc_y"),
                                  rate_hz=50, window=100, class_names=(), video_frames=16, video_fps=8,
                                  description="", directory=str(tmp_path))
    with pytest.raises(own_data.OwnDataError, match="3-axis parts"):
        own_data._evi_mae(_config("evi_mae", built), facts, str(tmp_path))


def test_learning_alarm_names_the_term_once_and_rearms():
    from imujax import alarms
    alarm = alarms.LearningAlarms({"contrast": alarms.info_nce(8), "mae": alarms.NORM_PIX_MAE}, patience_steps=20)
    assert alarm.update(0, {"contrast": np.log(8) * 1.01, "mae": 0.5}) == {}
    assert alarm.update(10, {"contrast": np.log(8), "mae": 0.5}) == {}
    assert alarm.update(20, {"contrast": np.log(8) * 0.99, "mae": 0.5}) == {"alarm/contrast": 20.0}
    assert alarm.update(30, {"contrast": np.log(8), "mae": 0.5}) == {}  # said once
    assert alarm.update(40, {"contrast": 1.0, "mae": 0.5}) == {}  # learning: re-armed
    assert alarm.update(60, {"contrast": np.log(8), "mae": 1.0}) == {}
    assert alarm.update(80, {"contrast": np.log(8), "mae": 1.01}) == {"alarm/contrast": 20.0, "alarm/mae": 20.0}


def test_validation_split_is_carved_from_training_subjects(built, tmp_path):
    from imujax import input_pipeline, systems, validation
    config = _config("evi_mae_finetune", built)
    config.data.eval_split = "test"
    system = systems.make_system(config)
    source = input_pipeline.open_source(config, str(tmp_path), "train")
    train, held = validation.carve(config, system, source)
    subjects = lambda s: {s[i]["subject"] for i in range(len(s))}  # noqa: E731
    assert len(subjects(held)) == 1 and not subjects(held) & subjects(train)
    assert len(train) + len(held) == len(source)
    config.checkpoint.select_on = "eval"  # explicit: the eval split, nothing carved
    assert validation.carve(config, system, source) == (source, None)


def test_per_recording_metrics_pool_logits_of_each_recording():
    from imujax import evaluate
    logits = np.array([[2.0, 0], [-1, 0], [0, 1], [0, 3]])
    ids = np.array([b"train_a_0000", b"train_a_0001", b"train_b_0000", b"train_b_0001"])
    out = evaluate.per_recording_metrics({"logits": logits, "label": np.array([0, 0, 1, 1]), "record_ids": ids},
                                         "logits")
    assert out == {"recording_accuracy": 1.0, "recording_macro_f1": 1.0, "recordings": 2.0}
    mixed = {"logits": logits, "label": np.array([0, 1, 1, 1]), "record_ids": ids}
    assert evaluate.per_recording_metrics(mixed, "logits") == {}  # no single truth per recording


def test_four_commands_end_to_end_on_8_devices(built, tmp_path):
    env = run_helpers.env(devices=8)
    pretrain, finetune = str(tmp_path / "pretrain"), str(tmp_path / "finetune")
    common = [f"--config.data.name={NAME}", f"--config.data.data_dir={built}", *TINY_FLAGS]
    # 2. pretrain (alarms at 2 steps so this short run shows them)
    _ok(run_helpers.run(_main(pretrain, "configs/evi_mae.py:own") + common + [
        "--config.total_steps=4", "--config.log_every_steps=1", "--config.checkpoint.every_steps=4",
        "--config.alarms.patience_steps=2", "--config.eval.retrieval=False", "--config.eval.linear_probe=False"],
        env=env))
    logged = [json.loads(line) for line in open(os.path.join(pretrain, "metrics.jsonl"))]
    assert any(k.startswith("alarm/mae_") for line in logged for k in line)
    # 3. probe the pretrained encoder and a random one: pooled per recording, logistic + MLP
    out = _ok(run_helpers.run(_main(pretrain, "configs/evi_mae.py:own") + common + [
        "--mode=probe", "--config.eval.random_reference=true", "--config.eval.pool_per_recording=true",
        "--config.eval.mlp_probe=true"], env=env))
    report = json.load(open(os.path.join(pretrain, "probe.json")))
    assert set(report["encoders"]) == {"trained", "random"} and "probe trained logistic" in out
    for encoder in report["encoders"].values():
        for kind in ("logistic", "mlp"):
            fold = encoder[kind]["folds"]["split"]
            assert fold["n_test"] == 2 and 0 <= fold["macro_f1"] <= 1  # p4's two recordings
    saved = np.load(os.path.join(pretrain, "embeddings", "trained_test.npz"))
    assert len(saved["features"]) == 6 and set(saved["recordings"]) == {b"p4_walk", b"p4_sit"}  # windows of p4
    assert os.path.exists(os.path.join(pretrain, "figures", "probe_confusion_random_logistic.png"))
    # 4. fine-tune from the pretraining run; model selection on subjects carved from train
    out = _ok(run_helpers.run(_main(finetune, "configs/evi_mae_finetune.py:own") + common + [
        f"--config.init_from={pretrain}", "--config.total_steps=4", "--config.eval_every_steps=2",
        "--config.checkpoint.every_steps=4"], env=env))
    assert "model selection: validation split of subject" in out
    evals = [line for line in map(json.loads, open(os.path.join(finetune, "metrics.jsonl"))) if "val/accuracy" in line]
    assert len(evals) == 2 and all("val/recording_accuracy" in e for e in evals)
    assert os.listdir(os.path.join(finetune, "best_checkpoint"))


def test_probe_without_checkpoint_needs_the_random_reference(built, tmp_path):
    result = run_helpers.run(_main(str(tmp_path), "configs/evi_mae.py:own") + [
        f"--config.data.name={NAME}", f"--config.data.data_dir={built}", *TINY_FLAGS, "--mode=probe"],
        env=run_helpers.env())
    assert result.returncode == 1 and "random_reference" in result.stderr
