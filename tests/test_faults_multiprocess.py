"""Two processes (JAX distributed on one host) train exactly like one, and a dead peer ends the survivor with an
error instead of a hang. A module of its own so pytest-xdist can run it beside test_faults.py."""

import json
import os
import socket
import subprocess
import time

import pytest

from tests import run_helpers as rh


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The step count enters the compiled train step only through the cosine schedule's decay length. With a constant
# schedule (after the same linear warmup) the 4-step runs and the dead-peer run compile the same programs, so the
# dead-peer run loads them from the run's compilation cache instead of compiling them again in both processes.
SCHEDULE = "--config.optimizer.schedule=constant"


def command(workdir, data_dir, steps):
    return rh.train_command(workdir, data_dir, SCHEDULE, total_steps=steps)


def launch_two_processes(workdir, data_dir, steps, heartbeat_s=None):
    port = free_port()
    procs = []
    for i in range(2):
        extra = {"IMUJAX_COORDINATOR": f"127.0.0.1:{port}", "IMUJAX_NUM_PROCESSES": "2", "IMUJAX_PROCESS_ID": str(i)}
        if heartbeat_s:
            extra["IMUJAX_HEARTBEAT_TIMEOUT_S"] = str(heartbeat_s)
        procs.append(subprocess.Popen(command(workdir, data_dir, steps), cwd=rh.REPO,
                                      env=rh.env(devices=2, **extra), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


def test_two_processes_match_one_process(tmp_path, tiny_data_dir):
    steps = 4
    single = str(tmp_path / "single")
    result = rh.run(command(single, tiny_data_dir, steps), env=rh.env(devices=4))
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
    rh.wait_for_checkpoint(procs[0], workdir)
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
