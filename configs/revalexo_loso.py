"""RevalExo EVI-MAE fusion fine-tuning, one LOSO fold per config (revalexo/revalexo@6ca9000
train/configs/loso/revalexo/evi_mae_fusion.yaml).

  python -m imujax.main --config=configs/revalexo_loso.py:Subject05 --workdir=runs/loso/Subject05 \
      --config.init_from=converted/revalexo_evi_mae_pretrained
  (repeat for each of the 13 subjects in imujax.eval.loso.REVALEXO_SUBJECTS; `:demo` runs on synthetic data)

Recipe: EVI_MAE_Fusion (EVI-MAE encoder, head LN(896) -> Linear(768), MultiHorizonClassifier with a shared
Linear(768, 768) + ReLU + Dropout 0.5 and 6 heads), CE with label smoothing 0.1 averaged over horizons
(0, .1, .2, .3, .5, 1.0 s); AdamW lr 5e-5, weight decay 0.05, one parameter group; cosine annealing over 50 epochs
to 1e-7, per epoch, no warmup; batch 8; fp32; seed 42. Train = the 12 other subjects; val = test = the held-out
subject, and upstream keeps the epoch with the best weighted F1 at horizon 0 on it (`imujax.eval.loso`).
Here the loop evaluates the logits every epoch (accuracy, macro / weighted F1 per horizon and their mean) and keeps
the checkpoint with the best `eval/weighted_f1_h0s` in <workdir>/best_checkpoint; `--mode=eval` evaluates that one and
writes eval_best_predictions.npz, which `imujax.eval.loso.finetune_report` pools over the 13 fold workdirs.
Upstream's balanced sampler (inverse class frequency on horizon-0 labels) and early stopping on val loss
(patience 15) are not part of the imujax loop.
"""

import ml_collections

from configs import common
from configs import evi_mae as pretrain_config

SUBJECTS = ("Subject01", "Subject02", "Subject03", "Subject05", "Subject06", "Subject07", "Subject08",
            "Subject11", "Subject17", "Subject20", "Subject24", "Subject26", "Subject29")
HORIZONS_S = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "evi_mae_finetune"
    config.model = pretrain_config.get_config().model
    config.data.update(dict(
        name="revalexo/default", slot_mapping="finetune_as_released",
        # RevalExo fine-tune IMU transform: linear interp to 250, torchaudio spectrogram, ln(x + 1e-6),
        # bilinear resize to (128, 320) in (freq, time) layout, then the raw-acc statistics (sic, as upstream).
        signal_length=250, n_fft=256, win_length=24, hop_length=1, imu_mean=-1.223483, imu_std=7.991705,
        short_side_ratio=256 / 224))
    config.finetune = ml_collections.ConfigDict(dict(
        head="revalexo_fusion", num_classes=7, use_graph=True, loss="ce", label_smoothing=0.1,
        smooth_eval_targets=False, metric="weighted_f1", horizons=HORIZONS_S, feature_dim=768,
        shared_classifier_layers=True, held_out_subject=""))
    config.optimizer.update(dict(name="adamw", learning_rate=5e-5, weight_decay=0.05, b1=0.9, b2=0.999,
                                 schedule="cosine", min_learning_rate=1e-7, warmup_steps=0))
    config.batch_size = 8
    config.num_epochs = 50
    config.seed = 42
    config.eval_every_epochs = 1          # upstream validates (and selects) every epoch
    config.checkpoint.select_on = "eval"  # upstream selects on the held-out subject (the eval split), as released
    config.eval.linear_probe = False      # the head's own logits are evaluated (classification_spec)

    if arg in SUBJECTS:
        _fold(config, arg)
    elif arg == "demo":
        _demo(config)
    elif arg not in (None, ""):
        raise ValueError(f"configs/revalexo_loso.py: unknown variant {arg!r} (known: demo, {', '.join(SUBJECTS)})")
    return config


def _fold(config: ml_collections.ConfigDict, subject: str) -> None:
    """The `revalexo` builder writes one split per subject; a fold is split arithmetic over them."""
    config.finetune.held_out_subject = subject
    config.data.train_split = "+".join(s for s in SUBJECTS if s != subject)
    config.data.eval_split = subject


def _demo(config: ml_collections.ConfigDict) -> None:
    """Tiny towers; synthetic records have one label, so the demo uses one horizon and the 12 synthetic slots."""
    demo = pretrain_config.get_config("demo")
    config.model = demo.model
    config.data.update(dict(name="synthetic_egomotion/default", auto_build=True, worker_count=0,
                            slot_mapping="slots", signal_length=128, n_fft=128, imu_mean=0.0, imu_std=5.0))
    config.finetune.update(dict(num_classes=8, horizons=(0.0,), feature_dim=64))
    config.optimizer.update(dict(learning_rate=1e-3))
    config.batch_size = 16
    config.num_epochs = 0
    config.total_steps = 200
    config.log_every_steps = 20
    config.eval_every_steps = 100
