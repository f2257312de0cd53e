"""A masked-autoencoder ratio that keeps no visible token is refused before anything is built (the loss would be
NaN or learn nothing); the released recipes pass."""

import pytest

from configs import audio_mae, evi_mae, himu_mae, tsfm_stage1
from imujax import config_checks


@pytest.mark.parametrize("make", [evi_mae.get_config, lambda: evi_mae.get_config("demo"), audio_mae.get_config,
                                  himu_mae.get_config, tsfm_stage1.get_config])
def test_released_mask_ratios_pass(make):
    config_checks.check(make())


def test_evi_mae_video_mask_that_keeps_no_token_is_refused():
    config = evi_mae.get_config("demo")
    config.model.img_size, config.model.num_frames = 32, 2  # 1 x 2 x 2 = 4 video tokens; 0.9 keeps int(0.4) = 0
    with pytest.raises(config_checks.ConfigError, match=r"loss\.video_mask_ratio=0\.9 keeps no token of the 4 .*"
                                                         r"model\.img_size.*at most 0\.75"):
        config_checks.check(config)
    config.loss.video_mask_ratio = 0.75
    config_checks.check(config)
    config.loss.imu_mask_ratio = 1.0
    with pytest.raises(config_checks.ConfigError, match=r"loss\.imu_mask_ratio=1\.0: must be in \[0, 1\)"):
        config_checks.check(config)


def test_audio_mae_ratios_are_checked_against_the_token_grid():
    config = himu_mae.get_config()  # 8 x 20 grid of 160 tokens
    config.loss.mask_ratio = 0.995
    with pytest.raises(config_checks.ConfigError, match=r"loss\.mask_ratio=0\.995 keeps no token of the 160"):
        config_checks.check(config)
    config.loss.update(dict(mask_ratio=0.9, mask_2d=True, mask_row_ratio=0.9, mask_col_ratio=0.5))
    with pytest.raises(config_checks.ConfigError, match=r"loss\.mask_row_ratio=0\.9 keeps no token of the 8 .*img_h"):
        config_checks.check(config)
    config.loss.mask_row_ratio = 0.5
    config_checks.check(config)


def test_tsfm_mask_ratio_is_a_probability():
    config = tsfm_stage1.get_config()
    config.loss.mask_ratio = 1.5
    with pytest.raises(config_checks.ConfigError, match=r"loss\.mask_ratio=1\.5: must be in \[0, 1\]"):
        config_checks.check(config)
