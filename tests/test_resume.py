"""Exact resume: a run killed with SIGKILL after a checkpoint and restarted with the same command ends bit-identical
to an uninterrupted run. A workdir checkpoint from an incompatible config is refused with a clear error."""

import signal
import subprocess
import time

from tests import run_helpers as rh


def test_sigkill_then_resume_is_bit_identical(tmp_path, tiny_data_dir, uninterrupted_run):
    workdir = str(tmp_path / "killed")
    cmd = rh.train_command(workdir, tiny_data_dir)
    proc = subprocess.Popen(cmd, cwd=rh.REPO, env=rh.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not rh.committed_steps(workdir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps_at_kill = rh.committed_steps(workdir)
    assert steps_at_kill and max(steps_at_kill) < rh.TOTAL_STEPS, f"kill came too late: {steps_at_kill}"

    resumed = rh.run(cmd, env=rh.env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rh.logged_steps(resumed.stdout)[0] == max(steps_at_kill) + 1  # it resumed, it did not restart
    rh.assert_same_params(uninterrupted_run, workdir)


def test_incompatible_checkpoint_is_refused(tiny_data_dir, uninterrupted_run):
    result = rh.run(rh.train_command(uninterrupted_run, tiny_data_dir, "--config.model.imu_dim=32"), env=rh.env())
    assert result.returncode != 0
    assert "incompatible config" in result.stderr and "model.imu_dim" in result.stderr
    assert "checkpoint has 64, config has 32" in result.stderr


def test_run_writes_metrics_figures_and_tensorboard(uninterrupted_run):
    import json
    import os
    with open(os.path.join(uninterrupted_run, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, rh.TOTAL_STEPS + 1))
    assert {"loss", "mae_imu", "mae_video", "contrast", "graph", "lr"} <= set(records[-1])
    assert "samples_per_s" in records[-1] and records[-1]["samples_per_s"] > 0
    figures = set(os.listdir(os.path.join(uninterrupted_run, "figures")))
    assert {"curves.png", "reconstruction_imu.png", "reconstruction_video.png"} <= figures
    events = os.listdir(os.path.join(uninterrupted_run, "tensorboard"))
    assert any(name.startswith("events.out.tfevents") for name in events)
