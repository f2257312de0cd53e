"""Fine-tuning evaluation and model selection: classification metrics of the logits per prediction horizon, the best
checkpoint (RevalExo: weighted F1 at horizon 0 on the eval split) kept across a metric that goes down then up, exact
resume of the best-so-far, `--mode=eval` on the selected checkpoint and the LOSO report built from it."""

import json
import os
import signal
import subprocess
import time

import jax.numpy as jnp
import numpy as np
import pytest

from imujax import checkpointing
from imujax.eval import classification, loso
from tests import run_helpers as rh

TOTAL = 12
HORIZONS = ("h0s", "h0.5s")
RUN_FLAGS = ("--config.eval_every_steps=1", "--config.checkpoint.every_steps=1", "--config.checkpoint.keep=50",
             "--config.log_every_steps=1")


# -- metrics ----------------------------------------------------------------------------------------------------------


def test_classification_metrics_per_horizon_mean_and_unlabelled_rows():
    spec = classification.ClassificationSpec(3, labels="labels", horizon_names=classification.names_for((0.0, 0.5)),
                                             transitions="transitions")
    assert spec.horizon_names == HORIZONS and spec.selection_key == "eval/weighted_f1_h0s"
    predicted = np.array([[0, 0], [1, 2], [2, 2], [0, 1]])
    logits = np.eye(3)[predicted] * 5.0                                      # [N, H, C]
    labels = np.array([[0, 0], [1, 1], [2, 2], [0, -1]])                     # -1: no label at that horizon
    out = classification.classification_metrics(spec, {"logits": logits, "labels": labels,
                                                       "transitions": np.zeros((4, 2), bool)})
    s = out.scalars
    assert s["accuracy_h0s"] == s["weighted_f1_h0s"] == s["macro_f1_h0s"] == 1.0
    # h0.5s on the 3 labelled rows: true 0,1,2 predicted 0,2,2 -> F1 per class (1, 0, 2/3), support 1 each
    assert s["accuracy_h0.5s"] == pytest.approx(2 / 3)
    assert s["weighted_f1_h0.5s"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert s["weighted_f1_mean"] == pytest.approx((1 + (1 + 2 / 3) / 3) / 2)
    np.testing.assert_array_equal(out.confusions["h0.5s"], [[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    single = classification.ClassificationSpec(3, multi_hot="targets", selection="map")
    out = classification.classification_metrics(single, {"logits": logits[:, 0], "label": labels[:, 0],
                                                         "targets": np.eye(3)[labels[:, 0]]})
    assert set(out.scalars) == {"accuracy", "macro_f1", "weighted_f1", "map"} and out.scalars["map"] == 1.0
    with pytest.raises(ValueError, match="not one of"):
        classification.ClassificationSpec(3, selection="loss")


def test_finetune_systems_declare_upstream_selection():
    from configs import evi_mae_finetune, revalexo_loso
    from imujax import evaluate, systems
    fold = revalexo_loso.get_config("Subject05")
    system = systems.make_system(fold)
    spec = system.classification_spec()
    assert spec.horizon_names == ("h0s", "h0.1s", "h0.2s", "h0.3s", "h0.5s", "h1s") and spec.labels == "labels"
    assert evaluate.selection_metric(system, fold) == ("eval/weighted_f1_h0s", "max")
    assert fold.eval_every_epochs == 1 and fold.data.eval_split == "Subject05"  # val = test = held-out subject
    cmu, wear = evi_mae_finetune.get_config(), evi_mae_finetune.get_config("wear")
    assert evaluate.selection_metric(systems.make_system(cmu), cmu) == ("eval/map", "max")
    assert evaluate.selection_metric(systems.make_system(wear), wear) == ("eval/accuracy", "max")
    fold.checkpoint.best_metric = "none"
    assert evaluate.selection_metric(system, fold) is None


# -- BestCheckpointer: down then up, resume ---------------------------------------------------------------------------

# Eval metric per step: down (1 -> 3), then up past the first value (4), then down again.
SEQUENCE = {1: 0.5, 2: 0.3, 3: 0.2, 4: 0.6, 5: 0.4}


def _state(step):
    return {"step": jnp.asarray(step, jnp.int32), "params": {"w": jnp.full((3,), float(step))},
            "other": {"bn": jnp.full((2,), -float(step))}, "opt_state": {"mu": jnp.zeros((3,))}}


def _feed(best, steps, config):
    for step in steps:
        best.update(step, {"eval/weighted_f1_h0s": SEQUENCE[step], "eval/accuracy_h0s": 0.0}, _state(step), config)


def test_best_checkpoint_follows_a_metric_that_goes_down_then_up_and_survives_resume(tmp_path):
    from configs import revalexo_loso
    config = revalexo_loso.get_config("demo")
    metric = ("eval/weighted_f1_h0s", "max")

    reference = checkpointing.BestCheckpointer(str(tmp_path / "reference"), *metric, use_async=False)
    reference.resume(None, 0)
    _feed(reference, [1, 2, 3], config)
    assert (reference.best_step, reference.best_value) == (1, 0.5)     # going down keeps step 1
    _feed(reference, [4, 5], config)
    assert (reference.best_step, reference.best_value) == (4, 0.6)     # back up past it: step 4
    assert reference.manager.all_steps() == [4]                        # only the best is kept
    restored = checkpointing.restore_state(os.path.join(reference.directory, "4"))  # the one restore path
    assert set(restored) == {"step", "params", "other"}                # eval weights only, no optimiser state
    np.testing.assert_array_equal(restored["params"]["w"], [4, 4, 4])
    assert reference.saved_metrics(4)["value"] == 0.6 and reference.saved_metrics(4)["step"] == 4
    reference.close()

    # Interrupted: the run got to step 4 (saving best step 4) but the last regular checkpoint is step 2.
    directory = str(tmp_path / "interrupted")
    first = checkpointing.BestCheckpointer(directory, *metric, use_async=False)
    first.resume(None, 0)
    _feed(first, [1, 2], config)
    record_at_2 = json.loads(json.dumps(first.record()))               # as stored in the step-2 checkpoint
    _feed(first, [3, 4], config)
    assert first.manager.all_steps() == [4]
    first.close()

    resumed = checkpointing.BestCheckpointer(directory, *metric, use_async=False)
    resumed.resume(record_at_2, restored_step=2)
    assert resumed.manager.all_steps() == []                           # step 4 is in the replayed future
    assert (resumed.best_step, resumed.best_value, resumed.eval_step) == (1, 0.5, 2)
    _feed(resumed, [3], config)
    assert resumed.best_step == 1                                      # 0.2 does not beat the restored 0.5
    _feed(resumed, [4, 5], config)
    assert resumed.record() == reference.record() and resumed.manager.all_steps() == [4]
    np.testing.assert_array_equal(checkpointing.restore_state(os.path.join(directory, "4"))["params"]["w"], [4, 4, 4])

    # A regular checkpoint saved by a SIGTERM stop before its eval: the eval is pending on resume.
    pending = dict(resumed.record(), eval_step=4)
    resumed.resume(pending, restored_step=5)
    assert resumed.eval_pending(5) and not resumed.eval_pending(4)
    with pytest.raises(KeyError, match="best_metric"):
        resumed.update(6, {"eval/accuracy": 1.0}, _state(6), config)
    resumed.close()


def test_finetune_report_pools_the_selected_checkpoints_of_each_fold(tmp_path):
    spec = classification.ClassificationSpec(2, labels="labels", horizon_names=("h0s", "h1s"),
                                             transitions="transitions")
    folds = {"A": (np.array([[0, 0], [1, 1], [1, 0]]), np.array([[0, 0], [1, 0], [0, 0]]), 7),
             "B": (np.array([[1, 1], [0, -1]]), np.array([[1, 1], [1, 1]]), 3)}
    workdirs = {}
    for subject, (labels, preds, step) in folds.items():
        workdirs[subject] = str(tmp_path / subject)
        os.makedirs(workdirs[subject])
        transitions = np.zeros_like(labels, bool)
        transitions[0, 1] = True
        result = classification.classification_metrics(
            spec, {"logits": np.eye(2)[preds], "labels": labels, "transitions": transitions})
        classification.save_predictions(os.path.join(workdirs[subject], "eval_best_predictions.npz"), result,
                                        step=np.int64(step))
    report = loso.finetune_report(workdirs, num_classes=2)
    assert [f["selected"] for f in report["folds"]] == [7, 3]
    assert [f["num_test"] for f in report["folds"]] == [3, 1]        # B's row without a h1s label is left out
    # pooled h0s: labels 0,1,1,1 vs predictions 0,1,0,1
    assert report["pooled"]["h0s"]["all"]["accuracy"] == pytest.approx(3 / 4)
    assert report["pooled"]["h1s"]["transition"]["count"] == 2
    np.testing.assert_array_equal(report["confusion"]["h0s"], [[1, 0], [1, 2]])
    paths = loso.write_report(report, str(tmp_path / "report"))
    assert json.load(open(paths["json"]))["protocol"]["selection"] == "test_subject"
    assert open(paths["csv"]).readline().strip()
    with pytest.raises(FileNotFoundError, match="--mode=eval"):
        loso.finetune_report({"C": str(tmp_path)}, num_classes=2)


# -- end to end -------------------------------------------------------------------------------------------------------


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _evals(workdir):
    """{step: eval record} (the last one written for a step)."""
    return {r["step"]: r for r in _records(workdir) if "eval/weighted_f1_h0s" in r}


def _selection_record(workdir, step):
    return checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), use_async=False).saved_selection(step)


def _flat(tree):
    import jax
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory, tiny_data_dir):
    workdir = str(tmp_path_factory.mktemp("finetune"))
    result = rh.run(rh.finetune_command(workdir, tiny_data_dir, *RUN_FLAGS, total_steps=TOTAL), env=rh.env())
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_periodic_eval_logs_per_horizon_f1_and_keeps_the_best_checkpoint(finetune_run):
    evals = _evals(finetune_run)
    assert sorted(evals) == list(range(1, TOTAL + 1))
    for record in evals.values():
        for metric in ("accuracy", "macro_f1", "weighted_f1"):
            for name in HORIZONS + ("mean",):
                assert 0.0 <= record[f"eval/{metric}_{name}"] <= 1.0
        assert record["eval/weighted_f1_mean"] == pytest.approx(
            np.mean([record[f"eval/weighted_f1_{h}"] for h in HORIZONS]))
    values = [evals[s]["eval/weighted_f1_h0s"] for s in range(1, TOTAL + 1)]
    best_step = 1 + int(np.argmax(values))                             # the first step reaching the maximum
    best_dir = os.path.join(finetune_run, checkpointing.BEST_DIR)
    assert sorted(int(d) for d in os.listdir(best_dir) if d.isdigit()) == [best_step]
    assert evals[TOTAL]["best/step"] == best_step and evals[TOTAL]["best/weighted_f1_h0s"] == max(values)
    record = _selection_record(finetune_run, TOTAL)
    assert record == {"metric": "eval/weighted_f1_h0s", "mode": "max", "best_value": max(values),
                      "best_step": best_step, "eval_step": TOTAL}
    # The best checkpoint holds the weights of that step (compared with the regular checkpoint of the same step).
    best = checkpointing.BestCheckpointer(best_dir, "", use_async=False, create=False)
    import orbax.checkpoint as ocp
    regular = ocp.StandardCheckpointer().restore(os.path.join(finetune_run, "checkpoints", str(best_step), "state"))
    kept = ocp.StandardCheckpointer().restore(os.path.join(best_dir, str(best_step), "state"))
    assert set(kept) == {"step", "params", "other"} and int(kept["step"]) == best_step
    for a, b in zip(_flat(kept["params"]), _flat(regular["params"])):
        np.testing.assert_array_equal(a, b)
    assert best.saved_metrics(best_step)["eval"]["eval/weighted_f1_h0.5s"] == evals[best_step]["eval/weighted_f1_h0.5s"]
    best.close()
    figures = os.listdir(os.path.join(finetune_run, "figures"))
    assert {"confusion_h0s.png", "confusion_h0.5s.png"} <= set(figures)
    print(f"\nfine-tune eval weighted F1@h0 per step {np.round(values, 3).tolist()} -> best step {best_step}")


def test_eval_mode_evaluates_the_selected_checkpoint_and_feeds_the_loso_report(finetune_run, tiny_data_dir):
    result = rh.run(rh.finetune_command(finetune_run, tiny_data_dir, *RUN_FLAGS, total_steps=TOTAL, mode="eval"),
                    env=rh.env())
    assert result.returncode == 0, result.stderr[-3000:]
    evals = _evals(finetune_run)
    best_step = evals[TOTAL]["best/step"]
    with open(os.path.join(finetune_run, "eval_best.json")) as f:
        written = json.load(f)
    assert written["checkpoint"] == "best" and written["step"] == best_step
    for key, value in written["metrics"].items():
        assert value == pytest.approx(evals[best_step][key], abs=1e-6), key
    report = loso.finetune_report({"Subject02": finetune_run}, num_classes=8)
    fold = report["folds"][0]
    assert fold["selected"] == best_step and report["protocol"]["horizons"] == list(HORIZONS)
    for h in HORIZONS:
        assert fold["metrics"][h]["all"]["weighted_f1"] == pytest.approx(evals[best_step][f"eval/weighted_f1_{h}"])
    assert report["pooled"]["h0s"]["all"]["count"] == 16                # the tiny test split
    assert "confusion_best_h0s.png" in os.listdir(os.path.join(finetune_run, "figures"))


def test_sigterm_then_resume_keeps_the_best_so_far_exactly(tmp_path, tiny_data_dir, finetune_run):
    workdir = str(tmp_path / "preempted")
    cmd = rh.finetune_command(workdir, tiny_data_dir, *RUN_FLAGS, total_steps=TOTAL)
    proc = subprocess.Popen(cmd, cwd=rh.REPO, env=rh.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not rh.committed_steps(workdir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    stopped_at = max(rh.committed_steps(workdir))
    assert stopped_at < TOTAL, "SIGTERM came too late"
    assert stopped_at not in _evals(workdir)                           # stopped before that step's eval
    assert _selection_record(workdir, stopped_at)["eval_step"] == stopped_at - 1

    resumed = rh.run(cmd, env=rh.env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rh.logged_steps(resumed.stdout)[0] == stopped_at + 1
    expected, got = _evals(finetune_run), _evals(workdir)
    assert sorted(got) == sorted(expected)                             # the pending eval ran on resume
    for step in expected:
        assert got[step] == expected[step], step                       # every eval, best-so-far included
    assert _selection_record(workdir, TOTAL) == _selection_record(finetune_run, TOTAL)
    assert os.listdir(os.path.join(workdir, checkpointing.BEST_DIR)) == \
        os.listdir(os.path.join(finetune_run, checkpointing.BEST_DIR))
    rh.assert_same_params(finetune_run, workdir, step=TOTAL)
