"""Reconstruction PNG grids: layout, colour scale and the file round trip through Pillow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imujax.eval import reconstruction


def test_grid_layout_and_png(tmp_path):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(3, 2, 8, 10)).astype(np.float32)
    masked = inputs * (rng.random(inputs.shape) > 0.5)
    path = tmp_path / "sub" / "recon.png"
    image = reconstruction.write_reconstruction_grid(str(path), inputs, masked, inputs.copy(), scale=2, gap=1)
    assert image.shape == (3 * (16 + 1), 2 * 3 * (20 + 1), 3)
    back = np.asarray(Image.open(path))
    np.testing.assert_array_equal(back, image)
    # A perfect reconstruction draws exactly the input panel (columns 0 and 2 of each channel group).
    np.testing.assert_array_equal(image[:16, 0:20], image[:16, 2 * 21:2 * 21 + 20])
    assert not np.array_equal(image[:16, 0:20], image[:16, 21:41])


def test_colormap_is_monotone_in_brightness():
    rgb = reconstruction.colormap(np.linspace(0, 1, 50)).astype(float)
    luminance = rgb @ [0.2126, 0.7152, 0.0722]
    assert np.all(np.diff(luminance) >= -1e-9) and luminance[-1] > luminance[0] + 150


def test_flip_puts_row_zero_at_the_bottom():
    x = np.zeros((1, 4, 3), np.float32)
    x[0, 0] = 1.0  # the lowest frequency bin
    img = reconstruction.reconstruction_grid(x, x, x, scale=1, gap=0)
    assert img[-1, 0].sum() > img[0, 0].sum()


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="shapes differ"):
        reconstruction.reconstruction_grid(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)), np.zeros((1, 4, 4)))
