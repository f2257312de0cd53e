"""TFDS builder: simulated head-camera video synchronised with body-worn IMUs.

Two families of configs: the original 8-activity egomotion clips (`default`, `tiny`) and the articulated motion
corpus (`motion_*`, see corpus.py). Writes array_record shards (several per split) with JPEG frames encoded by
Pillow, so building and reading need no TensorFlow.
"""
from __future__ import annotations

import functools
import multiprocessing

import numpy as np
import tensorflow_datasets as tfds

from . import clips, corpus
from .activities import CLASS_DESCRIPTIONS, CLASS_NAMES
from .config import (DEFAULT, MOTION_1M, MOTION_SMALL, MOTION_TINY, MOTION_VIDEO_TINY, TINY, EgomotionConfig,
                     MotionCorpusConfig)
from .primitives import ACTIVITIES
from .imu import CHANNEL_NAMES
from .kinematics import SLOTS


class Builder(tfds.core.GeneratorBasedBuilder):
    """Synthetic egomotion: 8 activities, IMU on wrists, ankles and head, head-camera video."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [DEFAULT, TINY, MOTION_TINY, MOTION_VIDEO_TINY, MOTION_SMALL, MOTION_1M]
    DEFAULT_BUILDER_CONFIG_NAME = "default"

    def __init__(self, *, file_format=None, **kwargs):
        # array_record gives random access (tfds.data_source / grain) and needs no TensorFlow.
        super().__init__(file_format=file_format or "array_record", **kwargs)

    @property
    def egomotion_config(self) -> EgomotionConfig:
        return self.builder_config

    def _info(self) -> tfds.core.DatasetInfo:
        if isinstance(self.builder_config, MotionCorpusConfig):
            return self._corpus_info(self.builder_config)
        c = self.egomotion_config
        frame = tfds.features.Image(shape=(c.frame_size, c.frame_size, 3), encoding_format="jpeg")
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "imu": tfds.features.Tensor(shape=(c.num_imu_samples, len(CHANNEL_NAMES)), dtype=np.float32),
                "channels": tfds.features.Sequence(tfds.features.Text()),
                "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                "video_fps": tfds.features.Scalar(dtype=np.float32),
                "video": tfds.features.Sequence(frame, length=c.num_frames),
                "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                "text": tfds.features.Text(),
                "subject": tfds.features.Scalar(dtype=np.int32),
                "id": tfds.features.Text(),
            }),
            supervised_keys=("imu", "label"),
            metadata=tfds.core.MetadataDict(
                channel_names=list(CHANNEL_NAMES),
                slots=list(SLOTS),
                class_descriptions=dict(CLASS_DESCRIPTIONS),
            ),
        )

    def _corpus_info(self, c: MotionCorpusConfig) -> tfds.core.DatasetInfo:
        from . import sensors
        features = {
                "imu": tfds.features.Tensor(shape=(c.num_imu_samples, 6 * len(c.placements)), dtype=np.float32),
                "channels": tfds.features.Sequence(tfds.features.Text()),
                "imu_rate_hz": tfds.features.Scalar(dtype=np.float32),
                "video_fps": tfds.features.Scalar(dtype=np.float32),
                "label": tfds.features.ClassLabel(names=list(ACTIVITIES)),
                "sample_label": tfds.features.Tensor(shape=(c.num_imu_samples,), dtype=np.int32),
                "text": tfds.features.Text(),
                "subject": tfds.features.Scalar(dtype=np.int32),
                "id": tfds.features.Text(),
        }
        if c.video_fps > 0:
            frame = tfds.features.Image(shape=(c.frame_size, c.frame_size, 3), encoding_format="jpeg")
            features["video"] = tfds.features.Sequence(frame, length=c.num_frames)
            if c.depth:
                features["depth"] = tfds.features.Tensor(shape=(c.num_frames, c.frame_size, c.frame_size),
                                                         dtype=np.uint16)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("imu", "label"),
            metadata=tfds.core.MetadataDict(
                channel_names=corpus.channel_names(c.placements),
                placements={p: sensors.PLACEMENTS[p].description for p in c.placements},
            ),
        )

    def download_and_prepare(self, *, download_dir=None, download_config=None, **kwargs) -> None:
        """As in TFDS, but defaults to the config's shard count (small data would otherwise be one shard)."""
        download_config = download_config or tfds.download.DownloadConfig()
        if download_config.num_shards is None:
            download_config = download_config.replace(num_shards=self.builder_config.num_shards)
        super().download_and_prepare(download_dir=download_dir, download_config=download_config, **kwargs)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # everything is simulated
        c = self.builder_config
        if isinstance(c, MotionCorpusConfig):
            return {split: self._generate_corpus(c, split) for split in ("train", "test")}
        return {
                "train": self._generate_examples(c.train_subjects),
                "test": self._generate_examples(c.test_subjects),
        }

    def _generate_examples(self, subjects: range):
        c = self.egomotion_config
        for subject in subjects:
            for class_index in range(len(CLASS_NAMES)):
                for clip in range(c.clips_per_class):
                    yield clips.clip_id(subject, class_index, clip), clips.clip_example(c, subject, class_index, clip)

    @staticmethod
    def _generate_corpus(c: MotionCorpusConfig, split: str):
        """Chunks in order; with workers > 1 they are generated by a process pool (same records)."""
        work = functools.partial(corpus.generate, c, split)
        chunks = range(c.num_chunks(split))
        if c.workers == 1:
            for chunk in chunks:
                yield from work(chunk)
            return
        with multiprocessing.get_context("spawn").Pool(c.workers) as pool:
            for records in pool.imap(work, chunks):
                yield from records


def build(data_dir: str, config: str = "default") -> None:
    """Build the dataset into `data_dir` unless it is already there (safe to call repeatedly)."""
    builder = Builder(data_dir=data_dir, config=config)
    if builder.is_prepared():
        return
    builder.download_and_prepare()
