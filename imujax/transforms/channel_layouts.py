"""RevalExo channel layouts: the 7 lower-body sensors, the 4-slot EVI-MAE mappings and the 42-channel contrastive set.

The RevalExo builder names channels `<sensor>/<acc|gyro>_<axis>` from the csv header (`acc_Right_Foot_x` ->
`right_foot/acc_x`). Upstream selects columns by glob patterns in pattern order (revalexo/revalexo@6ca9000
pretrain/imu-video-mae/migrate_revalexo_data.py, pretrain/contrastive/src/data/multimodaldataset.py):
Pelvis, *_Upper_Leg_*, *_Lower_Leg_*, *_Foot_*, with Right before Left as in the released csv header (the migration
script's comment; unverified against the real files). `SENSORS` is that order.

Two EVI-MAE slot mappings exist upstream and they disagree:
- "pretrain" (migration script and README table): left_arm <- Left_Foot, right_arm <- Right_Foot,
  left_leg <- Left_Upper_Leg, right_leg <- Right_Upper_Leg.
- "finetune_as_released" (`EVI_MAE_IMUTransform` with `use_revalexo_mapping`): indices [15-17], [6-8], [18-20],
  [9-11] into the 21 pattern-ordered acc columns, which pick Right_Foot, Left_Upper_Leg, Left_Foot and
  Right_Lower_Leg for left_arm, right_arm, left_leg, right_leg (its comment names other sensors; revalexo
  train/transforms/imu_transforms.py).
A faithful port of each stage uses that stage's mapping.
"""

from __future__ import annotations

import re

import numpy as np

from imujax.transforms import records

SENSORS = ("pelvis", "right_upper_leg", "left_upper_leg", "right_lower_leg", "left_lower_leg", "right_foot",
           "left_foot")
EVI_MAE_SLOTS = ("left_arm", "right_arm", "left_leg", "right_leg")
AXES = ("x", "y", "z")

# The 21 acc channels in upstream pattern order (the columns the RevalExo EVI-MAE transform indexes into).
ACC_21 = tuple(f"{s}/acc_{a}" for s in SENSORS for a in AXES)
# The 42-channel DeepConvLSTM layout of the contrastive stage: all acc (pattern order), then all gyro.
CONTRASTIVE_42 = ACC_21 + tuple(f"{s}/gyro_{a}" for s in SENSORS for a in AXES)

SLOT_SENSORS = {
    "pretrain": ("left_foot", "right_foot", "left_upper_leg", "right_upper_leg"),
    # indices 15, 6, 18, 9 of ACC_21 (each the first of three axes)
    "finetune_as_released": tuple(ACC_21[i].split("/")[0] for i in (15, 6, 18, 9)),
}


def evi_mae_channels(stage: str = "pretrain") -> tuple[str, ...]:
    """The 12 source channels feeding EVI-MAE's slots (left_arm xyz, right_arm xyz, left_leg xyz, right_leg xyz).

    stage "slots" is for records already named by slot (`left_arm/acc_x`, e.g. the synthetic dataset)."""
    if stage == "slots":
        return evi_mae_slot_names()
    if stage not in SLOT_SENSORS:
        raise ValueError(f"stage must be 'slots' or one of {sorted(SLOT_SENSORS)}, got {stage!r}")
    return tuple(f"{sensor}/acc_{a}" for sensor in SLOT_SENSORS[stage] for a in AXES)


def evi_mae_slot_names() -> tuple[str, ...]:
    return tuple(f"{slot}/acc_{a}" for slot in EVI_MAE_SLOTS for a in AXES)


def to_evi_mae_slots(record: dict, stage: str = "pretrain") -> np.ndarray:
    """record imu [T, C] -> [T, 12] in EVI-MAE slot order (names `evi_mae_slot_names()`); NaN becomes 0 as upstream."""
    return np.nan_to_num(records.select_channels(record, evi_mae_channels(stage)), nan=0.0)


def contrastive_channels(record: dict) -> np.ndarray:
    """record imu [T, C] -> [T, 42] in the contrastive (DeepConvLSTM) channel order; NaN becomes 0."""
    return np.nan_to_num(records.select_channels(record, CONTRASTIVE_42), nan=0.0)


_HEADER = re.compile(r"^(acc|gyro|mag|quat|euler|ori)_(.+)_([A-Za-z0-9])$", re.IGNORECASE)


def channel_name_from_header(column: str) -> str | None:
    """`acc_Right_Upper_Leg_x` -> `right_upper_leg/acc_x`; None for columns that are not sensor axes."""
    m = _HEADER.match(column.strip())
    if not m:
        return None
    kind, sensor, axis = m.groups()
    return f"{sensor.lower()}/{kind.lower()}_{axis.lower()}"
