"""Running `python -m imujax.main` in subprocesses for end-to-end tests (tiny EVI-MAE on the tiny synthetic data)."""

import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 24
COMPILATION_CACHE_DIR = None  # set for the test run by conftest.shared_compilation_cache


def train_command(workdir, data_dir, *extra, total_steps=TOTAL_STEPS, figures=False):
    return [sys.executable, "-m", "imujax.main", "--config=configs/evi_mae.py:demo", f"--workdir={workdir}",
            "--config.data.name=synthetic_egomotion/tiny", f"--config.data.data_dir={data_dir}",
            "--config.data.auto_build=False", "--config.batch_size=8", f"--config.total_steps={total_steps}",
            "--config.checkpoint.every_steps=2", "--config.log_every_steps=1", "--config.eval_every_steps=0",
            "--config.eval.retrieval=False", "--config.eval.linear_probe=False",
            "--config.model.imu_depth=1", "--config.model.video_depth=1", "--config.model.decoder_depth=1",
            f"--config.figures={figures}", *extra]


TINY_FINETUNE_MODEL = dict(imu_dim=32, imu_depth=1, imu_heads=2, imu_time=64, imu_freq=32, video_dim=32,
                           video_depth=1, video_heads=2, num_frames=4, img_size=32, graph_hidden=16)


def finetune_command(workdir, data_dir, *extra, total_steps=12, horizons=(0.0, 0.5), mode="train"):
    """Tiny RevalExo multi-horizon fine-tune (configs/revalexo_loso.py:demo) on the tiny synthetic data."""
    return [sys.executable, "-m", "imujax.main", "--config=configs/revalexo_loso.py:demo", f"--workdir={workdir}",
            f"--mode={mode}", "--config.data.name=synthetic_egomotion/tiny", f"--config.data.data_dir={data_dir}",
            "--config.data.auto_build=False", "--config.batch_size=8", f"--config.total_steps={total_steps}",
            f"--config.finetune.horizons={tuple(horizons)}", "--config.optimizer.learning_rate=3e-3",
            *[f"--config.model.{k}={v}" for k, v in TINY_FINETUNE_MODEL.items()], *extra]


def env(devices: int = 1, **extra):
    """The test process's environment for a subprocess with ``devices`` fake CPU devices (other XLA flags kept),
    sharing the run's persistent compilation cache. Every compile is cached (no minimum compile time); a size limit
    turns on JAX's file lock around cache reads and writes (the `filelock` package, in the test extra), so children
    never read a half-written entry."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    cache = {} if COMPILATION_CACHE_DIR is None else dict(
        JAX_COMPILATION_CACHE_DIR=COMPILATION_CACHE_DIR, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1", JAX_COMPILATION_CACHE_MAX_SIZE=str(4 << 30))
    return dict(os.environ, XLA_FLAGS=" ".join([f"--xla_force_host_platform_device_count={devices}", *flags]),
                JAX_PLATFORMS="cpu", **cache, **extra)


def run(cmd, **kwargs):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, **kwargs)


def committed_steps(workdir):
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())  # orbax renames only finished saves


def final_params(workdir, step=TOTAL_STEPS):
    import jax
    import orbax.checkpoint as ocp
    restored = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
    return [np.asarray(x) for x in jax.tree.leaves(restored["params"])]


def wait_for_checkpoint(proc, workdir, timeout=300):
    """Poll until `proc` has committed its first checkpoint in `workdir` (or exited, or `timeout` s passed)."""
    deadline = time.time() + timeout
    while not committed_steps(workdir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert committed_steps(workdir), "no checkpoint was written"


def logged_steps(stdout: str) -> list[int]:
    return [int(line.split()[1].split("/")[0]) for line in stdout.splitlines() if line.startswith("step ")]


def assert_same_params(workdir_a, workdir_b, step=TOTAL_STEPS):
    a, b = final_params(workdir_a, step), final_params(workdir_b, step)
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
