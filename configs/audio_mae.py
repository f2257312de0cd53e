"""Audio-MAE (Huang et al., NeurIPS 2022) ViT-B/16 AS-2M pretraining sizes and recipe, for use with converted weights.

  python -m imujax.convert --model=audio_mae --src=pretrained.pth --out=/tmp/audiomae
  python -m imujax.main --config=configs/audio_mae.py --config.init_from=/tmp/audiomae --workdir=runs/audiomae

The model is the HIMU-MAE system's (imujax/systems/himu_mae.py: the same MaskedAutoencoderViT) with Audio-MAE's
input geometry: 1 x 1024 (time) x 128 (mel), position tables on the swapped 8x64 grid, mask ratio 0.8. Audio input
comes from `imujax.transforms.audio.audio_mae_input` (Kaldi fbank, (x + 4.27) / 9.14); the system's record preprocess
makes IMU spectrograms, so training from audio records needs an audio dataset builder (none exists yet).
"""

import ml_collections

from configs import himu_mae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = himu_mae.get_config()
    config.model.update(dict(img_h=1024, img_w=128, in_chans=1, pos_grid_swapped=True, video_dim=0))
    config.loss.update(dict(mask_ratio=0.8, norm_pix_loss=True, mask_2d=False, mask_row_ratio=0.6,
                            mask_col_ratio=0.5))
    # AS-2M: 64 GPUs x batch 8 = 512, blr 2e-4 -> lr 4e-4, AdamW(0.9, 0.95), wd 1e-4, 33 epochs (3 warmup).
    config.optimizer.update(dict(name="adamw", learning_rate=4e-4, b1=0.9, b2=0.95, weight_decay=1e-4,
                                 schedule="cosine", min_learning_rate=0.0))
    config.batch_size = 512
    config.num_epochs = 33
    if arg not in (None, ""):
        raise ValueError(f"configs/audio_mae.py: unknown variant {arg!r} (no variants)")
    return config
