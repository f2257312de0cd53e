"""Multi-dataset mixtures with temperature sampling (TSFM Stage 1/2, shared/specs/tsfm.md §7-§9).

Dataset i is drawn with probability p_i ∝ n_i^T (T = 0.5: square-root sampling; T = 1: proportional; T = 0: uniform).
``mix_sources`` builds the mixture with ``grain.MapDataset.mix`` over per-source shuffled, repeated datasets and tags
every record with ``dataset_index`` so per-dataset metrics can be computed downstream.
``group_balanced_weights`` is the upstream HEAD alternative: per-sample weights count(group)^(T-1), capped at 20x
the smallest weight, normalised (balance over label groups, not datasets).
"""

from __future__ import annotations

from typing import Any, Sequence

import grain
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


def group_balanced_weights(groups: Sequence[Any], temperature: float = 0.0, cap: float = 20.0) -> np.ndarray:
    """Per-sample sampling weights count(group)^(T-1), capped at cap x the minimum, normalised to sum 1."""
    groups = np.asarray(groups)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    w = counts[inverse].astype(np.float64) ** (temperature - 1.0)
    w = np.minimum(w, cap * w.min())
    return w / w.sum()
