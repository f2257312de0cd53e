"""TFDS builder `wear`: WEAR inertial windows (4 IMUs x 3-axis accelerometer = 12 channels at 50 Hz).

Manual dir: the WEAR download (https://mariusbock.github.io/wear/), either release:

  first release (2023; the one HIMU-MAE used)        IMWUT release (2024)
  raw/inertial/sbj_<k>.csv                           raw/inertial/50hz/sbj_<k>.csv
  annotations/wear_split_<n>.json, n = 1..3          annotations/60fps/wear_split_<n>.json, n = 1..18
  (3 folds, 6 validation subjects each)              (leave-one-subject-out: sbj_<n-1> is Validation)

  sbj_<k>.csv: header sbj_id, right_arm_acc_{x,y,z}, right_leg_acc_{x,y,z}, left_leg_acc_{x,y,z},
               left_arm_acc_{x,y,z}, label (an activity name, or 'null' / empty for no activity); one row per 50 Hz
               sample. Columns are found by name.
  wear_split_<n>.json: {"version": "Wear", "database": {"sbj_<k>": {"subset": "Training" | "Validation",
               "duration", "fps", "annotations"}}, "label_dict": {activity: 0..17}}

Windows of 2 s with a 1 s stride, starting at samples 0, 50, ... while start < N - 100. This is the rule of WEAR's
`apply_sliding_window`, and the windows are those of WEAR's 120_frames_60_stride inertial/combined features that
HIMU-MAE pretrains on (amir-goudarzi/IMU_testing@9c52aa2 src/data/wear_dataset_ssl.py). `imu` is [100, 12] in the CSV's
column order, which is also the channel order of those features. Empty or NaN sensor cells become -1, as WEAR's feature
script does. Label = the majority per-sample activity (`null` is class 0, then `label_dict` order); WEAR's own baselines
label a window by its last sample. Splits follow the chosen split file: Training -> train, Validation -> validation.
Spectrograms are computed by transforms, not here. Verified facts and their sources: README.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds


# CSV column order of the release (WEAR data_creation/3_create_raw_inertial_dataset.py `sens_header`).
SLOTS = ("right_arm", "right_leg", "left_leg", "left_arm")
CSV_CHANNELS = tuple(f"{slot}_acc_{axis}" for slot in SLOTS for axis in "xyz")
CHANNELS = tuple(f"{slot}/acc_{axis}" for slot in SLOTS for axis in "xyz")
# 'null' followed by WEAR's label_dict order (data_creation/utils.py; main.py builds ['null'] + list(label_dict)).
ACTIVITIES = ("null", "jogging", "jogging (rotating arms)", "jogging (skipping)", "jogging (sidesteps)",
              "jogging (butt-kicks)", "stretching (triceps)", "stretching (lunging)", "stretching (shoulders)",
              "stretching (hamstrings)", "stretching (lumbar rotation)", "push-ups", "push-ups (complex)", "sit-ups",
              "sit-ups (complex)", "burpees", "lunges", "lunges (complex)", "bench-dips")
NULL_LABELS = ("", "null", "NULL", "nan", "NaN")
MISSING_VALUE = -1.0  # WEAR's 4_create_features_and_annotations.py fills NaN with -1 before windowing
# (split file, CSV folder) candidates, first release first.
LAYOUTS = (("annotations/wear_split_{n}.json", "raw/inertial"),
           ("annotations/60fps/wear_split_{n}.json", "raw/inertial/50hz"))


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
        header = [name.strip() for name in fh.readline().strip().split(",")]
        missing = [c for c in (*CSV_CHANNELS, "label") if c not in header]
        if missing:
            raise WearFormatError(f"{path}: header lacks columns {missing}; it has {header}")
        cols = [header.index(c) for c in CSV_CHANNELS]
        label_col = header.index("label")
        values, labels = [], []
        for line_no, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split(",")
            if len(fields) != len(header):
                raise WearFormatError(f"{path}:{line_no}: {len(fields)} fields, header has {len(header)}")
            row = []
            for c in cols:
                text = fields[c].strip()
                try:
                    value = float(text) if text else math.nan
                except ValueError:
                    raise WearFormatError(f"{path}:{line_no}: column {header[c]!r} is not a number: "
                                          f"{fields[c]!r}") from None
                row.append(MISSING_VALUE if math.isnan(value) else value)
            values.append(row)
            name = fields[label_col].strip()
            name = "null" if name in NULL_LABELS else name
            if name not in ACTIVITIES:
                raise WearFormatError(f"{path}:{line_no}: unknown activity {name!r} in column 'label'")
            labels.append(name)
    if not values:
        raise WearFormatError(f"{path}: no samples")
    return np.asarray(values, np.float32), labels


def read_split(path: str) -> dict[str, str]:
    """subject -> 'train' / 'validation' from a WEAR split file; its label_dict must match ACTIVITIES."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing (WEAR annotations/wear_split_<n>.json)")
    with open(path) as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as err:
            raise WearFormatError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise WearFormatError(f"{path}: no top-level object 'database'")
    if "label_dict" in data:
        names = sorted(data["label_dict"], key=lambda name: data["label_dict"][name])
        if ["null", *names] != list(ACTIVITIES):
            raise WearFormatError(f"{path}: label_dict {data['label_dict']} differs from the builder's activities "
                                  f"{list(ACTIVITIES[1:])}")
    out = {}
    for subject, entry in data["database"].items():
        subset = entry.get("subset") if isinstance(entry, dict) else None
        if subset not in ("Training", "Validation"):
            raise WearFormatError(f"{path}: database[{subject!r}].subset is {subset!r}; expected Training/Validation")
        out[subject] = "train" if subset == "Training" else "validation"
    return out


def find_layout(root: str, n: int) -> tuple[str, str]:
    """(split file, folder of the subject CSVs) of split ``n`` in either WEAR release layout."""
    for split_file, csv_dir in LAYOUTS:
        path = os.path.join(root, split_file.format(n=n))
        if os.path.exists(path):
            return path, os.path.join(root, csv_dir)
    tried = [os.path.join(root, split_file.format(n=n)) for split_file, _ in LAYOUTS]
    raise FileNotFoundError(f"WEAR split file for split {n} is missing: tried {tried}")


def windows(values: np.ndarray, labels: list[str], window: int, stride: int):
    """(start, [window, 12] samples, majority label) for start = 0, stride, ... while start < N - window."""
    index = np.asarray([ACTIVITIES.index(n) for n in labels])
    for start in range(0, len(values) - window, stride):
        counts = np.bincount(index[start:start + window], minlength=len(ACTIVITIES))
        yield start, values[start:start + window], int(counts.argmax())


class Builder(tfds.core.GeneratorBasedBuilder):
    """WEAR: 18 subjects in the split files, 18 outdoor workout activities + null, 4 accelerometers at 50 Hz."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "2 s / 1 s windows of the 12 raw accelerometer channels, majority labels.",
                     "1.1.0": "Checked against the WEAR release code: CSV channel order (right arm, right leg, left "
                              "leg, left arm), WEAR's window count, NaN cells -> -1, IMWUT layout and its 18 "
                              "leave-one-subject-out splits."}
    BUILDER_CONFIGS = [WearConfig(name=f"split_{n}", split_file=n, description=f"wear_split_{n}.json subjects"
                                  + (" (IMWUT release only)" if n > 3 else "")) for n in range(1, 19)]
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
            metadata=tfds.core.MetadataDict(),
            citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text(),
            homepage="https://mariusbock.github.io/wear/")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        c: WearConfig = self.builder_config
        root = os.fspath(dl_manager.manual_dir)
        split_path, csv_dir = find_layout(root, c.split_file)
        owner = read_split(split_path)
        self.info.metadata["split_file"] = os.path.relpath(split_path, root)
        groups: dict[str, list[str]] = {}
        for subject, split in sorted(owner.items(), key=lambda item: _subject_order(item[0])):
            path = os.path.join(csv_dir, f"{subject}.csv")
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} is missing (subject {subject!r} is listed in {split_path})")
            groups.setdefault(split, []).append(path)
        return {split: self._generate_examples(paths) for split, paths in groups.items()}

    def _generate_examples(self, paths: list[str]):
        c: WearConfig = self.builder_config
        window, stride = int(round(c.window_seconds * c.rate_hz)), int(round(c.stride_seconds * c.rate_hz))
        for path in paths:
            subject = os.path.splitext(os.path.basename(path))[0]
            values, labels = read_inertial_csv(path)
            for start, imu, label in windows(values, labels, window, stride):
                key = f"{subject}_{start:07d}"
                yield key, {"imu": imu, "imu_rate_hz": np.float32(c.rate_hz), "channels": list(CHANNELS),
                            "label": label, "subject": subject, "start_sec": np.float32(start / c.rate_hz),
                            "id": key}


def _subject_order(subject: str) -> tuple:
    tail = subject.rsplit("_", 1)[-1]
    return (0, int(tail), subject) if tail.isdigit() else (1, 0, subject)
