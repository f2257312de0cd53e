"""TSFM Stage 2 (semantic alignment with a learnable label bank), the upstream HEAD recipe (small_deep).

  python -m imujax.main --config=configs/tsfm_stage2.py --workdir=runs/tsfm_s2          # upstream sizes and recipe
  python -m imujax.main --config=configs/tsfm_stage2.py:demo --workdir=runs/tsfm_s2 \\
      [--config.init_from=runs/tsfm_s1:latest --config.init_only=encoder]             # synthetic data, minutes
  python -m imujax.main --mode=eval --config=configs/tsfm_stage2.py:demo --workdir=runs/tsfm_s2  # zero-shot + 10%
The end-of-run evaluation writes the same (eval/zs_closed/*, eval/supervised_10pct/*) to metrics.jsonl.

Variants: ``demo`` (K=1 soft-target InfoNCE), ``demo_k3`` (K=3 prototypes, the ebbcffd recipe), ``demo_siglip``.
"""

import ml_collections

from configs import common
from configs import tsfm_stage1

SYNTHETIC_CLASSES = ("walk", "run", "stand", "turn_left", "turn_right", "stairs_up", "stairs_down", "sit_down")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "tsfm_stage2"
    config.encoder_init_from = ""     # older alias of --config.init_from=RUN_DIR:latest --config.init_only=encoder
    # small_deep (HEAD default): d 384/8 heads/8 layers/ff 1536, spectral-temporal, per-patch prediction.
    config.model = tsfm_stage1.model_config(
        num_temporal_layers=8, feature_extractor="spectral_temporal", channel_text_fusion=True, text_dim=384,
        channel_text_num_heads=4, d_model_fused=384, semantic_dim=384, num_semantic_temporal_layers=4,
        num_fusion_queries=6, num_pool_queries=6, fusion_self_attention=True, pool_self_attention=True,
        per_patch_prediction=True, learnable_label_bank=True, label_bank_num_heads=4, label_bank_num_queries=6,
        num_prototypes=1, siglip=False)
    config.text = tsfm_stage1.text_config()
    config.text.update(dict(augment_prob=0.8, label_templates=("{}", "person {}", "{} activity", "a person {}",
                                                               "someone {}")))
    config.data.update(dict(
        name="synthetic_egomotion/default", imu_channels=(), channel_names=tsfm_stage1.SYNTHETIC_CHANNELS,
        class_names=SYNTHETIC_CLASSES, dataset_description="", sampling_rate_hz=100.0, patch_seconds=1.0,
        patch_seconds_choices=(0.75, 1.0, 1.25), max_patches=48, max_channels=52, rotation_prob=0.0,
        jitter_prob=0.5, jitter_sigma=0.05, scale_prob=0.5))
    config.loss = ml_collections.ConfigDict(dict(
        kind="infonce",               # infonce | siglip
        soft_targets="frozen",        # frozen (HEAD: from frozen text) | learned | none
        soft_weight=1.0, soft_temperature=0.5, memory_bank_size=512))
    # AdamW 8e-5, wd 1e-5, effective batch 512, 100 epochs, 3 warmup epochs then cosine to 1% (here: cosine).
    config.optimizer.update(dict(name="adamw", learning_rate=8e-5, weight_decay=1e-5, schedule="cosine",
                                 grad_clip_norm=1.0))
    config.batch_size = 512
    config.num_epochs = 100
    config.eval.retrieval = False
    # end of run (and every eval_every_steps): closed-set zero-shot + the 10%-label fine-tuning protocol
    # (upstream evaluate_tsfm.py)
    config.eval.update(dict(zero_shot=True, supervision_rates=(0.1,), finetune_lr=1e-5))

    if arg in ("demo", "demo_k3", "demo_siglip"):
        _demo(config)
        if arg == "demo_k3":
            config.model.num_prototypes = 3
        if arg == "demo_siglip":
            config.model.siglip = True
            config.loss.kind = "siglip"
    elif arg == "own":  # your own dataset; --config.init_from=<tsfm_stage1:own run>:latest --config.init_only=encoder
        _demo(config)
        tsfm_stage1.own(config)
    elif arg not in (None, ""):
        raise ValueError(f"configs/tsfm_stage2.py: unknown variant {arg!r} (known: demo, demo_k3, demo_siglip, "
                         "own)")
    return config


def _demo(config: ml_collections.ConfigDict) -> None:
    """Minutes on a 2-core CPU: the Stage-1 demo encoder sizes, real MiniLM text, synthetic egomotion clips."""
    config.model.update(dict(d_model=48, num_heads=4, num_temporal_layers=2, dim_feedforward=96,
                             feature_extractor="cnn", cnn_channels=(8, 16), max_positions=64, d_model_fused=48,
                             num_semantic_temporal_layers=1, num_fusion_queries=2, num_pool_queries=2,
                             label_bank_num_queries=2, per_patch_prediction=True))
    config.data.update(dict(auto_build=True, worker_count=0, patch_seconds=0.5, patch_seconds_choices=(0.4, 0.5),
                            max_patches=5, max_channels=30, rotation_prob=0.0,
                            dataset_description="Synthetic body-worn IMU recording."))
    config.loss.memory_bank_size = 64
    config.optimizer.update(dict(learning_rate=1e-3, warmup_steps=20, grad_clip_norm=1.0))
    config.batch_size = 16
    config.num_epochs = 0
    config.total_steps = 300
    config.log_every_steps = 20
    config.eval_every_steps = 0
    config.checkpoint.every_steps = 100
