"""TFDS builder: simulated head-camera video synchronised with five body-worn IMUs.

Writes array_record shards (several per split) with JPEG frames encoded by Pillow, so building
and reading need no TensorFlow.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from . import clips
from .activities import CLASS_DESCRIPTIONS, CLASS_NAMES
from .config import DEFAULT, TINY, EgomotionConfig
from .imu import CHANNEL_NAMES
from .kinematics import SLOTS


class Builder(tfds.core.GeneratorBasedBuilder):
    """Synthetic egomotion: 8 activities, IMU on wrists, ankles and head, head-camera video."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [DEFAULT, TINY]
    DEFAULT_BUILDER_CONFIG_NAME = "default"

    def __init__(self, *, file_format=None, **kwargs):
        # array_record gives random access (tfds.data_source / grain) and needs no TensorFlow.
        super().__init__(file_format=file_format or "array_record", **kwargs)

    @property
    def egomotion_config(self) -> EgomotionConfig:
        return self.builder_config

    def _info(self) -> tfds.core.DatasetInfo:
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

    def download_and_prepare(self, *, download_dir=None, download_config=None, **kwargs) -> None:
        """As in TFDS, but defaults to the config's shard count (small data would otherwise be one shard)."""
        download_config = download_config or tfds.download.DownloadConfig()
        if download_config.num_shards is None:
            download_config = download_config.replace(num_shards=self.egomotion_config.num_shards)
        super().download_and_prepare(download_dir=download_dir, download_config=download_config, **kwargs)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # everything is simulated
        c = self.egomotion_config
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


def build(data_dir: str, config: str = "default") -> None:
    """Build the dataset into `data_dir` unless it is already there (safe to call repeatedly)."""
    builder = Builder(data_dir=data_dir, config=config)
    if builder.is_prepared():
        return
    builder.download_and_prepare()
