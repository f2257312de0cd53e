"""Video transforms in numpy/Pillow: frame sampling, crops, resizes and normalisation.

Frames are uint8 [F, H, W, 3] (RGB). Every random choice takes an explicit numpy Generator so a
sample is reproducible from its seed. The EVI-MAE recipe (VideoMAE `GroupMultiScaleCrop`, bilinear
resize, ImageNet normalisation, [C, T, H, W] output) is that of mf-zhang/IMU-Video-MAE@78e7666 src/dataloader.py and
src/transforms.py.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import einops
import numpy as np
from PIL import Image

from imujax.transforms import resize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MULTI_SCALE_CROP_SCALES = (1.0, 0.875, 0.75, 0.66)


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _check_frames(frames: np.ndarray, where: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{where}: expected frames of shape [F, H, W, 3], got {frames.shape}")
    return frames


# -- frame sampling -------------------------------------------------------------------------------


def sample_frame_indices(
    num_available: int, num_frames: int = 16, stride: int = 4, rng: np.random.Generator | None = None
) -> np.ndarray:
    """EVI-MAE frame ids: num_frames at `stride` inside a window of num_frames * stride frames.

    With rng the window starts at a uniform offset in [0, num_available - window] (train); without
    it the window is centred (eval). As upstream, once the next step would reach past the clip the
    index stops advancing, so short clips repeat their last sampled frame.
    """
    if num_available <= 0:
        raise ValueError(f"sample_frame_indices: the clip has no frames (num_available={num_available})")
    window = num_frames * stride
    slack = max(num_available - window, 0)
    start = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
    ids = np.empty(num_frames, dtype=np.int64)
    position = start  # 0-based here; upstream keeps position + 1 and compares with the clip length
    for i in range(num_frames):
        ids[i] = position
        if position + 1 + stride < num_available:
            position += stride
    return ids


def linspace_frame_indices(num_available: int, num_frames: int = 16) -> np.ndarray:
    """RevalExo frame ids: linspace(0, n - 1, num_frames) truncated to int."""
    if num_available <= 0:
        raise ValueError(f"linspace_frame_indices: the clip has no frames (num_available={num_available})")
    return np.linspace(0, num_available - 1, num_frames).astype(np.int64)


def decode_frames(encoded: Sequence[bytes], indices: Sequence[int]) -> np.ndarray:
    """Decode only the chosen JPEG/PNG frames -> uint8 [len(indices), H, W, 3]."""
    images = []
    for i in indices:
        with Image.open(io.BytesIO(encoded[int(i)])) as image:
            images.append(np.asarray(image.convert("RGB")))
    return np.stack(images)


# -- geometry -------------------------------------------------------------------------------------


def resize_frames(frames: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Bilinear resize to size (int: square, or (height, width)).

    uint8 frames use Pillow's BILINEAR filter (what the upstream PIL pipelines call; it
    antialiases when shrinking). Float frames use plain bilinear interpolation with
    align_corners=False (torch `interpolate` convention, no antialiasing).
    """
    frames = _check_frames(frames, "resize_frames")
    height, width = _size_hw(size)
    if frames.shape[1:3] == (height, width):
        return frames
    if frames.dtype == np.uint8:
        return np.stack(
            [np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames]
        )
    frames = frames.astype(np.float32, copy=False)
    return resize.linear_resize(resize.linear_resize(frames, height, axis=1), width, axis=2)


def crop(frames: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """frames[:, top:top+height, left:left+width], checked to lie inside the image."""
    frames = _check_frames(frames, "crop")
    h, w = frames.shape[1:3]
    if top < 0 or left < 0 or top + height > h or left + width > w or height <= 0 or width <= 0:
        raise ValueError(f"crop: box top={top} left={left} {height}x{width} is outside the {h}x{w} frames")
    return frames[:, top : top + height, left : left + width]


def center_crop(frames: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Centre crop with torchvision's rounding: top = round((H - h) / 2)."""
    frames = _check_frames(frames, "center_crop")
    height, width = _size_hw(size)
    h, w = frames.shape[1:3]
    return crop(frames, int(round((h - height) / 2.0)), int(round((w - width) / 2.0)), height, width)


def short_side_resize(frames: np.ndarray, short_side: int) -> np.ndarray:
    """Resize so the shorter side equals short_side, keeping the aspect ratio (pytorchvideo rounding)."""
    frames = _check_frames(frames, "short_side_resize")
    h, w = frames.shape[1:3]
    if w < h:
        new_h, new_w = int(math.floor(h / w * short_side)), short_side
    else:
        new_h, new_w = short_side, int(math.floor(w / h * short_side))
    return resize_frames(frames, (new_h, new_w))


def random_resized_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) by torchvision's RandomResizedCrop rule, with a centre-crop fallback."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    frames: np.ndarray,
    size: int | Sequence[int],
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> np.ndarray:
    """One random box (shared by all frames) cropped and resized to size."""
    frames = _check_frames(frames, "random_resized_crop")
    top, left, h, w = random_resized_crop_box(frames.shape[1], frames.shape[2], rng, scale, ratio)
    return resize_frames(crop(frames, top, left, h, w), size)


def multi_scale_crop_candidates(
    image_height: int,
    image_width: int,
    size: int | Sequence[int],
    scales: Sequence[float] = MULTI_SCALE_CROP_SCALES,
    max_distort: int = 1,
    more_fix_crop: bool = True,
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, int]]]:
    """The (crop_w, crop_h) pairs and, per pair, the fixed (left, top) offsets of GroupMultiScaleCrop.

    Crop sides are int(short_side * scale), snapped to the output side when within 3 pixels; a
    (w, h) pair is allowed when their scale indices differ by at most max_distort. Offsets are the
    5 (or 13 with more_fix_crop) points of a 4x4 grid of steps (image - crop) // 4.
    Returns (pairs, offsets_for_pair) where offsets are listed by `multi_scale_crop_offsets`.
    """
    out_h, out_w = _size_hw(size)
    base = min(image_width, image_height)
    crop_sizes = [int(base * s) for s in scales]
    crop_hs = [out_h if abs(c - out_h) < 3 else c for c in crop_sizes]
    crop_ws = [out_w if abs(c - out_w) < 3 else c for c in crop_sizes]
    pairs = [
        (w, h) for i, h in enumerate(crop_hs) for j, w in enumerate(crop_ws) if abs(i - j) <= max_distort
    ]
    return pairs, [multi_scale_crop_offsets(image_width, image_height, w, h, more_fix_crop) for w, h in pairs]


def multi_scale_crop_offsets(
    image_width: int, image_height: int, crop_width: int, crop_height: int, more_fix_crop: bool = True
) -> list[tuple[int, int]]:
    """Fixed (left, top) crop offsets: corners and centre, plus 8 more with more_fix_crop."""
    ws = (image_width - crop_width) // 4
    hs = (image_height - crop_height) // 4
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
    if more_fix_crop:
        grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    return [(gx * ws, gy * hs) for gx, gy in grid]


def multi_scale_crop(
    frames: np.ndarray,
    size: int | Sequence[int],
    rng: np.random.Generator,
    scales: Sequence[float] = MULTI_SCALE_CROP_SCALES,
    max_distort: int = 1,
    more_fix_crop: bool = True,
) -> np.ndarray:
    """VideoMAE GroupMultiScaleCrop (fix_crop): one random (size pair, fixed offset) for all frames,
    crop, then bilinear resize to size (the aspect ratio may change)."""
    frames = _check_frames(frames, "multi_scale_crop")
    pairs, offsets = multi_scale_crop_candidates(
        frames.shape[1], frames.shape[2], size, scales, max_distort, more_fix_crop
    )
    choice = int(rng.integers(len(pairs)))
    crop_w, crop_h = pairs[choice]
    left, top = offsets[choice][int(rng.integers(len(offsets[choice])))]
    return resize_frames(crop(frames, top, left, crop_h, crop_w), size)


def horizontal_flip(frames: np.ndarray) -> np.ndarray:
    """Mirror every frame left-right."""
    return _check_frames(frames, "horizontal_flip")[:, :, ::-1]


# -- values and layout ----------------------------------------------------------------------------


def normalize(
    frames: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: float = 1.0 / 255.0,
) -> np.ndarray:
    """float32 (frames * scale - mean) / std per RGB channel (scale 1/255 maps uint8 to [0, 1])."""
    return normalize_rgb(_check_frames(frames, "normalize"), mean, std, scale)


def normalize_rgb(values, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                  scale: float = 1.0 / 255.0):
    """`normalize` for any array (numpy or jax) whose last axis is RGB or RGB-interleaved (patch vectors with RGB
    innermost), e.g. on the device. The per-channel constants are tiled to the whole last axis, so XLA:CPU does not
    broadcast a 3-wide innermost axis (which it vectorises badly)."""
    reps, rest = divmod(values.shape[-1], 3)
    if rest:
        raise ValueError(f"normalize_rgb: last axis must be RGB-interleaved (a multiple of 3), got {values.shape}")
    mean_arr = np.tile(np.asarray(mean, dtype=np.float32), reps)
    inv_std = np.tile(1.0 / np.asarray(std, dtype=np.float32), reps)
    return (values.astype(np.float32) * np.float32(scale) - mean_arr) * inv_std


def to_channels_first(frames: np.ndarray) -> np.ndarray:
    """[F, H, W, C] -> [C, F, H, W] (the upstream [C, T, H, W] layout)."""
    return np.ascontiguousarray(einops.rearrange(frames, "f h w c -> c f h w"))


def strided_crop_clip(
    frames: np.ndarray | Sequence[bytes],
    *,
    train: bool,
    rng: np.random.Generator | None,
    num_frames: int = 16,
    stride: int = 4,
    img_size: int = 224,
    scales: Sequence[float] = MULTI_SCALE_CROP_SCALES,
) -> tuple[np.ndarray, np.ndarray]:
    """EVI-MAE clip before normalisation -> (uint8 [num_frames, img_size, img_size, 3], frame ids).

    `frames` is the whole clip, decoded uint8 [N, H, W, 3] or a sequence of encoded images (only the
    sampled ones are decoded). Train: random window offset and multi-scale crop. Eval: centred
    window and the full-short-side centre crop (the scale-1 centre candidate of the multi-scale
    crop), both deterministic. The frame ids feed `imu.imu_slice_for_frames`.
    """
    if train and rng is None:
        raise ValueError("strided_crop_clip: train=True needs an rng")
    num_available = len(frames)
    ids = sample_frame_indices(num_available, num_frames, stride, rng if train else None)
    if isinstance(frames, np.ndarray):
        clip = _check_frames(frames, "strided_crop_clip")[ids]
    else:
        clip = decode_frames(frames, ids)
    if train:
        clip = multi_scale_crop(clip, img_size, rng, scales)
    else:
        short = min(clip.shape[1:3])
        clip = resize_frames(center_crop(clip, short), img_size)
    return clip, ids
