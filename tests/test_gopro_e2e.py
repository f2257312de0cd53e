"""End to end on the real GoPro sample: build its records, pretrain the EVI-MAE demo for a few steps, get figures."""

import os
import shutil

from tests import run_helpers as rh

SAMPLE = os.path.join(rh.REPO, "..", "shared", "data", "gopro", "max-heromode.mp4")


def test_gopro_sample_builds_trains_and_draws(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copy(SAMPLE, manual)
    data = tmp_path / "data"
    built = rh.run([rh.sys.executable, "-m", "imujax.build_dataset", "data_builders/gopro", f"--data_dir={data}",
                    f"--manual_dir={manual}", "--config=default"], env=rh.env())
    assert built.returncode == 0, built.stderr[-3000:]
    workdir = tmp_path / "run"
    result = rh.run([rh.sys.executable, "-m", "imujax.main", "--config=configs/evi_mae.py:demo_gopro",
                     f"--workdir={workdir}", f"--config.data.data_dir={data}", "--config.total_steps=3",
                     "--config.model.imu_depth=1", "--config.model.video_depth=1", "--config.model.decoder_depth=1"],
                    env=rh.env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert rh.logged_steps(result.stdout) == [1, 2, 3]
    assert "eval/imu_to_video_r1" in result.stdout
    figures = set(os.listdir(workdir / "figures"))
    assert {"reconstruction_imu.png", "reconstruction_video.png", "curves.png"} <= figures
