"""TFDS builder `evi_mae_release`: the EVI-MAE release layout (mf-zhang/IMU-Video-MAE@78e7666 src/dataloader.py).

  <dataset root>/cav_label/{train,test}_{pretrain,finetune}/*.json   {"data": [{"video_id", "imu", "frame_path",
                                                                        "label"}]}, paths relative to the root
  <dataset root>/cav_label/class_labels_indices.csv                   index, mid, display_name

`label` is a comma-separated list of mids, or 0 / "0" for unlabelled clips. The IMU csv is read as upstream reads
it: the FIRST ROW IS TREATED AS A HEADER and dropped (pandas `read_csv`), even where the file has no header; then
the dataset's 12 columns are taken in EVI-MAE slot order [left_arm xyz, right_arm xyz, left_leg xyz, right_leg xyz].
Records: `imu` [T, 12] (`left_arm/acc_x` ...), every video frame at `video_fps` (EVI-MAE samples 16 frames at
stride 4 from these), multi-hot `labels` [C], `label` (first positive, -1 when none), `text`, `id`.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import math
import os
import pathlib
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from imujax.io import video_frames

SLOT_CHANNELS = tuple(f"{slot}/acc_{a}" for slot in ("left_arm", "right_arm", "left_leg", "right_leg") for a in "xyz")
# csv column indices per dataset, in slot order (upstream dataloader)
COLUMNS = {"cmu_mmac": (1, 8, 15, 5, 12, 19, 3, 10, 17, 4, 11, 18), "wear": (10, 11, 12, 1, 2, 3, 7, 8, 9, 4, 5, 6),
           "revalexo": tuple(range(12))}
FOLDERS = {"cmu_mmac": "cmu-mmac-release", "wear": "wear-release", "revalexo": "revalexo-release"}


class ReleaseFormatError(ValueError):
    """Malformed release file; the message names the file and the entry."""


@dataclasses.dataclass(eq=False)
class EviMaeReleaseConfig(tfds.core.BuilderConfig):
    dataset: str = "cmu_mmac"           # which column selection (cmu_mmac | wear | revalexo)
    stage: str = "finetune"             # which label folders: {train,test}_<stage>
    imu_rate_hz: float = 0.0            # nominal rate stored in records (the release does not state one)
    video_fps: float = 30.0
    frame_size: tuple[int, int] = (224, 224)
    jpeg_quality: int = 90


def _configs() -> list[EviMaeReleaseConfig]:
    out = []
    for dataset, rate in (("cmu_mmac", 0.0), ("wear", 50.0), ("revalexo", 60.0)):
        for stage in ("finetune", "pretrain"):
            name = dataset if stage == "finetune" else f"{dataset}_pretrain"
            out.append(EviMaeReleaseConfig(name=name, dataset=dataset, stage=stage, imu_rate_hz=rate,
                                           description=f"{dataset} {stage} split files"))
    return out


def read_classes(path: str) -> tuple[list[str], list[str]]:
    """class_labels_indices.csv -> (mids, display names) in index order."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"index", "mid", "display_name"} <= set(k.strip() for k in rows[0]):
        raise ReleaseFormatError(f"{path}: expected columns index, mid, display_name")
    rows = [{k.strip(): v.strip() for k, v in r.items()} for r in rows]
    rows.sort(key=lambda r: int(r["index"]))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise ReleaseFormatError(f"{path}: indices must be 0..{len(rows) - 1}")
    return [r["mid"] for r in rows], [r["display_name"] for r in rows]


def read_imu(path: str, columns: Sequence[int]) -> np.ndarray:
    """The upstream read: first row dropped as a header, then the selected columns as float32 [T, 12]."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r][1:]
    if not rows:
        raise ReleaseFormatError(f"{path}: no data rows after the first (header) row")
    out = np.empty((len(rows), len(columns)), np.float32)
    for line, row in enumerate(rows, start=2):
        if len(row) <= max(columns):
            raise ReleaseFormatError(f"{path}: line {line} has {len(row)} columns; column {max(columns)} is needed")
        try:
            out[line - 2] = [float(row[c]) for c in columns]
        except ValueError:
            raise ReleaseFormatError(f"{path}: line {line}: non-numeric value in columns {list(columns)}") from None
    return out


def parse_label(value, mids: list[str], where: str) -> np.ndarray:
    multi_hot = np.zeros(len(mids), np.float32)
    text = str(value).strip()
    if text in ("0", ""):
        return multi_hot
    index = {m: i for i, m in enumerate(mids)}
    for mid in text.split(","):
        mid = mid.strip()
        if mid not in index:
            raise ReleaseFormatError(f"{where}: label {mid!r} is not a mid of class_labels_indices.csv")
        multi_hot[index[mid]] = 1.0
    return multi_hot


class Builder(tfds.core.GeneratorBasedBuilder):
    """EVI-MAE release datasets (CMU-MMAC, WEAR, migrated RevalExo): clips with 4-slot IMU, video and labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Release json/csv/mp4 layout, header-row quirk, per-dataset columns."}
    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download the repacked datasets linked from the IMU-Video-MAE README (Google Drive `data_release/`) and pass
    either `data_release/` (holding cmu-mmac-release/, wear-release/, ...) or one dataset root (holding cav_label/)
    as the manual dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        c: EviMaeReleaseConfig = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__, metadata=tfds.core.MetadataDict(),
            features=tfds.features.FeaturesDict({
                "imu": tfds.features.Tensor(shape=(None, len(SLOT_CHANNELS)), dtype=np.float32),
                "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                "channels": tfds.features.Sequence(tfds.features.Text()),
                "video": tfds.features.Sequence(tfds.features.Image(shape=(*c.frame_size, 3),
                                                                    encoding_format="jpeg")),
                "video_fps": tfds.features.Scalar(dtype=np.float32),
                "labels": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "label": tfds.features.Scalar(dtype=np.int32),
                "text": tfds.features.Text(),
                "id": tfds.features.Text(),
            }),
            citation=(pathlib.Path(__file__).parent / "CITATIONS.bib").read_text(),
            homepage="https://github.com/mf-zhang/IMU-Video-MAE")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        c: EviMaeReleaseConfig = self.builder_config
        root = dataset_root(os.fspath(dl_manager.manual_dir), c.dataset)
        mids, names = read_classes(os.path.join(root, "cav_label", "class_labels_indices.csv"))
        self.info.metadata["class_names"] = names
        splits = {}
        for split in ("train", "test"):
            files = sorted(glob.glob(os.path.join(root, "cav_label", f"{split}_{c.stage}", "*.json")))
            if files:
                splits[split] = self._generate_examples(root, files, mids, names)
        if not splits:
            raise FileNotFoundError(f"{root}/cav_label: no {{train,test}}_{c.stage}/*.json label files")
        return splits

    def _generate_examples(self, root, files, mids, names) -> Iterator[tuple[str, dict]]:
        c: EviMaeReleaseConfig = self.builder_config
        for path in files:
            with open(path, encoding="utf-8") as f:
                try:
                    entries = json.load(f)["data"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ReleaseFormatError(f"{path}: expected a JSON object with a 'data' list: {e}") from None
            for k, entry in enumerate(entries):
                where = f"{path}: data[{k}]"
                missing = [f for f in ("video_id", "imu", "frame_path", "label") if f not in entry]
                if missing:
                    raise ReleaseFormatError(f"{where}: missing field(s) {missing}")
                labels = parse_label(entry["label"], mids, where)
                video = os.path.join(root, str(entry["frame_path"]))
                info = video_frames.video_info(video)
                times = np.arange(int(math.floor(info.duration_s * c.video_fps + 1e-9))) / c.video_fps
                positives = np.flatnonzero(labels)
                yield str(entry["video_id"]), {
                    "imu": read_imu(os.path.join(root, str(entry["imu"])), COLUMNS[c.dataset]),
                    "imu_rate_hz": np.float32(c.imu_rate_hz), "channels": list(SLOT_CHANNELS),
                    "video": video_frames.jpeg_frames_at(video, times, c.frame_size, c.jpeg_quality),
                    "video_fps": np.float32(c.video_fps), "labels": labels,
                    "label": np.int32(positives[0] if len(positives) else -1),
                    "text": ", ".join(names[i] for i in positives), "id": str(entry["video_id"])}


def dataset_root(manual_dir: str, dataset: str) -> str:
    if os.path.isdir(os.path.join(manual_dir, "cav_label")):
        return manual_dir
    candidate = os.path.join(manual_dir, FOLDERS[dataset])
    if os.path.isdir(os.path.join(candidate, "cav_label")):
        return candidate
    raise FileNotFoundError(f"{manual_dir}: neither it nor {FOLDERS[dataset]}/ holds a cav_label/ folder")
