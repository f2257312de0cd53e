"""PRIMUS pretraining (Nokia-Bell-Labs/pretrained-imu-encoders, ICASSP 2025); `:demo` is a small CPU run.

  python -m imujax.main --config=configs/primus.py --workdir=runs/primus          # upstream recipe
  python -m imujax.main --config=configs/primus.py:demo --workdir=runs/demo       # synthetic data, a few minutes

Upstream (Nokia-Bell-Labs/pretrained-imu-encoders@562e142 pretraining.py, README command `--ssl_coeff 0.5 --multihead
--nnclr`): Adam lr 2e-4, no decay, no schedule; 16 per GPU x 4 GPUs; 15 epochs; 5 s windows at 50 Hz = [6, 250] raw Aria
acc+gyro; targets text + video from frozen clip4clip (precomputed 512-d `text_features` / `video_features` in the
records); two learnable temperatures from 0.1; queue of 8192 with video-space nearest neighbours.
"""

import ml_collections

from configs import common
from configs.imu2clip import HEAD_IMU


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "primus"
    config.model = ml_collections.ConfigDict(dict(
        imu_encoder=dict(input_dim=32, size_embeddings=512),
        video_tower="features",      # features: precomputed frozen-tower embeddings; vit: trainable frame ViT
        video=dict(dim=384, depth=12, heads=6, patch=16, img_size=224, num_frames=4, mlp_ratio=4.0, pool="cls",
                   norm_eps=1e-6)))
    config.loss = ml_collections.ConfigDict(dict(
        targets=("video", "text"), ssl_coeff=0.5, mmcl_temperature=0.1, ssl_temperature=0.1, nnclr=True,
        queue_size=8192))
    config.data.update(dict(
        name="egoexo4d_imu/default", imu_channels=HEAD_IMU, imu_rate_hz=50, imu_length=250, imu_resample="sinc",
        text_source="features", text_hash_seed=0,
        # Frame pipeline of the 'vit' tower (clip4clip uses CLIP normalisation).
        video_mean=(0.48145466, 0.4578275, 0.40821073), video_std=(0.26862954, 0.26130258, 0.27577711),
        crop_scale=(0.6, 1.0), hflip_prob=0.0))
    config.optimizer.update(dict(name="adam", learning_rate=2e-4, weight_decay=0.0, schedule="constant"))
    config.batch_size = 64
    config.num_epochs = 15

    if arg == "demo":
        _demo(config)
    elif arg not in (None, ""):
        raise ValueError(f"configs/primus.py: unknown variant {arg!r} (known: demo)")
    return config


def _demo(config: ml_collections.ConfigDict) -> None:
    """Synthetic egomotion: the head IMU's 2 s clip resampled 100 -> 125 Hz gives 250 samples; a small trainable
    frame ViT replaces clip4clip's image tower, hashed bag-of-words its text tower; a queue of 256."""
    config.model.imu_encoder.size_embeddings = 256
    config.model.video_tower = "vit"
    config.model.video.update(dict(dim=64, depth=2, heads=2, patch=16, img_size=64, num_frames=4, pool="mean"))
    config.loss.queue_size = 256
    config.data.update(dict(name="synthetic_egomotion/default", auto_build=True, imu_rate_hz=125, text_source="hash",
                            worker_count=0))
    config.optimizer.update(dict(learning_rate=1e-3))
    config.batch_size = 32
    config.num_epochs = 0
    config.total_steps = 400
    config.log_every_steps = 20
    config.eval_every_steps = 200
    config.checkpoint.every_steps = 200
