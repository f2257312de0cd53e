"""TFDS builder `wear`: WEAR inertial windows (4 IMUs x 3-axis accelerometer = 12 channels at 50 Hz).

Manual dir (the WEAR release layout):

  <manual>/raw/inertial/sbj_<k>.csv         columns sbj_id, right_arm_acc_{x,y,z}, left_arm_acc_{x,y,z},
                                            right_leg_acc_{x,y,z}, left_leg_acc_{x,y,z}, label (activity name, or
                                            empty / 'null' for no activity); one row per 50 Hz sample
  <manual>/annotations/wear_split_<n>.json  {"database": {"sbj_<k>": {"subset": "Training" | "Validation", ...}}}

Windows of 2 s with a 1 s stride (WEAR's 120_frames_60_stride features, HIMU-MAE's continued pretraining; spec
§2.5), label = the majority per-sample activity (`null` is class 0). Splits follow the chosen split file:
Training -> train, Validation -> validation. Spectrograms are computed by transforms, not here.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds


SLOTS = ("right_arm", "left_arm", "right_leg", "left_leg")
CSV_CHANNELS = tuple(f"{slot}_acc_{axis}" for slot in SLOTS for axis in "xyz")
CHANNELS = tuple(f"{slot}/acc_{axis}" for slot in SLOTS for axis in "xyz")
ACTIVITIES = ("null", "jogging", "jogging (rotating arms)", "jogging (skipping)", "jogging (sidesteps)",
              "jogging (butt-kicks)", "stretching (triceps)", "stretching (lunging)", "stretching (shoulders)",
              "stretching (hamstrings)", "stretching (lumbar rotation)", "push-ups", "push-ups (complex)", "sit-ups",
              "sit-ups (complex)", "burpees", "lunges", "lunges (complex)", "bench-dips")


class WearFormatError(ValueError):
    """A WEAR file does not have the expected layout; the message names file, line and column."""


@dataclasses.dataclass(eq=False)
class WearConfig(tfds.core.BuilderConfig):
    split_file: int = 1
    rate_hz: float = 50.0
    window_seconds: float = 2.0
    stride_seconds: float = 1.0


def read_inertial_csv(path: str) -> tuple[np.ndarray, list[str]]:
    """(samples [N, 12] float32 in CHANNELS order, per-sample activity names)."""
    with open(path) as fh:
        header = fh.readline().strip().split(",")
        missing = [c for c in (*CSV_CHANNELS, "label") if c not in header]
        if missing:
            raise WearFormatError(f"{path}: header lacks columns {missing}; it has {header}")
        cols = [header.index(c) for c in CSV_CHANNELS]
        label_col = header.index("label")
        values, labels = [], []
        for line_no, line in enumerate(fh, start=2):
            fields = line.rstrip("\n").split(",")
            if len(fields) != len(header):
                raise WearFormatError(f"{path}:{line_no}: {len(fields)} fields, header has {len(header)}")
            try:
                values.append([float(fields[c]) for c in cols])
            except ValueError:
                bad = next(header[c] for c in cols if not _is_float(fields[c]))
                raise WearFormatError(f"{path}:{line_no}: column {bad!r} is not a number: "
                                      f"{fields[header.index(bad)]!r}") from None
            name = fields[label_col].strip() or "null"
            if name not in ACTIVITIES:
                raise WearFormatError(f"{path}:{line_no}: unknown activity {name!r} in column 'label'")
            labels.append(name)
    if not values:
        raise WearFormatError(f"{path}: no samples")
    return np.asarray(values, np.float32), labels


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_split(path: str) -> dict[str, str]:
    """subject -> 'train' / 'validation' from an ActionFormer-style WEAR split file."""
    import json
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing (WEAR annotations/wear_split_<n>.json)")
    with open(path) as fh:
        data = json.load(fh)
    if "database" not in data:
        raise WearFormatError(f"{path}: no top-level field 'database'")
    out = {}
    for subject, entry in data["database"].items():
        subset = entry.get("subset")
        if subset not in ("Training", "Validation"):
            raise WearFormatError(f"{path}: database[{subject!r}].subset is {subset!r}; expected Training/Validation")
        out[subject] = "train" if subset == "Training" else "validation"
    return out


def windows(values: np.ndarray, labels: list[str], window: int, stride: int):
    index = np.asarray([ACTIVITIES.index(n) for n in labels])
    for start in range(0, len(values) - window + 1, stride):
        counts = np.bincount(index[start:start + window], minlength=len(ACTIVITIES))
        yield start, values[start:start + window], int(counts.argmax())


class Builder(tfds.core.GeneratorBasedBuilder):
    """WEAR: 18 subjects, 18 outdoor sports activities + null, 4 accelerometers at 50 Hz."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "2 s / 1 s windows of the 12 raw accelerometer channels, majority labels."}
    BUILDER_CONFIGS = [WearConfig(name=f"split_{n}", split_file=n, description=f"wear_split_{n}.json subjects")
                       for n in (1, 2, 3)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _info(self) -> tfds.core.DatasetInfo:
        c: WearConfig = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=tfds.features.FeaturesDict({
                "imu": tfds.features.Tensor(shape=(int(round(c.window_seconds * c.rate_hz)), len(CHANNELS)),
                                            dtype=np.float32),
                "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                "channels": tfds.features.Sequence(tfds.features.Text()),
                "label": tfds.features.ClassLabel(names=list(ACTIVITIES)),
                "subject": tfds.features.Text(), "start_sec": tfds.features.Scalar(dtype=np.float32),
                "id": tfds.features.Text(),
            }),
            supervised_keys=("imu", "label"),
            citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text(),
            homepage="https://mariusbock.github.io/wear/")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        c: WearConfig = self.builder_config
        root = os.fspath(dl_manager.manual_dir)
        owner = read_split(os.path.join(root, "annotations", f"wear_split_{c.split_file}.json"))
        groups: dict[str, list[str]] = {}
        for subject, split in sorted(owner.items()):
            path = os.path.join(root, "raw", "inertial", f"{subject}.csv")
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} is missing (subject {subject!r} is listed in the split file)")
            groups.setdefault(split, []).append(subject)
        return {split: self._generate_examples(root, subjects) for split, subjects in groups.items()}

    def _generate_examples(self, root: str, subjects: list[str]):
        c: WearConfig = self.builder_config
        window, stride = int(round(c.window_seconds * c.rate_hz)), int(round(c.stride_seconds * c.rate_hz))
        for subject in subjects:
            values, labels = read_inertial_csv(os.path.join(root, "raw", "inertial", f"{subject}.csv"))
            for start, imu, label in windows(values, labels, window, stride):
                key = f"{subject}_{start:07d}"
                yield key, {"imu": imu, "imu_rate_hz": np.float32(c.rate_hz), "channels": list(CHANNELS),
                            "label": label, "subject": subject, "start_sec": np.float32(start / c.rate_hz),
                            "id": key}
