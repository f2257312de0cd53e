"""Contrastive IMU pretraining that pays off on real recordings (imujax recipe, no upstream release): SimCLR-style
views of one window (rotation, time warp, scaling, jitter, sensor dropout), level-keeping input, a small conv
encoder. See benchmarks/HISTORY.md "Real data" for what was tried and README "Real labelled data" for the figures.

  # (d) in-domain: pretrain on the training subjects of one set (cross-subject `xsub` split, labels unused)
  python -m imujax.main --config=configs/imu_simclr.py:own:hapt --workdir=runs/simclr_own_hapt
  # (e) transfer: every other real set (all subjects) + the synthetic data; the named set is never seen
  python -m imujax.main --config=configs/imu_simclr.py:transfer:hapt --workdir=runs/simclr_transfer_hapt

Real sets: hapt, dsads, motionsense, built from their original downloads (config.data.manual_dirs.<set>, default
$IMUJAX_DATA_DIR/<set>) with the builders' `xsub` configs (50 Hz, 2 s windows, 1 s stride).
"""

import ml_collections

from configs import common

REAL_SETS = ("hapt", "dsads", "motionsense")
SYNTHETIC = "synthetic_egomotion/default"
SYNTHETIC_MOTION = "synthetic_egomotion/motion_realsets"  # the real sets' sensor units, 2 s clips at 50 Hz
# 6-channel (acc xyz, gyro xyz) sensor groups; a record uses those it has (DSADS: 5 units, synthetic: 5 slots).
_UNITS = ("waist", "pocket", "torso", "right_arm", "left_arm", "right_leg", "left_leg", "head")
CHANNEL_GROUPS = tuple(tuple(f"{unit}/{s}_{a}" for s in ("acc", "gyro") for a in "xyz") for unit in _UNITS)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "imu_simclr"
    config.model = ml_collections.ConfigDict(dict(widths=(32, 64, 64), kernel=5, dim=64, proj_dim=64))
    config.loss = ml_collections.ConfigDict(dict(temperature=0.1))
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
        return config
    if target not in REAL_SETS or kind not in ("own", "transfer", "synthetic_own"):
        raise ValueError(f"configs/imu_simclr.py: unknown variant {arg!r} (known: own:<set>, transfer:<set>, "
                         f"synthetic_own:<set> for <set> in {REAL_SETS}, synthetic)")
    if kind == "own":  # the training subjects of the set under test
        config.data.name = f"{target}/xsub"
    elif kind == "synthetic_own":  # the training subjects of the set under test (unlabelled) + the synthetic corpus
        config.data.mixture = (f"{target}/xsub", SYNTHETIC_MOTION)
        config.data.name = f"{target}/xsub"
    else:  # never the set under test; every subject of the others, and the synthetic data
        others = [f"{s}/xsub" for s in REAL_SETS if s != target]
        config.data.mixture = (*others, SYNTHETIC)
        config.data.name = others[0]
        config.data.train_split = "train+test"
    return config
