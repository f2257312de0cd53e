"""Contrastive IMU pretraining that pays off on real recordings (imujax recipe, no upstream release): SimCLR-style
views of one window (rotation, time warp, scaling, jitter, sensor dropout), level-keeping input, a small conv
encoder. See benchmarks/HISTORY.md "Real data" for what was tried and README "Real labelled data" for the figures.

  # (d) in-domain: pretrain on the training subjects of one set (cross-subject `xsub` split, labels unused)
  python -m imujax.main --config=configs/imu_simclr.py:own:hapt --workdir=runs/simclr_own_hapt
  # (e) transfer: every other real set (all subjects) + the synthetic corpus (SupCon over its own generated labels);
  # the named set is never seen, no real label is used
  python -m imujax.main --config=configs/imu_simclr.py:transfer:hapt --workdir=runs/simclr_transfer_hapt
  # (j) as (e) without the synthetic corpus: what the corpus adds to real pretraining (issue 26)
  python -m imujax.main --config=configs/imu_simclr.py:transfer_real:hapt --workdir=runs/simclr_transfer_real_hapt

Fine-tuning (benchmarks/real_data.py row f) follows `finetune_config(name)`: `plain` (encoder and head at one
learning rate from the first step) or `lpft` (LP-FT: the head starts as the logistic probe on the frozen encoder, then
encoder and head train at a small learning rate after a warm-up).

Real sets: hapt, dsads, motionsense, sp_sw_har, built from their original downloads (config.data.manual_dirs.<set>,
default $IMUJAX_DATA_DIR/<set>) with the builders' cross-subject configs (SPLIT_CONFIG; 2 s windows, 1 s stride, read
at 50 Hz).
"""

import ml_collections

from configs import common

REAL_SETS = ("hapt", "dsads", "motionsense", "sp_sw_har")
# Each set's cross-subject builder config: HAPT users 1-4 / 5-6, DSADS p1-p6 / p7-p8, MotionSense 1-7 / 8-10;
# sp_sw_har's `holdout` puts s03 (of the shipped s01-s03) in test.
SPLIT_CONFIG = {"hapt": "xsub", "dsads": "xsub", "motionsense": "xsub", "sp_sw_har": "holdout"}
SYNTHETIC_MOTION = "synthetic_egomotion/motion_realsets"  # the real sets' sensor units, 2 s clips at 50 Hz
# 6-channel (acc xyz, gyro xyz) sensor groups; a record uses those it has (DSADS: 5 units, synthetic: 5 slots).
_UNITS = ("waist", "pocket", "torso", "right_arm", "left_arm", "right_leg", "left_leg", "head", "phone", "watch")
CHANNEL_GROUPS = tuple(tuple(f"{unit}/{s}_{a}" for s in ("acc", "gyro") for a in "xyz") for unit in _UNITS)


def tfds_name(real_set: str) -> str:
    return f"{real_set}/{SPLIT_CONFIG[real_set]}"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "imu_simclr"
    config.model = ml_collections.ConfigDict(dict(widths=(32, 64, 64), kernel=5, dim=64, proj_dim=64))
    config.loss = ml_collections.ConfigDict(dict(temperature=0.1, label_weight=0.0))
    config.augment = ml_collections.ConfigDict(dict(max_rotation_degrees=20.0, scale_sigma=0.1, jitter_sigma=0.05,
                                                    max_stretch=1.25, sensor_dropout=0.1))
    config.data.update(dict(imu_channel_groups=CHANNEL_GROUPS, imu_rate_hz=50, imu_length=100, auto_build=True,
                            worker_count=0, mixture_temperature=0.5))
    for name in REAL_SETS:
        config.data.manual_dirs[name] = common.raw_data_dir(name)
    config.optimizer.update(dict(name="adamw", learning_rate=2e-3, weight_decay=1e-4, schedule="cosine",
                                 warmup_steps=20))
    config.batch_size = 128
    config.num_epochs = 0
    config.total_steps = 300
    config.log_every_steps = 50
    config.checkpoint.every_steps = 300
    config.checkpoint.best_metric = "none"
    config.eval.update(dict(retrieval=False, linear_probe=True))
    config.figures = False

    kind, _, target = (arg or "own:hapt").partition(":")
    if kind == "synthetic":  # the articulated synthetic corpus only (issue 26); no real recording
        config.data.name = SYNTHETIC_MOTION
        # The corpus's labels are generated with it, so they may shape the features: half the loss is SupCon over
        # its primitives (windows of one primitive are positives). 6000 steps: scored over every subject of the real
        # sets (benchmarks/real_data.py --folds, three seeds), longer training raised HAPT and DSADS from 600 to 3000
        # steps, and 6000 against 3000 kept HAPT and MotionSense level (within 0.005) and raised DSADS (+0.01) and
        # sp_sw_har (+0.10) (benchmarks/HISTORY.md, issue 26).
        config.loss.label_weight = 0.5
        config.total_steps = 6000
        config.checkpoint.every_steps = 6000
        return config
    if target not in REAL_SETS or kind not in ("own", "transfer", "transfer_real", "synthetic_own"):
        raise ValueError(f"configs/imu_simclr.py: unknown variant {arg!r} (known: own:<set>, transfer:<set>, "
                         f"transfer_real:<set>, synthetic_own:<set> for <set> in {REAL_SETS}, synthetic)")
    if kind == "own":  # the training subjects of the set under test
        config.data.name = tfds_name(target)
    elif kind == "synthetic_own":  # the training subjects of the set under test (unlabelled) + the synthetic corpus
        config.data.mixture = (tfds_name(target), SYNTHETIC_MOTION)
        config.data.name = tfds_name(target)
        config.loss.label_weight = 0.5  # SupCon over the synthetic records' primitives, as `synthetic`
    else:  # never the set under test; every subject of the others, and (transfer) the synthetic corpus with its labels
        others = [tfds_name(s) for s in REAL_SETS if s != target]
        config.data.mixture = (*others, SYNTHETIC_MOTION) if kind == "transfer" else tuple(others)
        config.data.name = others[0]
        config.data.train_split = "train+test"
        # As `synthetic`: the corpus's generated labels are what made it pay off (row g); the real windows get views
        # only. Fine-tuning from this (e) beats fine-tuning from the old one (8-activity corpus, no labels) on three
        # of four sets, one seed (benchmarks/HISTORY.md, issue 20, session 13). `transfer_real` has no label at all.
        config.loss.label_weight = 0.5 if kind == "transfer" else 0.0
        if kind == "transfer":
            # Datasets drawn in proportion to their size (T = 1), not its square root: the corpus is ~72% of a batch
            # instead of ~55%. Over every subject (two seeds) that raised all four held-out sets, sp_sw_har by 0.09
            # (benchmarks/HISTORY.md, issue 26, session 16).
            config.data.mixture_temperature = 1.0
        config.total_steps = 1500  # e and j at the step count their figures were measured with
        config.checkpoint.every_steps = 1500
    return config


# Fine-tuning encoder + linear head on labelled windows (benchmarks/real_data.py, row f). `lr` is the head's peak
# learning rate, the encoder's is lr * encoder_lr_scale; both warm up linearly over warmup_fraction of the steps,
# then decay (cosine). `head_init`: "random", or "probe" (the logistic probe fitted on the frozen encoder's training
# embeddings). `lrs` is the grid the benchmark picks `lr` from on a validation split of the training subjects
# (never the test subjects).
FINETUNE = {
    "plain": dict(lr=3e-3, lrs=(1e-3, 3e-3, 1e-2), encoder_lr_scale=1.0, warmup_fraction=0.0, head_init="random",
                  weight_decay=1e-4),
    # LP-FT (Kumar et al. 2022, "Fine-tuning can distort pretrained features", arXiv:2202.10054): a random head's
    # first gradients rewrite the pretrained features; starting from the linear probe's head and moving slowly
    # keeps them.
    "lpft": dict(lr=3e-4, lrs=(1e-4, 3e-4, 1e-3), encoder_lr_scale=1.0, warmup_fraction=0.1, head_init="probe",
                 weight_decay=1e-4),
}


def finetune_config(name: str = "lpft") -> ml_collections.ConfigDict:
    if name not in FINETUNE:
        raise ValueError(f"configs/imu_simclr.py: unknown fine-tune recipe {name!r} (known: {sorted(FINETUNE)})")
    return ml_collections.ConfigDict(dict(FINETUNE[name], name=name))
