"""TSFM Stage 2 (semantic alignment with a learnable label bank), the upstream HEAD recipe (small_deep).

  python -m imujax.main --config=configs/tsfm_stage2.py --workdir=runs/tsfm_s2          # upstream sizes and recipe
  python -m imujax.main --config=configs/tsfm_stage2.py:demo --workdir=runs/tsfm_s2 \\
      [--config.init_from=runs/tsfm_s1:latest --config.init_only=encoder]             # synthetic data, minutes
  python -m imujax.main --mode=eval --config=configs/tsfm_stage2.py:demo --workdir=runs/tsfm_s2  # zero-shot + 10%
The end-of-run evaluation writes the same (eval/zs_closed/*, eval/supervised_10pct/*) to metrics.jsonl.

Variants: ``demo`` (K=1 soft-target InfoNCE), ``demo_k3`` (K=3 prototypes, the ebbcffd recipe), ``demo_siglip``,
``synthetic`` (issue 26: the demo encoder on the articulated corpus `synthetic_egomotion/motion_realsets` only, for
zero-shot on real recordings; `benchmarks/real_data.py --synthetic`, row z).
"""

import ml_collections

from configs import common
from configs import tsfm_stage1

SYNTHETIC_CLASSES = ("walk", "run", "stand", "turn_left", "turn_right", "stairs_up", "stairs_down", "sit_down")
SYNTHETIC_MOTION = "synthetic_egomotion/motion_realsets"
# motion_realsets' sensors (data_builders/synthetic_egomotion/config.py MOTION_REALSETS.placements), acc + gyro each
MOTION_PLACEMENTS = ("waist", "pocket", "torso", "right_arm", "left_arm", "right_leg", "left_leg", "head", "phone",
                     "watch")
MOTION_CHANNELS = tuple(f"{p}/{s}_{a}" for p in MOTION_PLACEMENTS for s in ("acc", "gyro") for a in "xyz")
# The label text of each primitive (label order of the corpus, data_builders/synthetic_egomotion/primitives.py
# ACTIVITIES): a readable activity phrase, as a person would name the activity (the form real datasets' class names
# take), so that an unseen class name ("walking upstairs") lands near the primitive it describes in the text space.
PRIMITIVE_TEXT = {
    "walk": "walking", "run": "running", "jog_in_place": "jogging in place", "stairs_up": "walking up the stairs",
    "stairs_down": "walking down the stairs", "walk_uphill": "walking uphill", "walk_downhill": "walking downhill",
    "turn": "turning on the spot", "stand": "standing still", "sit": "sitting still", "lie": "lying still",
    "sit_down": "sitting down", "stand_up": "standing up from a chair", "lie_down": "lying down from sitting",
    "sit_up": "sitting up from lying", "get_up": "getting up from the floor", "reach": "reaching for something",
    "wave": "waving a hand", "clap": "clapping hands", "throw": "throwing a ball",
    "draw_circle": "drawing a circle in the air", "draw_figure_eight": "drawing a figure eight in the air",
    "eat": "eating", "drink": "drinking", "brush_teeth": "brushing teeth", "type": "typing on a keyboard",
    "comb_hair": "combing hair", "jump": "jumping", "jumping_jacks": "doing jumping jacks", "squat": "doing squats",
    "lunge": "doing lunges", "push_up": "doing push-ups", "cycle_upright": "cycling on an upright exercise bike",
    "cycle_recumbent": "cycling on a recumbent exercise bike", "row": "rowing on a rowing machine",
    "stepper": "exercising on a stepper", "cross_trainer": "exercising on a cross trainer",
    "dribble": "dribbling a basketball", "elevator": "riding an elevator", "treadmill": "walking on a treadmill",
}


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
    elif arg == "synthetic":
        synthetic(config)
    elif arg == "own":  # your own dataset; --config.init_from=<tsfm_stage1:own run>:latest --config.init_only=encoder
        _demo(config)
        tsfm_stage1.own(config)
    elif arg not in (None, ""):
        raise ValueError(f"configs/tsfm_stage2.py: unknown variant {arg!r} (known: demo, demo_k3, demo_siglip, "
                         "synthetic, own)")
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


def synthetic(config: ml_collections.ConfigDict) -> None:
    """The demo encoder on `motion_realsets` only (2 s clips at 50 Hz, 10 sensors), aligned with PRIMITIVE_TEXT.

    The clip's `text` field is not used: it also narrates the lead-in and lead-out ("a person stands still, then
    walks"), so it names activities the label does not, and the label bank needs a fixed text table. Each clip keeps
    a random 1-5 of its 10 sensors (config.data.keep_sensors; evaluation: the first 5), as real sets carry 1 (HAPT,
    MotionSense) to 5 (DSADS).
    """
    _demo(config)
    config.data.update(dict(
        name=SYNTHETIC_MOTION, channel_names=MOTION_CHANNELS, class_names=tuple(PRIMITIVE_TEXT.values()),
        sampling_rate_hz=50.0, max_channels=30, keep_sensors=(1, 5),  # 5 sensors x 6 channels
        dataset_description="Body-worn IMU recording."))
    # No memory bank: with 29 label texts a queue of past (imu, text) pairs holds the positive's own text as a
    # negative, and at 64 entries (lr 1e-3) the loss sat at ln(32 + 64) with vanishing gradients from step ~500.
    config.loss.memory_bank_size = 0
    config.optimizer.learning_rate = 5e-4
    config.batch_size = 32
    config.total_steps = 800  # ~15 min on an idle 2-core machine, ~25 at load 12
    config.log_every_steps = 50
    config.checkpoint.every_steps = 300
    config.eval.update(dict(zero_shot=True, supervision_rates=(), linear_probe=False))
