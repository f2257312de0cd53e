"""MAE reconstruction pictures as arrays: what a system's `pictures` hook returns.

A `Reconstruction` holds input / masked input / reconstruction images of a batch and says what they are (`kind`), so
`imujax.figures` draws them (with `imujax.eval.plots`) without knowing the system. `paste_patches` builds the masked
input and the reconstruction from a masked autoencoder's patch predictions (norm-pix predictions de-normalised with
each target patch's own mean and standard deviation, the usual MAE visualisation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

SPECTROGRAM = "spectrogram"  # [N, C, H(freq), W(time)], any units: `plots.plot_spectrogram_reconstruction`
VIDEO = "video"  # [N, 3, T, H, W], RGB in [0, 1]: `plots.plot_video_reconstruction`


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
