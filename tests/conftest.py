"""Test-wide setup: 8 fake CPU devices so sharding tests run on any laptop or CI box."""
import os

# The tests run tiny models, so XLA's compile time, not the compiled code's speed, dominates the suite: LLVM's
# optimisation level 0 compiles the tiny EVI-MAE train step in 10.5 s instead of 17.3 s (the same HLO, the same
# math). Subprocesses get it too (`run_helpers.env`). Benchmarks and real runs keep XLA's default.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """The tiny synthetic egomotion dataset, built once per test session."""
    from data_builders import synthetic_egomotion
    directory = str(tmp_path_factory.mktemp("tiny_data"))
    synthetic_egomotion.build(directory, "tiny")
    return directory


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory, tiny_data_dir):
    """Workdir of a tiny EVI-MAE run trained start to finish without interruption (the reference for resume tests)."""
    from tests import run_helpers
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    result = run_helpers.run(run_helpers.train_command(workdir, tiny_data_dir, figures=True), env=run_helpers.env())
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir
