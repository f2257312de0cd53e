"""Preemption and faults: SIGTERM saves and exits cleanly, a corrupted newest checkpoint falls back to the previous
one, two processes train exactly like one, and a dead peer ends the survivor with an error instead of a hang."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests import run_helpers as rh


def wait_for_checkpoint(proc, workdir, timeout=300):
    deadline = time.time() + timeout
    while not rh.committed_steps(workdir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert rh.committed_steps(workdir), "no checkpoint was written"


def test_sigterm_checkpoints_and_exits_then_resumes_exactly(tmp_path, tiny_data_dir, uninterrupted_run):
    workdir = str(tmp_path / "preempted")
    cmd = rh.train_command(workdir, tiny_data_dir)
    proc = subprocess.Popen(cmd, cwd=rh.REPO, env=rh.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(proc, workdir)
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_processes(workdir, data_dir, steps, heartbeat_s=None):
    port = free_port()
    procs = []
    for i in range(2):
        extra = {"IMUJAX_COORDINATOR": f"127.0.0.1:{port}", "IMUJAX_NUM_PROCESSES": "2", "IMUJAX_PROCESS_ID": str(i)}
        if heartbeat_s:
            extra["IMUJAX_HEARTBEAT_TIMEOUT_S"] = str(heartbeat_s)
        procs.append(subprocess.Popen(rh.train_command(workdir, data_dir, total_steps=steps), cwd=rh.REPO,
                                      env=rh.env(devices=2, **extra), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


def test_two_processes_match_one_process(tmp_path, tiny_data_dir):
    steps = 4
    single = str(tmp_path / "single")
    result = rh.run(rh.train_command(single, tiny_data_dir, total_steps=steps), env=rh.env(devices=4))
    assert result.returncode == 0, result.stderr[-3000:]

    multi = str(tmp_path / "multi")
    procs = launch_two_processes(multi, tiny_data_dir, steps)
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    a, b = losses(single), losses(multi)
    assert len(a) == len(b) == steps
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)
    assert os.path.exists(os.path.join(multi, "checkpoints", str(steps), "data", "process_1-of-2.json"))


def test_dead_peer_ends_the_survivor_with_an_error(tmp_path, tiny_data_dir):
    workdir = str(tmp_path / "dead_peer")
    procs = launch_two_processes(workdir, tiny_data_dir, steps=10_000, heartbeat_s=10)
    wait_for_checkpoint(procs[0], workdir)
    procs[1].kill()
    killed_at = time.time()
    try:
        _, err = procs[0].communicate(timeout=120)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        pytest.fail("the surviving process hung for 2 minutes after its peer died")
    assert procs[0].returncode != 0
    assert time.time() - killed_at < 120
    assert err.strip(), "the survivor exited without saying why"


def test_diverging_run_stops_with_step_and_ids_keeping_good_checkpoints(tmp_path, tiny_data_dir):
    workdir = str(tmp_path / "diverged")
    result = rh.run(rh.train_command(workdir, tiny_data_dir, "--config.optimizer.learning_rate=1e12",
                                     "--config.optimizer.warmup_steps=0"), env=rh.env())
    assert result.returncode != 0
    assert "non-finite" in result.stderr and "at step" in result.stderr and "records in that batch" in result.stderr
    import numpy as np
    for step in rh.committed_steps(workdir):  # whatever was saved before the blow-up is finite
        assert all(np.isfinite(p).all() for p in rh.final_params(workdir, step))
