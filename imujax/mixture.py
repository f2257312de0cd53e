"""Multi-dataset mixtures with temperature sampling (TSFM Stage 1/2, alxdofficial/tsfm@308eea1
datasets/imu_pretraining_dataset/multi_dataset_loader.py).

Dataset i is drawn with probability p_i ∝ n_i^T (T = 0.5: square-root sampling; T = 1: proportional; T = 0: uniform).
``mix_sources`` builds the mixture with ``grain.MapDataset.mix`` over per-source shuffled, repeated datasets and tags
every record with ``dataset_index`` so per-dataset metrics can be computed downstream.
The config side: ``config.data.mixture`` lists the TFDS names of a run's training datasets (empty: the single
``config.data.name``), ``config.data.mixture_temperature`` is T, and ``config.data.per_dataset.<dataset>`` overrides
``config.data`` fields for one dataset (channel names, description, rate, patch seconds, class names ...);
``dataset_settings`` resolves them. ``config.data.name`` stays the evaluation dataset and must be in the mixture.
"""

from __future__ import annotations

from typing import Any, Sequence

import grain
import ml_collections
import numpy as np


def temperature_weights(sizes: Sequence[int], temperature: float = 0.5) -> np.ndarray:
    sizes = np.asarray(sizes, np.float64)
    if sizes.ndim != 1 or len(sizes) == 0 or np.any(sizes <= 0):
        raise ValueError(f"dataset sizes must be a non-empty list of positive counts, got {sizes.tolist()}")
    w = sizes ** temperature
    return w / w.sum()


def _tag(index: int):
    def tag(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "dataset_index": np.int32(index)}
    return tag


def mix_sources(sources: Sequence[Any], temperature: float = 0.5, seed: int = 0,
                weights: Sequence[float] | None = None) -> grain.MapDataset:
    """Infinite mixture of random-access sources (anything with __len__/__getitem__, e.g. tfds.data_source).

    Each source is shuffled (seed + i) and repeated, tagged with ``dataset_index``, then interleaved in proportion
    to ``weights`` (default: temperature weights of the source lengths).
    """
    if not sources:
        raise ValueError("mix_sources needs at least one source")
    weights = np.asarray(weights if weights is not None else temperature_weights([len(s) for s in sources],
                                                                                   temperature), np.float64)
    if len(weights) != len(sources):
        raise ValueError(f"{len(weights)} weights for {len(sources)} sources")
    datasets = [grain.MapDataset.source(s).shuffle(seed=seed + i).repeat().map(_tag(i))
                for i, s in enumerate(sources)]
    return grain.MapDataset.mix(datasets, weights=weights.tolist())


# -- config: which datasets a run trains on and their per-dataset settings --------------------------------------------
def dataset_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """TFDS names of the training datasets: config.data.mixture, or (config.data.name,) without a mixture."""
    mixture = tuple(config.data.get("mixture", ()) or ())
    if not mixture:
        return (config.data.name,)
    if len(set(mixture)) != len(mixture):
        raise ValueError(f"config.data.mixture lists a dataset twice: {mixture}")
    if config.data.name not in mixture:
        raise ValueError(f"config.data.name={config.data.name!r} (the evaluation dataset) must be one of "
                         f"config.data.mixture={mixture}")
    return mixture


def short_names(names: Sequence[str]) -> tuple[str, ...]:
    """Metric-friendly names: the dataset part of 'dataset/config', or the whole name with '_' when ambiguous."""
    short = [n.partition("/")[0] for n in names]
    if len(set(short)) != len(short):
        short = [n.replace("/", "_") for n in names]
    return tuple(short)


def eval_index(config: ml_collections.ConfigDict) -> int:
    """Index of config.data.name (the dataset evaluation records come from) among the training datasets."""
    return dataset_names(config).index(config.data.name)


def dataset_settings(config: ml_collections.ConfigDict, index: int) -> ml_collections.ConfigDict:
    """config.data with the overrides of config.data.per_dataset.<dataset> (keyed by the name before '/')."""
    name = dataset_names(config)[index]
    per_dataset = config.data.get("per_dataset") or {}
    overrides = dict(per_dataset.get(name.partition("/")[0], None) or {})
    unknown = sorted(set(overrides) - set(config.data) - {"mixture", "per_dataset"})
    if unknown or {"mixture", "per_dataset", "name"} & set(overrides):
        raise ValueError(f"config.data.per_dataset.{name.partition('/')[0]}: {sorted(overrides)} must be fields of "
                         f"config.data other than name/mixture/per_dataset (unknown: {unknown})")
    settings = ml_collections.ConfigDict({k: v for k, v in config.data.items() if k != "per_dataset"})
    settings.update(dict(overrides, name=name))
    return settings


def all_dataset_settings(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    return [dataset_settings(config, i) for i in range(len(dataset_names(config)))]
