"""Preemption and faults: SIGTERM saves and exits cleanly, a corrupted newest checkpoint falls back to the previous
one, a diverging run stops with a clear error. Two-process faults: test_faults_multiprocess.py."""

import os
import shutil
import signal
import subprocess

from tests import run_helpers as rh


def test_sigterm_checkpoints_and_exits_then_resumes_exactly(tmp_path, tiny_data_dir, uninterrupted_run):
    workdir = str(tmp_path / "preempted")
    cmd = rh.train_command(workdir, tiny_data_dir)
    proc = subprocess.Popen(cmd, cwd=rh.REPO, env=rh.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rh.wait_for_checkpoint(proc, workdir)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    stopped_at = rh.logged_steps(stdout)[-1]
    assert stopped_at < rh.TOTAL_STEPS
    assert max(rh.committed_steps(workdir)) == stopped_at  # saved at the step boundary where it stopped

    resumed = rh.run(cmd, env=rh.env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rh.logged_steps(resumed.stdout)[0] == stopped_at + 1
    rh.assert_same_params(uninterrupted_run, workdir)


def test_corrupted_newest_checkpoint_falls_back_to_previous(tmp_path, tiny_data_dir, uninterrupted_run):
    workdir = str(tmp_path / "corrupted")
    shutil.copytree(uninterrupted_run, workdir)
    newest = os.path.join(workdir, "checkpoints", str(rh.TOTAL_STEPS), "state")
    for root, _, files in os.walk(newest):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)

    result = rh.run(rh.train_command(workdir, tiny_data_dir), env=rh.env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoint step {rh.TOTAL_STEPS} is corrupt or truncated" in result.stderr
    assert rh.logged_steps(result.stdout)[0] == rh.TOTAL_STEPS - 1  # resumed from the previous checkpoint (step 22)
    assert any(d.startswith(f"corrupt-{rh.TOTAL_STEPS}-") for d in os.listdir(os.path.join(workdir, "checkpoints")))
    rh.assert_same_params(uninterrupted_run, workdir)


def test_diverging_run_stops_with_step_and_ids_keeping_good_checkpoints(tmp_path, tiny_data_dir):
    workdir = str(tmp_path / "diverged")
    result = rh.run(rh.train_command(workdir, tiny_data_dir, "--config.optimizer.learning_rate=1e12",
                                     "--config.optimizer.warmup_steps=0"), env=rh.env())
    assert result.returncode != 0
    assert "non-finite" in result.stderr and "at step" in result.stderr and "records in that batch" in result.stderr
    import numpy as np
    for step in rh.committed_steps(workdir):  # whatever was saved before the blow-up is finite
        assert all(np.isfinite(p).all() for p in rh.final_params(workdir, step))
