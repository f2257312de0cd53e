"""Linear resampling along one axis with PyTorch's ``interpolate(mode='linear'/'bilinear', align_corners=False)``
convention: half-pixel source positions clamped at 0, the last sample repeated, no antialiasing.

The one such resize for every input path (video frames, IMU spectrograms, TSFM patches); separable 2-D bilinear is
two calls. Like torch, the source positions are computed in the input's float type (float32 for float32 data), so
float32 results match torch to the last bits that matter and float64 ones to round-off.
"""

from __future__ import annotations

import numpy as np


def linear_resize(x: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    """Resample ``axis`` of ``x`` to ``size`` steps."""
    n = x.shape[axis]
    if n == size:
        return x
    ft = x.dtype.type if np.issubdtype(x.dtype, np.floating) else np.float32
    scale = ft(n) / ft(size)
    src = np.maximum((np.arange(size, dtype=ft) + ft(0.5)) * scale - ft(0.5), ft(0.0))
    i0 = np.minimum(src.astype(np.int64), n - 1)  # src >= 0, so truncation is floor
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = size
    w = (src - i0.astype(ft)).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32).reshape(shape)
    return (1 - w) * np.take(x, i0, axis=axis) + w * np.take(x, i1, axis=axis)
