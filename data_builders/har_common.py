"""Generic windowing TFDS builder for human-activity-recognition datasets.

A dataset package subclasses `HarBuilder`, names its classes (`LABELS`), channel count and native rate, and implements
two methods: `discover(root)` lists the units of work (usually files) with their subject where the file name tells
it, and `read(root, source)` parses one unit into `imujax.io.har.Session`s in physical units. This module does the
rest: optional resampling to `rate_hz`, windows of `window_seconds` every `stride_seconds`, window labels, subject
splits, the per-file bad-data policy (a file that cannot be parsed raises, or with bad_file_policy="skip" is
skipped; a file whose sessions are all shorter than one window is skipped under either policy; both are listed with
the error in metadata.json "bad_files") and the record schema:

  imu float32 [W, C] (physical units), imu_rate_hz, channels ("<location>/<sensor>_<axis>"), label (ClassLabel with
  the dataset's class names), subject (int), session (text), start_seconds (window start in its session), id.

Window label: the majority of the window's per-sample labels (ties go to the smaller class index); windows in which
more than half of the samples are unannotated are dropped.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import os
import pathlib
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from imujax.io import csv_table, har, timeseries

PARSE_ERRORS = (har.HarFormatError, csv_table.CsvFormatError, timeseries.TimeSeriesError, OSError)


@dataclasses.dataclass(eq=False)
class HarConfig(tfds.core.BuilderConfig):
    rate_hz: float | None = None     # None keeps the dataset's native rate
    window_seconds: float = 2.0
    stride_seconds: float = 1.0
    # split name -> subject ids; None puts every subject in "train"
    split_subjects: Mapping[str, Sequence[int]] | None = None
    bad_file_policy: str = "raise"   # "raise" or "skip" (skipped sources are listed in metadata.json)


@dataclasses.dataclass(frozen=True)
class Source:
    """One unit of parsing work: `name` for logs, `subject` if known before parsing, `payload` for `read`."""

    name: str
    subject: int | None = None
    payload: Any = None


class HarBuilder(tfds.core.GeneratorBasedBuilder, abc.ABC):
    """Base class; subclasses set the class attributes below and implement `discover` and `read`."""

    LABELS: tuple[str, ...] = ()
    NUM_CHANNELS: int = 0
    NATIVE_RATE_HZ: float = 0.0
    HOMEPAGE: str = ""
    EXTRA_FEATURES: tuple[str, ...] = ()   # per-window means of Session.extras, stored as float32 scalars

    @abc.abstractmethod
    def discover(self, root: str) -> list[Source]:
        """Units of work under the manual dir; raise HarFormatError if the layout is not recognised."""

    @abc.abstractmethod
    def read(self, root: str, source: Source) -> Iterable[har.Session]:
        """Sessions of one source, signals in physical units at the dataset's native rate."""

    # ------------------------------------------------------------------ TFDS plumbing

    @property
    def rate_hz(self) -> float:
        config: HarConfig = self.builder_config
        return float(config.rate_hz or self.NATIVE_RATE_HZ)

    @property
    def num_channels(self) -> int:
        """Channels per record; a builder whose channel set depends on its config overrides this."""
        return self.NUM_CHANNELS

    @property
    def window(self) -> int:
        return int(round(self.builder_config.window_seconds * self.rate_hz))

    @property
    def stride(self) -> int:
        return int(round(self.builder_config.stride_seconds * self.rate_hz))

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "imu": tfds.features.Tensor(shape=(self.window, self.num_channels), dtype=np.float32),
            "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
            "channels": tfds.features.Sequence(tfds.features.Text()),
            "label": tfds.features.ClassLabel(names=list(self.LABELS)),
            "subject": tfds.features.Scalar(dtype=np.int32),
            "session": tfds.features.Text(),
            "start_seconds": tfds.features.Scalar(dtype=np.float32),
            "id": tfds.features.Text(),
        }
        features.update({name: tfds.features.Scalar(dtype=np.float32) for name in self.EXTRA_FEATURES})
        package = pathlib.Path(inspect.getfile(type(self))).parent
        return tfds.core.DatasetInfo(
            builder=self,
            description=type(self).__doc__,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("imu", "label"),
            metadata=tfds.core.MetadataDict(),
            citation=(package / "CITATIONS.bib").read_text(),
            homepage=self.HOMEPAGE,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config: HarConfig = self.builder_config
        if config.bad_file_policy not in ("raise", "skip"):
            raise ValueError(f"bad_file_policy must be 'raise' or 'skip', got {config.bad_file_policy!r}")
        if self.window <= 0 or self.stride <= 0:
            raise ValueError(f"window_seconds/stride_seconds give {self.window}/{self.stride} samples at "
                             f"{self.rate_hz} Hz; both must be at least one sample")
        root = os.fspath(dl_manager.manual_dir)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{root}: manual dir does not exist. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        sources = self.discover(root)
        if not sources:
            raise FileNotFoundError(f"{root}: no data files found. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        self._bad_files: list[dict[str, str]] = []
        self.info.metadata["bad_files"] = self._bad_files
        owner = split_owner(config.split_subjects)
        if owner is None:
            return {"train": self._generate_examples(root, sources, None, owner)}
        return {split: self._generate_examples(root, sources, split, owner) for split in config.split_subjects}

    def _generate_examples(self, root: str, sources: list[Source], split: str | None,
                           owner: Mapping[int, str] | None) -> Iterator[tuple[str, dict]]:
        config: HarConfig = self.builder_config
        for source in sources:
            if owner is not None and source.subject is not None and owner.get(source.subject) != split:
                continue
            try:
                sessions = list(self.read(root, source))
                records = [r for s in sessions if owner is None or owner.get(s.subject) == split
                           for r in self.session_records(s)]
            except PARSE_ERRORS as e:
                if config.bad_file_policy == "raise":
                    raise
                logging.warning("%s: skipping %s: %s", self.name, source.name, e)
                if all(bad["file"] != source.name for bad in self._bad_files):
                    self._bad_files.append({"file": source.name, "error": str(e)})
                    self.info.metadata["bad_files"] = self._bad_files
                continue
            if not records:
                self._report_short(source, [s for s in sessions if owner is None or owner.get(s.subject) == split])
            yield from records

    def _report_short(self, source: Source, sessions: list[har.Session]) -> None:
        """A source whose sessions are all shorter than one window gives no record: it is listed in bad_files
        (under either policy: it is valid data that this window size cannot use), never dropped silently."""
        lengths = [int(round(len(s.signals) * self.rate_hz / s.rate_hz)) for s in sessions]
        if not lengths or max(lengths) >= self.window:
            return  # no session in this split, or windows dropped for lack of labels: not a length problem
        error = (f"{source.name}: {'empty' if max(lengths) == 0 else 'too short'}: its longest session has "
                 f"{max(lengths)} samples at {self.rate_hz:g} Hz, fewer than one window of {self.window} samples "
                 f"({self.builder_config.window_seconds:g} s)")
        logging.warning("%s: rejecting %s", self.name, error)
        if all(bad["file"] != source.name for bad in self._bad_files):
            self._bad_files.append({"file": source.name, "error": error})
            self.info.metadata["bad_files"] = self._bad_files

    def session_records(self, session: har.Session) -> list[tuple[str, dict]]:
        """(key, record) for every kept window of one session."""
        if len(session.channels) != self.num_channels:
            raise har.HarFormatError(f"{session.source}: {len(session.channels)} channels, the dataset has "
                                     f"{self.num_channels}")
        session = har.resample_session(session, self.rate_hz)
        starts = timeseries.window_starts(len(session.signals), self.window, self.stride)
        out = []
        for k, start in enumerate(starts):
            label = window_label(session.labels[start:start + self.window], len(self.LABELS))
            if label is None:
                continue
            key = f"{session.session_id}_w{k:04d}"
            record = {
                "imu": session.signals[start:start + self.window].astype(np.float32),
                "imu_rate_hz": np.float32(self.rate_hz),
                "channels": list(session.channels),
                "label": label,
                "subject": np.int32(session.subject),
                "session": session.session_id,
                "start_seconds": np.float32(start / self.rate_hz),
                "id": key,
            }
            for name in self.EXTRA_FEATURES:
                values = np.asarray(session.extras[name][start:start + self.window], np.float64)
                record[name] = np.float32(np.nanmean(values) if np.isfinite(values).any() else np.nan)
            out.append((key, record))
        return out


def window_label(labels: np.ndarray, num_classes: int) -> int | None:
    """Majority class of a window's per-sample labels; None if more than half are unannotated."""
    labels = np.asarray(labels, np.int64)
    annotated = labels[labels != har.UNLABELED]
    if 2 * len(annotated) < len(labels) or len(annotated) == 0:
        return None
    return timeseries.majority_label(annotated, num_classes)


def split_owner(split_subjects: Mapping[str, Sequence[int]] | None) -> dict[int, str] | None:
    """subject -> split; a subject in two splits is an error."""
    if split_subjects is None:
        return None
    owner: dict[int, str] = {}
    for split, subjects in split_subjects.items():
        for subject in subjects:
            if subject in owner:
                raise ValueError(f"subject {subject!r} is in both split {owner[subject]!r} and {split!r}")
            owner[int(subject)] = split
    return owner


def codes_to_indices(code_names: Mapping[Any, str], labels: Sequence[str]) -> dict[Any, int]:
    """Dataset label code -> class index in `labels` (codes mapped to names not in `labels` are unannotated)."""
    return {code: (labels.index(name) if name in labels else har.UNLABELED) for code, name in code_names.items()}
