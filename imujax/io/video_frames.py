"""Video frames at chosen times, decoded with PyAV, centre-cropped, resized and JPEG-encoded with Pillow.

Builders store frames as JPEG bytes (`tfds.features.Image(encoding_format="jpeg")` fed pre-encoded bytes) because
TFDS encodes numpy images through TensorFlow, which this project does not install.
"""

from __future__ import annotations

import dataclasses
import io
import os
from fractions import Fraction
from typing import Sequence

import numpy as np
from PIL import Image

from imujax.io import files

# Frames larger than this (8192 x 8192) are refused before decoding: a few-KB image or stream header can declare
# a size whose decoding needs gigabytes (a decompression bomb).
MAX_FRAME_PIXELS = 1 << 26
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class VideoError(ValueError):
    """Raised for files without a decodable video stream, or images that cannot be decoded; names the file."""


def _check_frame_size(width: int, height: int, path: str) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise VideoError(f"{path}: frame size {width}x{height} is over the limit of {MAX_FRAME_PIXELS} pixels "
                         f"(a decompression bomb, or a frame far larger than any camera's)")


def image_jpeg(path: str | os.PathLike, size_hw: tuple[int, int], quality: int) -> bytes:
    """One image file (a frame of a frame folder), checked, centre-cropped, resized and JPEG-encoded."""
    path = os.fspath(path)
    files.check_regular(path, VideoError)
    try:
        with Image.open(path) as image:
            _check_frame_size(*image.size, path)
            return to_jpeg(image, size_hw, quality)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, VideoError):
            raise
        # Pillow: unknown format, truncated data, bad header, or its own decompression-bomb limit
        raise VideoError(f"{path}: frame cannot be decoded ({type(e).__name__}: {e})") from e


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    frame_rate: Fraction   # average frames per second
    num_frames: int
    duration_s: float      # num_frames / frame_rate: the end of the last frame's display interval
    width: int
    height: int


def _open(path: str):
    import av  # imported here so that IMU-only users do not need PyAV

    files.check_regular(path, VideoError)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"{path}: cannot open as a video container: {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream")
    context = container.streams.video[0].codec_context
    try:
        _check_frame_size(context.width, context.height, path)
    except VideoError:
        container.close()
        raise
    return container


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Frame rate, frame count and size of the first video stream (counted by demuxing when the header lacks it)."""
    import av

    path = os.fspath(path)
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise VideoError(f"{path}: video stream has no frame rate")
        try:
            frames = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: video cannot be read ({type(e).__name__}: {e})") from e
        return VideoInfo(Fraction(rate), int(frames), float(frames / Fraction(rate)),
                         stream.codec_context.width, stream.codec_context.height)


def to_jpeg(image: Image.Image, size_hw: tuple[int, int], quality: int) -> bytes:
    """Centre-crops `image` to the target aspect ratio, resizes it to (height, width) and encodes it as JPEG."""
    height, width = size_hw
    w, h = image.size
    target_aspect = width / height
    if w / h > target_aspect:  # too wide: crop the sides
        crop_w = round(h * target_aspect)
        left = (w - crop_w) // 2
        image = image.crop((left, 0, left + crop_w, h))
    elif w / h < target_aspect:  # too tall: crop top and bottom
        crop_h = round(w / target_aspect)
        top = (h - crop_h) // 2
        image = image.crop((0, top, w, top + crop_h))
    image = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_frames_at(path: str | os.PathLike, times_s: Sequence[float], size_hw: tuple[int, int],
                   quality: int = 90) -> list[bytes]:
    """For each requested time, the JPEG of the frame whose timestamp is nearest (one decoding pass).

    Frame timestamps are presentation times on the MP4 timeline (frame 0 at its pts, usually 0).
    Times after the end of the last frame's display interval are an error; so is a stream that stops decoding.
    """
    import av

    try:
        return _jpeg_frames_at(os.fspath(path), times_s, size_hw, quality)
    except av.error.FFmpegError as e:
        raise VideoError(f"{os.fspath(path)}: video cannot be decoded ({type(e).__name__}: {e})") from e


def _jpeg_frames_at(path: str, times_s, size_hw, quality) -> list[bytes]:
    times = np.asarray(times_s, np.float64)
    order = np.argsort(times, kind="stable")
    out: list[bytes | None] = [None] * len(times)
    if not len(times):
        return []
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        period = 1.0 / float(stream.average_rate or stream.guessed_rate or 30)
        cache: dict[float, bytes] = {}

        def encode(frame_time: float, frame) -> bytes:
            if frame_time not in cache:
                cache.clear()  # targets are visited in time order, so only the newest frames recur
                cache[frame_time] = to_jpeg(frame.to_image(), size_hw, quality)
            return cache[frame_time]

        j = 0
        previous = None
        for frame in container.decode(stream):
            if frame.time is None:
                raise VideoError(f"{path}: a decoded frame has no timestamp")
            t = float(frame.time)
            while j < len(order) and times[order[j]] <= t:
                target = times[order[j]]
                if previous is not None and target - previous[0] < t - target:
                    out[order[j]] = encode(*previous)
                else:
                    out[order[j]] = encode(t, frame)
                j += 1
            if j == len(order):
                break
            previous = (t, frame)
        while j < len(order) and previous is not None and times[order[j]] <= previous[0] + period:
            out[order[j]] = encode(*previous)
            j += 1
    if j < len(order):
        raise VideoError(f"{path}: requested frame time {times[order[j]]:.3f} s is past the end of the video")
    return out  # type: ignore[return-value]
