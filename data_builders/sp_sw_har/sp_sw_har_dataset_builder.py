"""TFDS builder `sp_sw_har`: smartphone + smartwatch acc/gyro windows with Timed-Up-and-Go activity labels.

For each execution the phone (`_sp`) and watch (`_sw`) csv are resampled on one uniform grid over their common
time span (12 channels `phone/acc_x..phone/gyro_z, watch/acc_x..watch/gyro_z`), cut into windows, and each window
gets the majority of its per-sample labels. Subjects go to splits by the config's `split_subjects`; every record
carries its `subject` number for leave-one-subject-out evaluation.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from data_builders.sp_sw_har import parsing
from imujax.io import csv_table, timeseries


@dataclasses.dataclass(eq=False)
class SpSwHarConfig(tfds.core.BuilderConfig):
    rate_hz: float = 100.0
    window_seconds: float = 2.0
    stride_seconds: float = 1.0
    label_source: str = "phone"     # whose per-sample labels are used: "phone" or "watch"
    # split name -> subject ids ("s01", ...); None puts every subject in "train"
    split_subjects: Mapping[str, Sequence[str]] | None = None
    bad_file_policy: str = "raise"  # "raise" or "skip" (skipped files are listed in metadata.json)

    @property
    def window(self) -> int:
        return int(round(self.window_seconds * self.rate_hz))

    @property
    def stride(self) -> int:
        return int(round(self.stride_seconds * self.rate_hz))


# Every fifth subject held out: spread over the recruitment order, and the three-subject sample keeps both splits.
_HOLDOUT_TEST = ("s03", "s08", "s13", "s18", "s23")
_ALL_SUBJECTS = tuple(f"s{i:02d}" for i in range(1, 24))


class Builder(tfds.core.GeneratorBasedBuilder):
    """sp-sw-har: 23 subjects, phone + watch IMU, 5 activity classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Phone+watch paired windows, majority window labels, subject splits."}
    BUILDER_CONFIGS = [
        SpSwHarConfig(name="default", description="All subjects in train; 100 Hz, 2 s windows, 1 s stride."),
        SpSwHarConfig(name="holdout", description="Test subjects s03, s08, s13, s18, s23; others in train.",
                      split_subjects={"train": tuple(s for s in _ALL_SUBJECTS if s not in _HOLDOUT_TEST),
                                      "test": _HOLDOUT_TEST}),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download the dataset (Zenodo DOI 10.5281/zenodo.8398688, or the `DATA/` folder of
    https://github.com/GeoTecINIT/sp-sw-har-dataset) and pass its root, the folder holding `s01/ ... s23/`,
    `subjects_info.csv` and `executions_info.csv`, as the manual dir:
    `tfds build data_builders/sp_sw_har --manual_dir=/path/to/DATA`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        config: SpSwHarConfig = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "imu": tfds.features.Tensor(shape=(config.window, len(parsing.CHANNELS)), dtype=np.float32),
                "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                "channels": tfds.features.Sequence(tfds.features.Text()),
                "label": tfds.features.ClassLabel(names=list(parsing.LABELS)),
                "phone_orientation": tfds.features.ClassLabel(names=list(parsing.ORIENTATIONS)),
                "subject": tfds.features.Scalar(dtype=np.int32),
                "id": tfds.features.Text(),
            }),
            supervised_keys=("imu", "label"),
            metadata=tfds.core.MetadataDict(),
            citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text(),
            homepage="https://github.com/GeoTecINIT/sp-sw-har-dataset",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config: SpSwHarConfig = self.builder_config
        if config.bad_file_policy not in ("raise", "skip"):
            raise ValueError(f"bad_file_policy must be 'raise' or 'skip', got {config.bad_file_policy!r}")
        root = os.fspath(dl_manager.manual_dir)
        listed = parsing.read_subjects_info(root)
        orientations = parsing.read_execution_orientations(root)
        executions, problems = parsing.discover_executions(root)
        if problems and config.bad_file_policy == "raise":
            raise parsing.SpSwHarError(f"{root}: {problems[0]['file']}: {problems[0]['error']}")
        if not executions:
            raise FileNotFoundError(f"{root}: no sXX/sXX_YY_sp.csv + _sw.csv pairs found. "
                                    f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        _warn_on_count_mismatch(executions, listed)
        groups = assign_splits(executions, config.split_subjects, set(listed))
        self._bad_files = list(problems)
        return {split: self._generate_examples(root, group, orientations) for split, group in groups.items()}

    def _generate_examples(self, root: str, executions: list[parsing.Execution],
                           orientations: Mapping[str, str]) -> Iterator[tuple[str, dict]]:
        config: SpSwHarConfig = self.builder_config
        for execution in executions:
            try:
                windows = execution_windows(execution, orientations, config)
            except (parsing.SpSwHarError, csv_table.CsvFormatError, timeseries.TimeSeriesError) as e:
                if config.bad_file_policy == "raise":
                    raise
                logging.warning("sp_sw_har: skipping execution %s: %s", execution.execution_id, e)
                self._bad_files.append({"file": execution.execution_id, "error": str(e)})
                self.info.metadata["bad_files"] = self._bad_files
                continue
            yield from windows
        self.info.metadata["bad_files"] = self._bad_files


def assign_splits(executions: list[parsing.Execution], split_subjects: Mapping[str, Sequence[str]] | None,
                  known_subjects: set[str]) -> dict[str, list[parsing.Execution]]:
    """Executions per split; unknown subject ids are an error, splits without data are left out with a warning."""
    if split_subjects is None:
        return {"train": list(executions)}
    owner: dict[str, str] = {}
    for split, subjects in split_subjects.items():
        for subject in subjects:
            if subject not in known_subjects:
                raise ValueError(f"split_subjects[{split!r}] names {subject!r}, which is not in subjects_info.csv")
            if subject in owner:
                raise ValueError(f"subject {subject!r} is in both split {owner[subject]!r} and {split!r}")
            owner[subject] = split
    groups: dict[str, list[parsing.Execution]] = {split: [] for split in split_subjects}
    for execution in executions:
        if execution.subject in owner:
            groups[owner[execution.subject]].append(execution)
        else:
            logging.info("sp_sw_har: subject %s is in no split; its data is not used", execution.subject)
    for split in [s for s, group in groups.items() if not group]:
        logging.warning("sp_sw_har: split %r has no data in the manual dir and is not generated", split)
        del groups[split]
    if not groups:
        raise ValueError(f"none of the subjects in split_subjects {dict(split_subjects)} has data in the manual dir")
    return groups


def _warn_on_count_mismatch(executions: list[parsing.Execution], listed: Mapping[str, int]) -> None:
    found: dict[str, int] = {}
    for execution in executions:
        found[execution.subject] = found.get(execution.subject, 0) + 1
    for subject, count in sorted(found.items()):
        if subject not in listed:
            raise parsing.SpSwHarError(f"subject {subject} has data but is not in subjects_info.csv")
        if listed[subject] != count:
            logging.warning("sp_sw_har: %s has %d executions on disk, subjects_info.csv lists %d",
                            subject, count, listed[subject])


def execution_windows(execution: parsing.Execution, orientations: Mapping[str, str],
                      config: SpSwHarConfig) -> list[tuple[str, dict]]:
    """(key, record) for every full window of one execution."""
    if execution.execution_id not in orientations:
        raise parsing.SpSwHarError(f"execution {execution.execution_id} is missing from executions_info.csv")
    phone = parsing.read_device_csv(execution.phone_csv)
    watch = parsing.read_device_csv(execution.watch_csv)
    paired = parsing.pair_and_resample(phone, watch, config.rate_hz, config.label_source)
    starts = timeseries.window_starts(len(paired.imu), config.window, config.stride)
    labels = timeseries.window_labels(paired.labels, starts, config.window, len(parsing.LABELS))
    out = []
    for k, (start, label) in enumerate(zip(starts, labels)):
        key = f"{execution.execution_id}_w{k:03d}"
        out.append((key, {
            "imu": paired.imu[start:start + config.window].astype(np.float32),
            "imu_rate_hz": np.float32(config.rate_hz),
            "channels": list(parsing.CHANNELS),
            "label": int(label),
            "phone_orientation": orientations[execution.execution_id],
            "subject": np.int32(execution.subject_number),
            "id": key,
        }))
    return out
