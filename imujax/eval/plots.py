"""PNG figures for a run with matplotlib: loss/metric curves, confusion matrices, MAE reconstructions.

MAE reconstructions: the EVI-MAE decoder predicts per-token patch vectors in the layout of
`imujax.patch_layout` (`imu_patches` / `video_patches`; `imu_from_patches` and `video_from_patches` invert
them), and with norm-pix training the prediction is mapped back to input units with each target patch's own mean and
standard deviation (the usual MAE visualisation).
"""

from __future__ import annotations

import json
import math
import os
from typing import Sequence

import numpy as np
from PIL import Image

from imujax import patch_layout


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


# -- curves -----------------------------------------------------------------------------------------------------------


def read_metrics(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metrics.jsonl -> {key: (steps, values)} for every numeric key other than `step`."""
    series: dict[str, tuple[list, list]] = {}
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step = record["step"]
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{path}: line {line_no} is not a JSON object with a 'step' field: {e}") from None
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    series.setdefault(key, ([], []))
                    series[key][0].append(step)
                    series[key][1].append(value)
    return {k: (np.asarray(s), np.asarray(v, np.float64)) for k, (s, v) in series.items()}


def default_curve_keys(series: dict) -> list[str]:
    """Losses first, then eval metrics; throughput and lr left out."""
    skip = ("steps_per_s", "samples_per_s", "grad_norm")
    keys = [k for k in series if not k.endswith(skip)]
    return sorted(keys, key=lambda k: (not k.startswith("loss"), k.startswith("eval/"), k))


def plot_curves(metrics_jsonl: str, out_png: str, keys: Sequence[str] | None = None) -> str:
    """One small panel per metric (step on x)."""
    series = read_metrics(metrics_jsonl)
    keys = list(keys) if keys is not None else default_curve_keys(series)
    missing = [k for k in keys if k not in series]
    if missing:
        raise KeyError(f"{metrics_jsonl}: no values for {missing}; available {sorted(series)}")
    if not keys:
        raise ValueError(f"{metrics_jsonl}: nothing to plot")
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.ravel(), keys):
        steps, values = series[key]
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    return _save(fig, out_png)


# -- confusion matrix -------------------------------------------------------------------------------------------------


def plot_confusion(cm: np.ndarray, out_png: str, class_names: Sequence[str] | None = None, normalize: bool = True,
                   title: str = "") -> str:
    """Rows = true class, columns = predicted; normalize=True shows row fractions (recall per class)."""
    cm = np.asarray(cm, np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}x{k} confusion matrix")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = max(4.0, 0.5 * k + 2)
    fig, ax = _pyplot().subplots(figsize=(size, size))
    ax.imshow(shown, cmap="viridis", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=6,
                        color="white" if shown[i, j] < shown.max() / 2 else "black")
    return _save(fig, out_png)


# -- MAE reconstructions --------------------------------------------------------------------------------------------


def denormalize_patches(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Norm-pix predictions back to input units with each target patch's mean and unbiased variance."""
    target = np.asarray(target, np.float64)
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, ddof=1, keepdims=True)
    return np.asarray(pred, np.float64) * np.sqrt(var + 1e-6) + mean


def _image_grid(rows: list[list[np.ndarray]], row_titles: Sequence[str], **imshow) -> "matplotlib.figure.Figure":
    """Rows of equally sized images (2-D with a colour map, or RGB) in one figure, a title per row."""
    cols = max(len(r) for r in rows)
    fig, axes = _pyplot().subplots(len(rows), cols, figsize=(2.2 * cols, 2.2 * len(rows)), squeeze=False)
    for ax_row, row, title in zip(axes, rows, row_titles):
        for ax, image in zip(ax_row, row):
            ax.imshow(image, **imshow)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_title(title, fontsize=8, loc="left")
    return fig


def plot_imu_reconstruction(imu: np.ndarray, pred: np.ndarray, mask: np.ndarray, out_png: str, patch: int,
                            norm_pix: bool = True, channels_shown: Sequence[int] = (0, 3, 6, 9)) -> str:
    """imu [C, time, freq] input spectrogram; pred [L_a, C*p*p] decoder output; mask [L_a] (1 = masked).

    Rows: input / masked input (masked patches grey) / reconstruction (visible patches from the input, masked
    patches from the prediction), one column per shown channel; spectrograms drawn with frequency upwards."""
    imu = np.asarray(imu, np.float64)
    c, time, freq = imu.shape
    target = patch_layout.imu_patches(imu, patch)
    recon = denormalize_patches(pred, target) if norm_pix else np.asarray(pred, np.float64)
    mask = np.asarray(mask).astype(bool)
    if mask.shape != (len(target),):
        raise ValueError(f"mask must have {len(target)} entries (one per IMU token), got shape {mask.shape}")
    pasted = np.where(mask[:, None], recon, target)
    masked = np.where(mask[:, None], np.nan, target)
    images = [imu, patch_layout.imu_from_patches(masked, c, time, freq, patch),
              patch_layout.imu_from_patches(pasted, c, time, freq, patch)]
    lo, hi = np.nanmin(imu), np.nanmax(imu)
    channels_shown = [k for k in channels_shown if k < c] or [0]
    rows = [[img[k].T for k in channels_shown] for img in images]  # [freq, time]: frequency upwards with origin lower
    titles = [f"{name}  (channels {list(channels_shown)}, time ->, freq ^)"
              for name in ("input", "masked", "reconstruction")]
    cmap = _pyplot().get_cmap("viridis").with_extremes(bad="grey")  # masked patches (NaN) grey
    return _save(_image_grid(rows, titles, cmap=cmap, vmin=lo, vmax=hi, origin="lower", aspect="auto"), out_png)


def plot_video_reconstruction(video: np.ndarray, pred: np.ndarray, mask: np.ndarray, out_png: str, tubelet: int,
                              patch: int, mean: Sequence[float] = (0.485, 0.456, 0.406),
                              std: Sequence[float] = (0.229, 0.224, 0.225), norm_pix: bool = True,
                              max_frames: int = 8) -> str:
    """video [3, T, S, S] normalised clip; pred [L_v, tubelet*p*p*3]; mask [L_v]. Rows: input / masked / recon."""
    video = np.asarray(video, np.float64)
    _, frames, size, _ = video.shape
    target = patch_layout.video_patches(video, tubelet, patch)
    recon = denormalize_patches(pred, target) if norm_pix else np.asarray(pred, np.float64)
    mask = np.asarray(mask).astype(bool)
    if mask.shape != (len(target),):
        raise ValueError(f"mask must have {len(target)} entries (one per video token), got shape {mask.shape}")
    grey = np.zeros_like(target)  # 0 in normalised units = the dataset mean colour
    clips = [video] + [patch_layout.video_from_patches(np.where(mask[:, None], fill, target), frames, size, tubelet,
                                                       patch) for fill in (grey, recon)]
    m, s = np.asarray(mean).reshape(3, 1, 1, 1), np.asarray(std).reshape(3, 1, 1, 1)
    shown = np.linspace(0, frames - 1, min(max_frames, frames)).round().astype(int)
    rows = [[np.clip(clip * s + m, 0, 1)[:, t].transpose(1, 2, 0) for t in shown] for clip in clips]
    titles = [f"{name} (frames {shown.tolist()})" for name in ("input", "masked", "reconstruction")]
    return _save(_image_grid(rows, titles), out_png)


# -- TensorBoard ------------------------------------------------------------------------------------------------------


def png_to_tensorboard(workdir: str, tag: str, png_path: str, step: int) -> None:
    """Adds a written PNG as an image summary under workdir/tensorboard (tensorboardX, no TensorFlow)."""
    from tensorboardX import SummaryWriter

    with Image.open(png_path) as im:
        array = np.asarray(im.convert("RGB"))
    writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
    try:
        writer.add_image(tag, array, int(step), dataformats="HWC")
    finally:
        writer.close()
