"""Temperature mixtures: dataset frequencies over 10k draws follow p_i ∝ n_i^0.5; group balancing."""

from __future__ import annotations

import numpy as np
import pytest

from imujax import mixture


class _Source:
    def __init__(self, n: int, name: str):
        self.n, self.name = n, name

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"name": self.name, "i": int(i)}


def test_temperature_weights_formula():
    np.testing.assert_allclose(mixture.temperature_weights([100, 400, 2500], 0.5), np.array([10, 20, 50]) / 80)
    np.testing.assert_allclose(mixture.temperature_weights([1, 3], 0.0), [0.5, 0.5])
    np.testing.assert_allclose(mixture.temperature_weights([1, 3], 1.0), [0.25, 0.75])
    with pytest.raises(ValueError, match="positive"):
        mixture.temperature_weights([3, 0])


def test_mixture_frequencies_within_two_percent_over_10k_draws():
    sizes = [100, 400, 2500, 30]
    sources = [_Source(n, f"d{i}") for i, n in enumerate(sizes)]
    mixed = mixture.mix_sources(sources, temperature=0.5, seed=3)
    draws = [mixed[i] for i in range(10_000)]
    idx = np.array([d["dataset_index"] for d in draws])
    assert all(d["name"] == f"d{d['dataset_index']}" for d in draws[:200])
    freq = np.bincount(idx, minlength=len(sizes)) / len(idx)
    expected = np.sqrt(sizes) / np.sqrt(sizes).sum()
    np.testing.assert_allclose(freq, expected, atol=0.02)
    # the small source is cycled through: every record of it appears, reshuffled per source
    small = sorted({d["i"] for d in draws if d["dataset_index"] == 3})
    assert small == list(range(30))
