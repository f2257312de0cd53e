"""IMU2CLIP pretraining (facebookresearch/imu2clip, config ego4d_imu2text+video_mw2); `:demo` is a small CPU run.

  python -m imujax.main --config=configs/imu2clip.py --workdir=runs/imu2clip        # upstream recipe
  python -m imujax.main --config=configs/imu2clip.py:demo --workdir=runs/demo       # synthetic data, a few minutes

Upstream (facebookresearch/imu2clip@6353031 pretraining.py, configs/train_contrastive/): Adam lr 2e-4, no decay, no
schedule; 16 per GPU x 8 GPUs; 15 epochs; 5 s windows at 200 Hz = [6, 1000] raw acc+gyro; learnable temperature from 0.1
(HEAD); targets video + text from frozen CLIP ViT-B/32 (here: precomputed `video_features` / `text_features` in the
records, 512-d).
"""

import ml_collections

from configs import common

HEAD_IMU = tuple(f"head/{sensor}_{axis}" for sensor in ("acc", "gyro") for axis in "xyz")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "imu2clip"
    config.model = ml_collections.ConfigDict(dict(
        imu_encoder=dict(input_dim=32, size_embeddings=512, pool_type="max"),
        video_tower="features",      # features: precomputed frozen-tower embeddings; vit: trainable frame ViT
        video=dict(dim=384, depth=12, heads=6, patch=16, img_size=224, num_frames=4, mlp_ratio=4.0, pool="cls",
                   norm_eps=1e-6),
        learn_temperature=True, temperature=0.1))
    config.loss = ml_collections.ConfigDict(dict(targets=("video", "text")))
    config.data.update(dict(
        name="ego4d_imu/default", imu_channels=HEAD_IMU, imu_rate_hz=200, imu_length=1000, imu_resample="sinc",
        text_source="features", text_hash_seed=0,
        # Frame pipeline of the 'vit' tower (upstream feeds CLIP un-normalised [0, 1] frames).
        video_mean=(0.0, 0.0, 0.0), video_std=(1.0, 1.0, 1.0), crop_scale=(0.6, 1.0), hflip_prob=0.0))
    config.optimizer.update(dict(name="adam", learning_rate=2e-4, weight_decay=0.0, schedule="constant"))
    config.batch_size = 128
    config.num_epochs = 15
    config.eval.linear_probe = True

    if arg == "demo":
        _demo(config)
    elif arg not in (None, ""):
        raise ValueError(f"configs/imu2clip.py: unknown variant {arg!r} (known: demo)")
    return config


def _demo(config: ml_collections.ConfigDict) -> None:
    """Synthetic egomotion: the head IMU's 2 s clip resampled 100 -> 500 Hz gives the 1000 samples the encoder needs;
    a small trainable frame ViT replaces the frozen CLIP image tower, hashed bag-of-words the CLIP text tower."""
    config.model.imu_encoder.size_embeddings = 256
    config.model.video_tower = "vit"
    config.model.video.update(dict(dim=64, depth=2, heads=2, patch=16, img_size=64, num_frames=8, pool="mean"))
    config.data.update(dict(name="synthetic_egomotion/default", auto_build=True, imu_rate_hz=500, text_source="hash",
                            video_mean=(0.45, 0.45, 0.45), video_std=(0.225, 0.225, 0.225), worker_count=0))
    config.optimizer.update(dict(learning_rate=1e-3))
    config.batch_size = 32
    config.num_epochs = 0
    config.total_steps = 300
    config.log_every_steps = 20
    config.eval_every_steps = 100
    config.checkpoint.every_steps = 100
