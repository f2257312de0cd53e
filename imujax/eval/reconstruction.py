"""MAE reconstruction pictures: the arrays a system's `pictures` hook returns, and the PNG grid of spectrograms.

A `Reconstruction` holds input / masked input / reconstruction images of a batch and says what they are (`kind`), so
`imujax.figures` draws them without knowing the system. `paste_patches` builds the masked input and the
reconstruction from a masked autoencoder's patch predictions (norm-pix predictions de-normalised with each target
patch's own mean and standard deviation, the usual MAE visualisation).

The spectrogram grid (rows = examples; columns = input / masked / reconstruction) is coloured with matplotlib's
viridis and written with Pillow. Every example row shares one colour scale (its input's 1st-99th percentile), so the
three panels are comparable; multi-channel inputs [N, C, H, W] show each channel as its own panel group, left to
right. Images are drawn with the lowest frequency at the bottom (row 0 of the array is the top of the picture unless
``flip``).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from flax import struct
from PIL import Image

SPECTROGRAM = "spectrogram"  # [N, C, H(freq), W(time)], any units; drawn by `write_reconstruction_grid`
VIDEO = "video"  # [N, 3, T, H, W] RGB in [0, 1]; drawn by `imujax.eval.plots.plot_video_reconstruction`


@struct.dataclass
class Reconstruction:
    """One figure: three image batches of the same shape, and what they are (SPECTROGRAM or VIDEO)."""
    inputs: jax.Array
    masked: jax.Array
    recon: jax.Array
    kind: str = struct.field(pytree_node=False, default=SPECTROGRAM)


def paste_patches(pred, target, mask, norm_pix: bool):
    """Patch vectors [..., L, D] -> (masked input: removed patches 0, reconstruction: visible patches from the target,
    removed ones from the prediction, de-normalised with the target patch's mean and unbiased variance under norm-pix).
    mask [..., L]: 1 = removed."""
    pred = pred.astype(jnp.float32)
    if norm_pix:
        mean = target.mean(axis=-1, keepdims=True)
        pred = pred * jnp.sqrt(target.var(axis=-1, keepdims=True, ddof=1) + 1e-6) + mean
    removed = mask[..., None].astype(jnp.float32)
    return target * (1 - removed), target * (1 - removed) + pred * removed


def colormap(values: np.ndarray) -> np.ndarray:
    """values in [0, 1] (NaN as 0) -> uint8 RGB [..., 3] with matplotlib's viridis."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
    return matplotlib.colormaps["viridis"](v, bytes=True)[..., :3]


def _as_nchw(name: str, x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"write_reconstruction_grid: {name} must be [N, H, W] or [N, C, H, W], got {x.shape}")
    return x


def reconstruction_grid(inputs, masked, recon, *, max_rows: int = 8, scale: int = 2, gap: int = 2,
                        flip: bool = True) -> np.ndarray:
    """uint8 RGB image [rows*(H*scale+gap), C*3*(W*scale+gap), 3] of the three panels per example and channel."""
    panels = [_as_nchw("inputs", inputs), _as_nchw("masked", masked), _as_nchw("recon", recon)]
    if not panels[0].shape == panels[1].shape == panels[2].shape:
        raise ValueError(f"write_reconstruction_grid: shapes differ: inputs {panels[0].shape}, masked "
                         f"{panels[1].shape}, recon {panels[2].shape}")
    n, c, h, w = panels[0].shape
    rows = min(n, max_rows)
    cell_h, cell_w = h * scale + gap, w * scale + gap
    canvas = np.full((rows * cell_h, c * 3 * cell_w, 3), 255, np.uint8)
    for i in range(rows):
        lo, hi = np.percentile(panels[0][i], [1, 99])
        span = max(hi - lo, 1e-6)
        for ch in range(c):
            for p, panel in enumerate(panels):
                img = (panel[i, ch] - lo) / span
                img = img[::-1] if flip else img
                rgb = np.repeat(np.repeat(colormap(img), scale, axis=0), scale, axis=1)
                col = (ch * 3 + p) * cell_w
                canvas[i * cell_h:i * cell_h + h * scale, col:col + w * scale] = rgb
    return canvas


def write_reconstruction_grid(path: str, inputs, masked, recon, **kwargs) -> np.ndarray:
    """Write the grid as a PNG at ``path`` (folders created) and return the RGB array (e.g. for TensorBoard)."""
    image = reconstruction_grid(inputs, masked, recon, **kwargs)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
    return image
