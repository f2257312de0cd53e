"""Exact resume: a run killed with SIGKILL after a checkpoint and restarted with the same command ends bit-identical
to an uninterrupted run. Also: a workdir checkpoint from an incompatible config is refused with a clear error."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from data_builders import synthetic_egomotion

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 24


def command(workdir, data_dir, *extra):
    return [sys.executable, "-m", "imujax.main", "--config=configs/evi_mae.py:demo", f"--workdir={workdir}",
            "--config.data.name=synthetic_egomotion/tiny", f"--config.data.data_dir={data_dir}",
            "--config.data.auto_build=False", "--config.batch_size=8", f"--config.total_steps={TOTAL_STEPS}",
            "--config.checkpoint.every_steps=2", "--config.log_every_steps=1", "--config.eval_every_steps=0",
            "--config.eval.retrieval=False", "--config.eval.linear_probe=False",
            "--config.model.imu_depth=1", "--config.model.video_depth=1", "--config.model.decoder_depth=1",
            *extra]


def env():
    return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")


def final_params(workdir):
    restored = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(TOTAL_STEPS), "state"))
    return restored["params"]


def committed_steps(workdir):
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())  # orbax renames only finished saves


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("data"))
    synthetic_egomotion.build(directory, "tiny")
    return directory


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    subprocess.run(command(workdir, data_dir), cwd=REPO, env=env(), check=True, capture_output=True)
    return workdir


def test_sigkill_then_resume_is_bit_identical(tmp_path, data_dir, uninterrupted):
    workdir = str(tmp_path / "killed")
    proc = subprocess.Popen(command(workdir, data_dir), cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not committed_steps(workdir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps_at_kill = committed_steps(workdir)
    assert steps_at_kill and max(steps_at_kill) < TOTAL_STEPS, f"kill came too late: {steps_at_kill}"

    resumed = subprocess.run(command(workdir, data_dir), cwd=REPO, env=env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first_logged = [line for line in resumed.stdout.splitlines() if line.startswith("step ")][0]
    assert int(first_logged.split()[1].split("/")[0]) == max(steps_at_kill) + 1  # it resumed, not restarted

    import jax
    a, b = final_params(uninterrupted), final_params(workdir)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 10
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_incompatible_checkpoint_is_refused(data_dir, uninterrupted):
    result = subprocess.run(command(uninterrupted, data_dir, "--config.model.imu_dim=32"), cwd=REPO, env=env(),
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "incompatible config" in result.stderr and "model.imu_dim" in result.stderr
    assert "checkpoint has 64, config has 32" in result.stderr
