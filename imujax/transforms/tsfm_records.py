"""TSFM record -> fixed-shape patch arrays with channel indices into the channel-description table, one patcher per
training dataset (Stage 1 and Stage 2 alike).

Per record (numpy, grain workers): channels -> optional SO(3) rotation per body location -> patches of
``patch_seconds`` resampled to 64 steps and z-scored -> padded to (max_patches, max_channels).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from imujax import mixture
from imujax.text import descriptions
from imujax.transforms import records, tsfm_augment, tsfm_patches


class RecordPatcher:
    """Shared record -> fixed-shape patch arrays (+ channel indices into the description table).

    ``data`` holds the dataset's settings (default config.data); its channels are rows first_row, first_row + 1, ...
    of the description table.
    """

    def __init__(self, config: ml_collections.ConfigDict, channel_table: list[str],
                 data: ml_collections.ConfigDict | None = None, first_row: int = 0):
        self.data = config.data if data is None else data
        self.index = {name: first_row + i for i, name in enumerate(channel_table)}

    def __call__(self, record: dict, rng: np.random.Generator | None, patch_seconds: float):
        d = self.data
        names = list(d.imu_channels) or [c.decode() if isinstance(c, bytes) else str(c) for c in record["channels"]]
        imu = records.select_channels(record, names) if d.imu_channels else np.asarray(record["imu"], np.float32)
        if rng is not None and d.rotation_prob and rng.random() < d.rotation_prob:
            imu, _ = tsfm_augment.rotate_triads(imu, names, rng)
        rate = float(record["imu_rate_hz"])
        patch_seconds = min(patch_seconds, imu.shape[0] / rate)  # capped by the recording length
        patches = tsfm_patches.preprocess_recording(imu, rate, patch_seconds, max_patches=d.max_patches)
        patches, patch_mask, channel_mask = tsfm_patches.pad_record(patches, d.max_patches, d.max_channels)
        ids = np.zeros(d.max_channels, np.int32)
        missing = [n for n in names if n not in self.index]
        if missing:
            raise ValueError(f"channels {missing} have no description (config.data.imu_channels / channel table)")
        ids[:len(names)] = [self.index[n] for n in names]
        return patches, patch_mask, channel_mask, ids


def _channel_names(data: ml_collections.ConfigDict) -> list[str]:
    """A dataset's channel names: its imu_channels, or its declared channel list."""
    if data.imu_channels:
        return list(data.imu_channels)
    if data.channel_names:
        return list(data.channel_names)
    where = f"config.data.per_dataset.{data.name.partition('/')[0]}" if data.get("mixture") else "config.data"
    raise ValueError(f"{where}.imu_channels or .channel_names must list the channels of {data.name!r} "
                     "(their descriptions are embedded once at start-up)")


def dataset_patchers(config: ml_collections.ConfigDict, leading: tuple[str, ...] = ()
                     ) -> tuple[list[str], list[RecordPatcher]]:
    """One RecordPatcher per training dataset (config.data.mixture, or config.data.name) and the description strings
    they index: ``leading`` first, then each dataset's channels described with that dataset's description, rate and
    patch length (the channel string of upstream DATA_FORMAT.md)."""
    strings, patchers = list(leading), []
    for settings in mixture.all_dataset_settings(config):
        for key in ("max_patches", "max_channels"):
            if settings[key] != config.data[key]:
                raise ValueError(f"config.data.per_dataset.{settings.name.partition('/')[0]}.{key}: the batch shape is "
                                 f"shared by every dataset; set config.data.{key} instead")
        names = _channel_names(settings)
        patchers.append(RecordPatcher(config, names, data=settings, first_row=len(strings)))
        patch = settings.patch_seconds if config.text.augment else None
        strings += [descriptions.channel_string(settings.dataset_description, descriptions.describe_channel(n),
                                                settings.sampling_rate_hz, patch) for n in names]
    return strings, patchers


def record_dataset(record: dict, default: int) -> int:
    """The record's dataset (mixtures tag records with ``dataset_index``; evaluation records are of ``default``)."""
    return int(record["dataset_index"]) if "dataset_index" in record else default
