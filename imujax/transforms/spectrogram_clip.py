"""One record -> an IMU spectrogram and a video clip, both as patch vectors (the EVI-MAE input, pretraining and
fine-tuning alike), and the device-side step that turns a batch of them into model inputs.

``sizes`` is any object with the model's ``patch``, ``tubelet``, ``num_frames``, ``img_size``, ``imu_time`` and
``imu_freq`` (e.g. `imujax.models.evi_mae.EVIMAESizes`); ``data`` is config.data.
"""

from __future__ import annotations

import numpy as np

from imujax import patch_layout
from imujax.transforms import imu as imu_tf
from imujax.transforms import records
from imujax.transforms import video as video_tf


def spectrogram_clip_patches(record: dict, data, sizes, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    """-> {'imu', 'video', 'label'}, rng None meaning eval (deterministic).

    'imu' is the spectrogram [12, T, F] as `patch_layout.imu_patches` vectors; 'video' the uint8 clip as
    `patch_layout.video_patches` vectors, ImageNet-normalised on the device by `model_inputs` (a quarter of the bytes
    to move, no float pass on the host)."""
    d, s = data, sizes
    imu = records.select_channels(record, d.imu_channels)
    frames = records.frames(record)
    train = rng is not None
    clip, frame_ids = video_tf.strided_crop_clip(frames, train=train, rng=rng, num_frames=s.num_frames,
                                            stride=d.frame_stride, img_size=s.img_size)
    start, end = imu_tf.imu_slice_for_frames(len(imu), frame_ids, len(frames))
    spec = imu_tf.stretched_db_spectrogram(
        imu[start:max(end, start + 2)], mean=d.imu_mean, std=d.imu_std, target_length=s.imu_time,
        n_bins=s.imu_freq, n_fft=d.n_fft, win_length=d.win_length, hop_length=d.hop_length)
    if train and d.imu_noise:
        spec = imu_tf.uniform_noise(spec, rng)
    return {"imu": np.ascontiguousarray(patch_layout.imu_patches(spec, s.patch)),
            "video": np.ascontiguousarray(patch_layout.video_patches_from_frames(clip, s.tubelet, s.patch)),
            "label": np.int32(record.get("label", -1))}  # -1: unlabelled


def model_inputs(batch: dict):
    """(imu, video) for the model: uint8 video patch vectors (rgb innermost) get ImageNet-normalised; a float
    video is taken as already normalised (a clip [B, 3, T, H, W] or patch vectors, as the model accepts)."""
    video = batch["video"]
    if video.dtype != np.uint8:
        return batch["imu"], video
    return batch["imu"], video_tf.normalize_rgb(video)
