"""Test-wide setup: 8 fake CPU devices so sharding tests run on any laptop or CI box."""
import fcntl
import os
import shutil

# The tests run tiny models, so XLA's compile time, not the compiled code's speed, dominates the suite: LLVM's
# optimisation level 0 compiles the tiny EVI-MAE train step in 10.5 s instead of 17.3 s (the same HLO, the same
# math). Subprocesses get it too (`run_helpers.env`). Benchmarks and real runs keep XLA's default.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


def once_per_run(tmp_path_factory, name, build):
    """``build(directory)`` once per test run, shared by all pytest-xdist workers: the first worker to ask builds it
    under a file lock, the others wait for it. The directory is the parent of the workers' own temp dirs."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    directory, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)
            build(str(directory))
            done.touch()
    return str(directory)


@pytest.fixture(scope="session", autouse=True)
def shared_compilation_cache(tmp_path_factory):
    """One persistent XLA compilation cache for the subprocesses of this run (`run_helpers.env`): a child that
    compiles a program another child already compiled (the same HLO, devices and flags) loads it instead."""
    from tests import run_helpers
    run_helpers.COMPILATION_CACHE_DIR = once_per_run(tmp_path_factory, "jax_cache", os.makedirs)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """The tiny synthetic egomotion dataset, built once per test run."""
    from data_builders import synthetic_egomotion
    return once_per_run(tmp_path_factory, "tiny_data", lambda d: synthetic_egomotion.build(d, "tiny"))


def _train_uninterrupted(workdir, data_dir):
    from tests import run_helpers
    result = run_helpers.run(run_helpers.train_command(workdir, data_dir, figures=True), env=run_helpers.env())
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory, tiny_data_dir):
    """Workdir of a tiny EVI-MAE run trained start to finish without interruption (the reference for resume tests):
    trained once per test run, each worker gets its own copy (tests run commands on it)."""
    trained = once_per_run(tmp_path_factory, "uninterrupted", lambda d: _train_uninterrupted(d, tiny_data_dir))
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    shutil.copytree(trained, workdir, dirs_exist_ok=True)
    return workdir
