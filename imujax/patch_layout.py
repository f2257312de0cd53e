"""Patch layouts of the EVI-MAE inputs, shared by the host pipeline, the model and the figures.

Training batches carry inputs already cut into patch vectors, because a patchify transpose costs far more inside
the jitted step on CPU (XLA copies element by element) than in numpy per record. Each layout is the order in which
that modality's patch vectors are embedded and reconstructed; the model permutes the (small) weights that upstream
defines in another order, never the activations. Every function works on numpy and jax arrays, with or without
leading batch axes.

- IMU spectrogram [..., C, X, Y] -> [..., L_a, C*p*p], tokens row-major over (Y, X) blocks (upstream swaps the last
  two axes before its 16x16 conv), vectors in (channel, y, x) order: per body part a contiguous (c, kh, kw) slice,
  i.e. the conv-weight order. (Upstream's reconstruction target is (y, x, channel); see `imu_vectors_from_upstream`.)
- Video [..., 3, T, H, W] or frames [..., T, H, W, 3] -> [..., L_v, kt*p*p*3], tokens in (t, h, w) order, vectors in
  (kt, kh, kw, rgb) order: upstream's reconstruction target order.
"""

from __future__ import annotations

import einops


def imu_patches(spectrogram, patch: int):
    """[..., C, X, Y] -> [..., (Y/p)*(X/p), C*p*p]."""
    return einops.rearrange(spectrogram, "... c (w q) (h p) -> ... (h w) (c p q)", p=patch, q=patch)


def imu_from_patches(patches, channels: int, time: int, freq: int, patch: int):
    """Inverse of `imu_patches`: [..., L_a, C*p*p] -> [..., C, time, freq]."""
    return einops.rearrange(patches, "... (h w) (c p q) -> ... c (w q) (h p)", h=freq // patch, w=time // patch,
                            p=patch, q=patch, c=channels)


def imu_vectors_from_upstream(vectors, channels: int):
    """Upstream IMU patch vectors, (y, x, channel) order, -> the `imu_patches` order (channel, y, x)."""
    return einops.rearrange(vectors, "... (k c) -> ... (c k)", c=channels)


def video_patches(video, tubelet: int, patch: int):
    """Channels-first clip [..., 3, T, H, W] -> [..., L_v, kt*p*p*3]."""
    return einops.rearrange(video, "... c (t p0) (h p1) (w p2) -> ... (t h w) (p0 p1 p2 c)",
                            p0=tubelet, p1=patch, p2=patch)


def video_patches_from_frames(frames, tubelet: int, patch: int):
    """Channels-last frames [..., T, H, W, 3] -> [..., L_v, kt*p*p*3] (contiguous runs of p*3 values: cheap)."""
    return einops.rearrange(frames, "... (t p0) (h p1) (w p2) c -> ... (t h w) (p0 p1 p2 c)",
                            p0=tubelet, p1=patch, p2=patch)


def video_from_patches(patches, frames: int, size: int, tubelet: int, patch: int):
    """Inverse of `video_patches`: [..., L_v, kt*p*p*3] -> [..., 3, frames, size, size]."""
    g = size // patch
    return einops.rearrange(patches, "... (t h w) (p0 p1 p2 c) -> ... c (t p0) (h p1) (w p2)",
                            t=frames // tubelet, h=g, w=g, p0=tubelet, p1=patch, p2=patch)
