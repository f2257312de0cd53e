"""PNG figures for a run with matplotlib: loss/metric curves, confusion matrices, and MAE reconstructions (the arrays
of an `imujax.eval.reconstruction.Reconstruction`: spectrograms or video clips)."""

from __future__ import annotations

import json
import math
import os
from typing import Sequence

import numpy as np


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


# -- MAE reconstructions ---------------------------------------------------------------------------------------------


def _image_grid(rows: list[list[np.ndarray]], row_titles: Sequence[str], row_styles: Sequence[dict] | None = None):
    """Rows of equally sized images in one figure, a title per row; row_styles[i]: imshow arguments of row i."""
    cols = max(len(r) for r in rows)
    fig, axes = _pyplot().subplots(len(rows), cols, figsize=(2.2 * cols, 2.2 * len(rows)), squeeze=False)
    for i, (ax_row, row, title) in enumerate(zip(axes, rows, row_titles)):
        for ax, image in zip(ax_row, row):
            ax.imshow(image, **(row_styles[i] if row_styles else {}))
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_title(title, fontsize=8, loc="left")
    return fig


def plot_spectrogram_reconstruction(inputs: np.ndarray, masked: np.ndarray, recon: np.ndarray, out_png: str,
                                    max_examples: int = 4) -> str:
    """Three batches [N, C, H(freq), W(time)] of one shape: a row per example (at most max_examples), for each channel
    the input, masked input and reconstruction side by side, with the example's input colour scale (1st-99th
    percentile) on all of them and the lowest frequency at the bottom."""
    panels = [np.asarray(x, np.float64) for x in (inputs, masked, recon)]
    if not panels[0].shape == panels[1].shape == panels[2].shape or panels[0].ndim != 4:
        raise ValueError(f"spectrogram reconstruction: three batches [N, C, H, W] of one shape expected, got "
                         f"{[p.shape for p in panels]}")
    n, channels = panels[0].shape[:2]
    rows, styles = [], []
    for i in range(min(n, max_examples)):
        rows.append([p[i, c] for c in range(channels) for p in panels])
        lo, hi = np.percentile(panels[0][i], [1, 99])
        styles.append(dict(cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-6), origin="lower", aspect="auto"))
    titles = [f"example {i}: input | masked | reconstruction per channel (time ->, freq ^)" for i in range(len(rows))]
    return _save(_image_grid(rows, titles, styles), out_png)


def plot_video_reconstruction(video: np.ndarray, masked: np.ndarray, recon: np.ndarray, out_png: str,
                              max_frames: int = 8) -> str:
    """Three clips [3, T, H, W], RGB in [0, 1]: rows input / masked / reconstruction, columns up to max_frames frames
    spread over the clip."""
    clips = [np.asarray(c, np.float64) for c in (video, masked, recon)]
    if not clips[0].shape == clips[1].shape == clips[2].shape or clips[0].ndim != 4 or clips[0].shape[0] != 3:
        raise ValueError(f"video reconstruction: three clips [3, T, H, W] of one shape expected, got "
                         f"{[c.shape for c in clips]}")
    frames = clips[0].shape[1]
    shown = np.linspace(0, frames - 1, min(max_frames, frames)).round().astype(int)
    rows = [[np.clip(clip[:, t], 0, 1).transpose(1, 2, 0) for t in shown] for clip in clips]
    titles = [f"{name} (frames {shown.tolist()})" for name in ("input", "masked", "reconstruction")]
    return _save(_image_grid(rows, titles), out_png)
