"""EVI-MAE fine-tuning (`EVIMAEFT`, multimodal), the released recipe (mf-zhang/IMU-Video-MAE@78e7666
src/traintest_ft.py, egs/release/finetune_*.sh).

  python -m imujax.main --config=configs/evi_mae_finetune.py --workdir=runs/ft_cmu \
      --config.init_from=converted/evi_mae_pretrained          # CMU-MMAC: 32 classes, BCE, selection by mAP
  python -m imujax.main --config=configs/evi_mae_finetune.py:wear --workdir=runs/ft_wear   # WEAR: 18 classes, acc
  python -m imujax.main --config=configs/evi_mae_finetune.py:demo --workdir=runs/ft_demo   # synthetic, CPU minutes

Recipe: Adam (betas 0.95/0.999, L2 weight decay 5e-7), lr 5e-5 for the encoder and 5e-3 (x100) for the new head,
MultiStepLR halving every 60 epochs, 200 epochs, batch 16, BCE on multi-hot targets smoothed by 0.1.
The x100 head group is `config.optimizer.lr_multipliers` (regex on the parameter path -> factor), applied by the
train loop's optimiser (`imujax.train.scale_by_path_multipliers`).
"""

import ml_collections

from configs import common
from configs import evi_mae as pretrain_config

# Fine-tune dB-spectrogram statistics (mf-zhang/IMU-Video-MAE@78e7666 egs/release/finetune_*.sh).
IMU_STATS = {"cmu_mmac": (-70.84, 23.44), "wear": (-51.17, 26.19)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "evi_mae_finetune"
    pretrained = pretrain_config.get_config()
    config.model = pretrained.model        # the released EVI-MAE sizes (decoder sizes unused by EVIMAEFT)
    config.data.update(dict(pretrained.data))
    mean, std = IMU_STATS["cmu_mmac"]
    config.data.update(dict(name="evi_mae_release/cmu_mmac", imu_mean=mean, imu_std=std, imu_noise=True,
                            train_split="train", eval_split="test"))

    config.finetune = ml_collections.ConfigDict(dict(
        head="evimaeft", num_classes=32, use_graph=True, loss="bce", label_smoothing=0.1,
        smooth_eval_targets=False,
        metric="map",                      # model selection upstream: mAP (CMU-MMAC) or accuracy (WEAR)
        # revalexo_fusion only (unused here, kept so both heads read one schema)
        horizons=(0.0,), feature_dim=768, shared_classifier_layers=True))

    config.optimizer.update(dict(
        name="adam", learning_rate=5e-5, b1=0.95, b2=0.999, weight_decay=5e-7,
        schedule="multistep", milestones_epochs=tuple(range(60, 1000, 60)), gamma=0.5))
    config.optimizer.lr_multipliers = {"mlp_head": 100.0}   # head_lr 100 (another_mlp_head too upstream)
    config.batch_size = 16
    config.num_epochs = 200
    config.seed = 42
    config.eval_every_epochs = 1          # upstream validates every epoch; best checkpoint by finetune.metric
    config.checkpoint.select_on = "eval"  # upstream selects on its validation = eval split, as released
    config.eval.linear_probe = False      # the head's own logits are evaluated (classification_spec)

    if arg == "wear":
        mean, std = IMU_STATS["wear"]
        config.data.update(dict(name="evi_mae_release/wear", imu_mean=mean, imu_std=std))
        config.finetune.update(dict(num_classes=18, metric="acc"))
    elif arg == "demo":
        _demo(config)
    elif arg == "own":  # your own built dataset; --config.init_from=<an evi_mae.py:own run>
        _demo(config)
        pretrain_config.own(config)
        config.finetune.update(dict(metric="macro_f1"))
        config.checkpoint.select_on = "validation"  # your own data: select on subjects carved from train
    elif arg not in (None, ""):
        raise ValueError(f"configs/evi_mae_finetune.py: unknown variant {arg!r} (known: wear, demo, own)")
    return config


def _demo(config: ml_collections.ConfigDict) -> None:
    """Tiny towers on the embedded synthetic egomotion dataset (8 single-label classes, CE)."""
    demo = pretrain_config.get_config("demo")
    config.model = demo.model
    config.data.update(dict(demo.data))
    config.finetune.update(dict(num_classes=8, loss="ce", metric="acc"))
    config.optimizer.update(dict(learning_rate=1e-3, schedule="cosine", warmup_steps=10))
    config.batch_size = 16
    config.num_epochs = 0
    config.total_steps = 200
    config.log_every_steps = 20
    config.eval_every_steps = 100
    config.checkpoint.every_steps = 100
