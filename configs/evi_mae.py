"""EVI-MAE pretraining (IMU-Video-MAE, ECCV 2024), the released recipe; `:demo` is a small CPU run.

  python -m imujax.main --config=configs/evi_mae.py --workdir=runs/evi_mae            # released sizes and recipe
  python -m imujax.main --config=configs/evi_mae.py:demo --workdir=runs/demo          # builds synthetic data, trains
  python -m imujax.main --config=configs/evi_mae.py:own --config.data.name=imu_video_folder/default \
      --config.data.data_dir=DIR --workdir=runs/mine      # demo sizes on your own built IMU + video dataset
"""

import ml_collections

from configs import common

EVI_MAE_SLOTS = ("left_arm", "right_arm", "left_leg", "right_leg")
ACC_CHANNELS = tuple(f"{slot}/acc_{axis}" for slot in EVI_MAE_SLOTS for axis in "xyz")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "evi_mae"

    # Architecture: imujax.models.evi_mae.EVIMAESizes (released: 108,926,725 parameters).
    config.model = ml_collections.ConfigDict(dict(
        imu_dim=768, imu_depth=11, imu_heads=12, imu_channels=12, imu_parts=4, imu_time=320, imu_freq=128,
        patch=16, video_dim=384, video_depth=12, video_heads=6, num_frames=16, img_size=224, tubelet=2,
        decoder_dim=192, decoder_heads=3, decoder_depth=8, mlp_ratio=4.0, qkv_bias=True, norm_eps=1e-5,
        graph_hidden=512, graph_layers=2, graph_dropout=0.2, graph_mask_ratio=0.5, dtype="float32"))

    config.loss = ml_collections.ConfigDict(dict(
        imu_mask_ratio=0.75, video_mask_ratio=0.9, norm_pix_loss=True,
        mae_weight=1.0, contrast_weight=0.01, contrast_temperature=0.05, graph_weight=10.0,
        bidirectional_contrast=False))  # upstream `bidirect_contrast`: video -> IMU only

    config.data.update(dict(
        name="synthetic_egomotion/default", imu_channels=ACC_CHANNELS,
        frame_stride=4,
        # Spectrogram recipe (torchaudio Spectrogram n_fft 256 / win 24 / hop 1, dB); dataset constants mean/std.
        n_fft=256, win_length=24, hop_length=1, imu_mean=-1.223483, imu_std=7.991705, imu_noise=True))

    # Adam 5e-5, betas 0.95/0.999, L2 weight decay 5e-7 (torch Adam), lr halved every 100 epochs, 300 epochs.
    config.optimizer.update(dict(name="adam", learning_rate=5e-5, b1=0.95, b2=0.999, weight_decay=5e-7,
                                 schedule="multistep", milestones_epochs=tuple(range(100, 1000, 100)), gamma=0.5))
    config.batch_size = 16
    config.num_epochs = 300

    if arg == "demo":
        _demo(config)
    elif arg == "demo_gopro":
        _demo_gopro(config)
    elif arg == "own":
        _demo(config)
        own(config)
    elif arg == "v5p_256":
        _v5p_256(config)
    elif arg not in (None, ""):
        raise ValueError(f"configs/evi_mae.py: unknown variant {arg!r} (known: demo, demo_gopro, own, v5p_256)")
    return config


def _v5p_256(config: ml_collections.ConfigDict) -> None:
    """The released recipe on a 256-chip v5p slice (benchmarks/tpu_aot.py): bf16 compute over fp32 master weights,
    FSDP over every chip (the default data-parallel mesh would replicate the 1.2 GiB of weights + Adam state per chip),
    2 examples per chip. Compiled, the step needs 1.3 GiB per chip of 95 (IMU-block remat on, the default); the batch,
    not memory, is the limit. The learning rate stays the released one: scale it yourself for the 32x larger batch."""
    config.model.dtype = "bfloat16"
    config.mesh.update(dict(data=1, fsdp=-1, tensor=1))
    config.batch_size = 512


def _demo(config: ml_collections.ConfigDict) -> None:
    """A few minutes on a 2-core CPU: tiny towers on the embedded synthetic egomotion dataset."""
    config.model.update(dict(
        imu_dim=64, imu_depth=2, imu_heads=2, imu_time=128, imu_freq=64, video_dim=32, video_depth=2,
        video_heads=2, img_size=64, decoder_dim=32, decoder_heads=2, decoder_depth=2, graph_hidden=64))
    config.data.update(dict(
        name="synthetic_egomotion/default", auto_build=True, frame_stride=1,
        n_fft=128, win_length=24, imu_mean=-20.0, imu_std=20.0, worker_count=0))
    config.loss.contrast_weight = 1.0
    config.loss.contrast_temperature = 0.1
    config.optimizer.update(dict(learning_rate=1e-3, schedule="cosine", warmup_steps=20, weight_decay=5e-7))
    config.batch_size = 32
    config.num_epochs = 0
    # Cross-modal retrieval is the slowest thing to emerge: IMU->video R@1 is at chance for ~600 steps, 2x chance after
    # a 1200-step schedule, 8x after 1500 (about 8 min of steps on 2 cores).
    config.total_steps = 1500
    config.log_every_steps = 25
    config.eval_every_steps = 750
    config.checkpoint.every_steps = 500


def _demo_gopro(config: ml_collections.ConfigDict) -> None:
    """The demo model on real GoPro records (`data_builders/gopro`): the camera's one accelerometer fills all four
    EVI-MAE body slots, the recording has no labels, so only MAE/contrastive training, retrieval and figures."""
    _demo(config)
    config.data.update(dict(name="gopro/default", auto_build=False, eval_split="train",
                            imu_channels=tuple(f"camera/acc_{axis}" for _ in EVI_MAE_SLOTS for axis in "xyz")))
    config.eval.linear_probe = False
    config.batch_size = 4
    config.total_steps = 10
    config.log_every_steps = 1
    config.eval_every_steps = 0
    config.checkpoint.every_steps = 10


def own(config: ml_collections.ConfigDict) -> None:
    """Any built IMU + video dataset (`imujax.own_data`): every complete 3-axis accelerometer / gyroscope triad is one
    IMU part (config.data.part_kinds), the clip is the window's frames, and the spectrogram mean/std are measured on
    the training split."""
    config.data.update(dict(from_dataset=True, name="imu_video_folder/default", auto_build=False,
                            part_kinds=("acc", "gyro")))
