"""HIMU-MAE pretraining (amir-goudarzi/IMU_testing): Audio-MAE on Aria left-accelerometer spectrograms.

  python -m imujax.main --config=configs/himu_mae.py --workdir=runs/himu                 # released sizes and recipe
  python -m imujax.main --config=configs/himu_mae.py:omni --workdir=runs/himu_omni       # + Omnivore conditioning
  python -m imujax.main --config=configs/himu_mae.py:demo --workdir=runs/himu_demo       # synthetic data, CPU

Facts: amir-goudarzi/IMU_testing@9c52aa2 configs/IMU-MAE/egoexo4d_accl.yaml, src/audiomae_pretrain.py. The released data
is `egoexo4d_imu` (2 s windows around each Omnivore feature, left IMU 800 Hz); see data_builders/egoexo4d_imu.
"""

import ml_collections

from configs import common

LEFT_ACCEL = ("imu_left/acc_x", "imu_left/acc_y", "imu_left/acc_z")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "himu_mae"

    # imujax.models.audio_mae.AudioMAESizes: ViT-B/16 on 3x128(freq)x320(time), 16 Swin-V2-Cr decoder blocks.
    config.model = ml_collections.ConfigDict(dict(
        img_h=128, img_w=320, in_chans=3, patch=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
        norm_eps=1e-6, decoder_dim=512, decoder_mode=1, decoder_depth=16, decoder_heads=16, window=(4, 4),
        shift=(2, 0), meta_hidden=384, meta_dropout=0.1, pos_grid_swapped=False, video_dim=0, dtype="float32"))

    config.loss = ml_collections.ConfigDict(dict(
        mask_ratio=0.9, norm_pix_loss=True, mask_2d=False, mask_row_ratio=0.0, mask_col_ratio=0.0))

    config.data.update(dict(
        name="egoexo4d_imu/default", imu_channels=LEFT_ACCEL,
        # spectrogram_params.sec_2.128x320: 800 -> 50 Hz, 2 s (100 samples), 50 -> 160 Hz, STFT 256/24/1.
        down_rate=50, window_s=2.0, up_rate=160, pad_side="right", n_fft=256, win_length=24, hop_length=1,
        antialias=True,  # torchvision 0.17 Resize on tensors antialiases by default
        spec_mean=(-32.96684, -23.85517, -30.42711), spec_std=(27.27846, 26.88700, 27.16923),
        freq_mask=0, time_mask=0))  # SpecAugment only in fine-tuning (48 / 60)

    # AdamW(0.9, 0.95), wd 1e-4, blr 2e-4 x 256/256, 32 epochs, half-cosine to 0; bs 128 x 2 GPUs. Upstream warms up
    # for 3 epochs: set warmup_steps to 3 * steps_per_epoch of your data.
    config.optimizer.update(dict(name="adamw", learning_rate=2e-4, b1=0.9, b2=0.95, weight_decay=1e-4,
                                 schedule="cosine", warmup_steps=0, min_learning_rate=0.0))
    config.batch_size = 256
    config.num_epochs = 32

    if arg == "omni":
        config.model.video_dim = 1536  # Omnivore clip feature concatenated to every encoder token
    elif arg == "demo":
        _demo(config)
    elif arg == "own":  # your own built dataset (imujax.own_data): its first accelerometer triad, measured statistics
        _demo(config)
        config.data.update(dict(from_dataset=True, name="imu_video_folder/default", auto_build=False))
    elif arg not in (None, ""):
        raise ValueError(f"configs/himu_mae.py: unknown variant {arg!r} (known: omni, demo, own)")
    return config


def _demo(config: ml_collections.ConfigDict) -> None:
    """A few minutes on a 2-core CPU: the left-wrist accelerometer of the embedded synthetic dataset."""
    config.model.update(dict(img_h=64, img_w=64, patch=8, embed_dim=64, depth=3, num_heads=4, decoder_dim=32,
                             decoder_depth=2, decoder_heads=4, meta_hidden=64))
    config.loss.mask_ratio = 0.75
    config.data.update(dict(
        name="synthetic_egomotion/default", auto_build=True, worker_count=0,
        imu_channels=("left_arm/acc_x", "left_arm/acc_y", "left_arm/acc_z"),
        spec_mean=(-20.0, -20.0, -20.0), spec_std=(20.0, 20.0, 20.0)))
    config.optimizer.update(dict(learning_rate=1e-3, warmup_steps=20, weight_decay=1e-4))
    config.batch_size = 32
    config.num_epochs = 0
    config.total_steps = 300
    config.log_every_steps = 20
    config.eval_every_steps = 300
    config.checkpoint.every_steps = 300
