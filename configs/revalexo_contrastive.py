"""RevalExo contrastive pretraining (pretrain/contrastive, X3D config); `:demo` is a small CPU run.

  python -m imujax.main --config=configs/revalexo_contrastive.py --workdir=runs/revalexo_contrastive
  python -m imujax.main --config=configs/revalexo_contrastive.py:demo --workdir=runs/demo

Upstream (revalexo/revalexo@6ca9000 pretrain/contrastive/configs/pretrain_deepconv_lower_x3d_revalexo.yaml):
DeepConvLSTM on [120, 42] raw windows (2 s at 60 Hz; 64 kernels of 11, LSTM 1024, feature_dim 256); X3D-XS on 4 frames
of 182 px with feature_projector 2048 -> 256 (here a ViT-S over 4 frames of 182 px, patch 14, trained from scratch,
stands in); projections Linear(d,d)-ReLU-Linear(d,256); learnable temperature 0.1; AdamW lr 5e-5, wd 2.5e-4 on
everything; cosine to 1e-6 (upstream steps it per epoch over T_max=50 epochs, here per step over the run); grad clip
1.0; batch 64; 50 epochs.
"""

import ml_collections

from configs import common

LOWER_BODY = ("pelvis", "right_upper_leg", "left_upper_leg", "right_lower_leg", "left_lower_leg", "right_foot",
              "left_foot")
REVALEXO_42 = tuple(f"{slot}/{sensor}_{axis}" for sensor in ("acc", "gyro") for slot in LOWER_BODY for axis in "xyz")
SYNTHETIC_30 = tuple(f"{slot}/{sensor}_{axis}" for slot in ("left_arm", "right_arm", "left_leg", "right_leg", "head")
                     for sensor in ("acc", "gyro") for axis in "xyz")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "revalexo_contrastive"
    config.model = ml_collections.ConfigDict(dict(
        imu_encoder=dict(num_classes=11, conv_kernels=64, conv_kernel_size=11, lstm_units=1024, lstm_layers=1,
                         dropout=0.5, feature_dim=256),
        video_tower="vit",           # vit: trainable frame ViT; features: precomputed `video_features`
        video=dict(dim=384, depth=12, heads=6, patch=14, img_size=182, num_frames=4, mlp_ratio=4.0, pool="cls",
                   norm_eps=1e-6),
        video_feature_dim=2048,      # width of precomputed features (video_tower='features')
        visual_feature_dim=256, visual_dropout=0.5, temperature=0.1))
    config.data.update(dict(
        name="revalexo/contrastive", imu_channels=REVALEXO_42, imu_rate_hz=60, imu_length=120, imu_resample="sinc",
        video_mean=(0.45, 0.45, 0.45), video_std=(0.225, 0.225, 0.225), crop_scale=(0.6, 1.0), hflip_prob=0.5,
        imu_augment=dict(scale_prob=0.5, scale_range=(0.8, 1.2), channel_dropout_prob=0.2, channel_dropout_rate=0.1,
                         noise_prob=0.5, noise_std=0.02)))
    config.optimizer.update(dict(name="adamw", learning_rate=5e-5, weight_decay=2.5e-4, schedule="cosine",
                                 min_learning_rate=1e-6, grad_clip_norm=1.0))
    config.batch_size = 64
    config.num_epochs = 50

    if arg == "demo":
        _demo(config)
    elif arg not in (None, ""):
        raise ValueError(f"configs/revalexo_contrastive.py: unknown variant {arg!r} (known: demo)")
    return config


def _demo(config: ml_collections.ConfigDict) -> None:
    """Synthetic egomotion: all 30 channels (5 body slots) resampled 100 -> 60 Hz = [120, 30]; a small DeepConvLSTM
    and frame ViT; no horizontal flip (it would swap turn-left and turn-right videos against their IMU). Without a
    text target the video tower learns only from the IMU pairing, so this demo is the slowest of the three to align."""
    config.model.imu_encoder.update(dict(conv_kernels=16, lstm_units=128, feature_dim=64))
    config.model.video.update(dict(dim=64, depth=2, heads=2, patch=16, img_size=64, num_frames=4, pool="mean"))
    config.model.visual_feature_dim = 64
    config.model.visual_dropout = 0.1  # 0.5 on a 64-wide feature slows the from-scratch video tower too much
    config.data.update(dict(name="synthetic_egomotion/default", auto_build=True, imu_channels=SYNTHETIC_30,
                            hflip_prob=0.0, worker_count=0))
    config.optimizer.update(dict(learning_rate=2e-3, warmup_steps=20))
    config.batch_size = 32
    config.num_epochs = 0
    config.total_steps = 400
    config.log_every_steps = 20
    config.eval_every_steps = 100
    config.checkpoint.every_steps = 200
