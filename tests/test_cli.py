"""The command line: summary without allocation, and readable errors for bad flags."""

import sys

from tests import run_helpers as rh


def test_summary_prints_released_parameter_count():
    result = rh.run([sys.executable, "-m", "imujax.main", "--config=configs/evi_mae.py", "--mode=summary"], env=rh.env())
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "params: 108926725"
    assert any(line.startswith("blocks_a") and "78,034,176" in line for line in lines)


def test_unknown_config_key_lists_valid_keys():
    result = rh.run([sys.executable, "-m", "imujax.main", "--config=configs/evi_mae.py:demo", "--mode=summary",
                     "--config.model.imu_dimension=3"], env=rh.env())
    assert result.returncode == 2
    assert "unknown config key 'model.imu_dimension'" in result.stderr
    assert "imu_dim" in result.stderr and "imu_depth" in result.stderr


def test_unknown_variant_is_an_error():
    result = rh.run([sys.executable, "-m", "imujax.main", "--config=configs/evi_mae.py:tiny", "--mode=summary"], env=rh.env())
    assert result.returncode != 0 and "unknown variant 'tiny'" in result.stderr
