"""Spectrogram reconstruction figures (matplotlib): layout, frequency axis upwards and named shape errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imujax.eval import plots


def test_one_row_per_example_and_three_panels_per_channel(tmp_path):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(6, 2, 8, 10)).astype(np.float32)
    masked = inputs * (rng.random(inputs.shape) > 0.5)
    path = plots.plot_spectrogram_reconstruction(inputs, masked, inputs.copy(), str(tmp_path / "sub" / "r.png"),
                                                 max_examples=3)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (6 * 220, 3 * 220)  # 2 channels x 3 panels, 3 of the 6 examples


def test_lowest_frequency_is_drawn_at_the_bottom(tmp_path):
    x = np.zeros((1, 1, 4, 3), np.float32)
    x[0, 0, 0] = 1.0  # the lowest frequency bin, bright
    path = plots.plot_spectrogram_reconstruction(x, x, x, str(tmp_path / "f.png"))
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), np.float64)
    column = rgb[:, rgb.shape[1] // 6] @ [0.2126, 0.7152, 0.0722]  # through the middle of the input panel
    h = len(column)
    assert column[int(0.8 * h)] > column[int(0.35 * h)] + 100  # viridis yellow below, purple above


def test_shape_mismatch_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"three batches \[N, C, H, W\] of one shape"):
        plots.plot_spectrogram_reconstruction(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 5)), np.zeros((1, 1, 4, 4)),
                                              str(tmp_path / "x.png"))
