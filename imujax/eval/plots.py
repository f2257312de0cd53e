"""PNG figures for a run: loss/metric curves, confusion matrices, embedding maps, MAE reconstructions.

matplotlib is used when installed (optional dependency); otherwise, or with `backend="pillow"`, figures are drawn
with Pillow alone (heat maps as coloured pixels, curves and scatters with ImageDraw). Embedding maps use
scikit-learn's t-SNE when installed, else the small exact t-SNE below (numpy, O(N^2): fine for a few thousand points).

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
from PIL import Image, ImageDraw

from imujax import patch_layout

# -- backends -------------------------------------------------------------------------------------------------------


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def _use_matplotlib(backend: str) -> bool:
    if backend not in ("auto", "matplotlib", "pillow"):
        raise ValueError(f"backend must be 'auto', 'matplotlib' or 'pillow', got {backend!r}")
    if backend == "matplotlib" and not have_matplotlib():
        raise ImportError("backend='matplotlib' but matplotlib is not installed (pip install matplotlib)")
    return backend == "matplotlib" or (backend == "auto" and have_matplotlib())


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# Viridis sampled at 9 points; intermediate values are linearly interpolated.
_VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129],
                     [92, 200, 99], [170, 220, 50], [253, 231, 37]], np.float64)
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def colormap(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """values [...] -> uint8 RGB [..., 3] with the viridis ramp; NaN becomes grey."""
    v = np.asarray(values, np.float64)
    finite = v[np.isfinite(v)]
    lo = float(finite.min()) if vmin is None and finite.size else (vmin or 0.0)
    hi = float(finite.max()) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
    t = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1) * (len(_VIRIDIS) - 1)
    t = np.nan_to_num(t)
    i = np.minimum(t.astype(int), len(_VIRIDIS) - 2)
    frac = (t - i)[..., None]
    rgb = _VIRIDIS[i] * (1 - frac) + _VIRIDIS[i + 1] * frac
    rgb[~np.isfinite(v)] = 128
    return rgb.round().astype(np.uint8)


def _canvas(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (width, height), "white")
    return image, ImageDraw.Draw(image)


def _save(image: Image.Image, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.save(path, format="PNG")
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


def plot_curves(metrics_jsonl: str, out_png: str, keys: Sequence[str] | None = None, backend: str = "auto") -> str:
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
    if _use_matplotlib(backend):
        plt = _pyplot()
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
        for ax, key in zip(axes.ravel(), keys):
            steps, values = series[key]
            ax.plot(steps, values, marker="." if len(steps) < 30 else None)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in axes.ravel()[len(keys):]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out_png, dpi=100)
        plt.close(fig)
        return out_png
    pw, ph = 320, 200
    image, draw = _canvas(cols * pw, rows * ph)
    for n, key in enumerate(keys):
        steps, values = series[key]
        ox, oy = (n % cols) * pw, (n // cols) * ph
        box = (ox + 50, oy + 20, ox + pw - 10, oy + ph - 25)
        draw.rectangle(box, outline=(0, 0, 0))
        draw.text((ox + 50, oy + 4), key, fill=(0, 0, 0))
        lo, hi = float(values.min()), float(values.max())
        s0, s1 = float(steps.min()), float(steps.max())
        draw.text((ox + 2, box[1]), f"{hi:.3g}", fill=(0, 0, 0))
        draw.text((ox + 2, box[3] - 10), f"{lo:.3g}", fill=(0, 0, 0))
        draw.text((box[0], box[3] + 4), f"{s0:g}", fill=(0, 0, 0))
        draw.text((box[2] - 40, box[3] + 4), f"{s1:g}", fill=(0, 0, 0))
        xs = box[0] + (steps - s0) / (s1 - s0 if s1 > s0 else 1) * (box[2] - box[0])
        ys = box[3] - (values - lo) / (hi - lo if hi > lo else 1) * (box[3] - box[1])
        points = list(zip(xs.tolist(), ys.tolist()))
        if len(points) > 1:
            draw.line(points, fill=_PALETTE[0], width=2)
        for x, y in points if len(points) < 30 else []:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=_PALETTE[0])
    return _save(image, out_png)


# -- confusion matrix -------------------------------------------------------------------------------------------------


def plot_confusion(cm: np.ndarray, out_png: str, class_names: Sequence[str] | None = None, normalize: bool = True,
                   title: str = "", backend: str = "auto") -> str:
    """Rows = true class, columns = predicted; normalize=True shows row fractions (recall per class)."""
    cm = np.asarray(cm, np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}x{k} confusion matrix")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    if _use_matplotlib(backend):
        plt = _pyplot()
        size = max(4.0, 0.5 * k + 2)
        fig, ax = plt.subplots(figsize=(size, size))
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
        fig.tight_layout()
        fig.savefig(out_png, dpi=100)
        plt.close(fig)
        return out_png
    cell, margin = 36, 110
    image, draw = _canvas(margin + k * cell + 10, margin + k * cell + 10)
    rgb = colormap(shown, 0.0, 1.0 if normalize else None)
    for i in range(k):
        draw.text((4, margin + i * cell + cell // 2 - 5), names[i][:16], fill=(0, 0, 0))
        draw.text((margin + i * cell + 2, margin - 14 - (i % 4) * 12), names[i][:10], fill=(0, 0, 0))
        for j in range(k):
            x, y = margin + j * cell, margin + i * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=tuple(int(c) for c in rgb[i, j]))
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            draw.text((x + 4, y + cell // 2 - 5), text, fill=(255, 255, 255) if shown[i, j] < 0.5 * shown.max()
                      else (0, 0, 0))
    draw.text((4, 4), title or "confusion (rows: true, columns: predicted)", fill=(0, 0, 0))
    return _save(image, out_png)


# -- embedding maps ---------------------------------------------------------------------------------------------------


def pca(x: np.ndarray, dims: int = 2) -> np.ndarray:
    """Projection on the top principal components (signs fixed so the largest loading is positive)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:dims] * np.sign(vt[:dims][np.arange(min(dims, len(vt))), np.abs(vt[:dims]).argmax(axis=1)])[:, None]
    return x @ vt.T


def _conditional_probabilities(distances: np.ndarray, perplexity: float) -> np.ndarray:
    """Row-wise Gaussian affinities whose entropy matches log(perplexity) (binary search on the precision)."""
    n = len(distances)
    target = np.log(perplexity)
    p = np.zeros((n, n))
    for i in range(n):
        d = np.delete(distances[i], i)
        lo, hi, beta = 0.0, np.inf, 1.0
        for _ in range(64):
            w = np.exp(-(d - d.min()) * beta)
            s = w.sum()
            entropy = np.log(s) + beta * np.sum((d - d.min()) * w) / s
            if abs(entropy - target) < 1e-5:
                break
            if entropy > target:
                lo, beta = beta, beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi, beta = beta, (beta + lo) / 2
        p[i, np.arange(n) != i] = w / s
    return p


def tsne(x: np.ndarray, dims: int = 2, perplexity: float = 30.0, steps: int = 750, learning_rate: float | None = None,
         seed: int = 0) -> np.ndarray:
    """Exact t-SNE (van der Maaten & Hinton 2008): PCA(50) start, early exaggeration 12 for 250 steps, momentum
    0.5 then 0.8, gains as in the reference implementation."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {n}")
    perplexity = min(perplexity, (n - 1) / 3)
    if x.shape[1] > 50:
        x = pca(x, 50)
    sq = np.sum(x ** 2, axis=1)
    distances = np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0)
    p = _conditional_probabilities(distances, perplexity)
    p = np.maximum((p + p.T) / (2 * n), 1e-12)
    rng = np.random.default_rng(seed)
    y = pca(x, dims)
    y = y / (np.std(y[:, 0]) + 1e-12) * 1e-4 + rng.normal(0, 1e-6, y.shape)
    lr = learning_rate or max(n / 12 / 4, 50.0)
    velocity, gains = np.zeros_like(y), np.ones_like(y)
    for it in range(steps):
        exaggeration = 12.0 if it < 250 else 1.0
        momentum = 0.5 if it < 250 else 0.8
        sq_y = np.sum(y ** 2, axis=1)
        num = 1.0 / (1.0 + np.maximum(sq_y[:, None] + sq_y[None] - 2 * y @ y.T, 0))
        np.fill_diagonal(num, 0)
        q = np.maximum(num / num.sum(), 1e-12)
        w = (exaggeration * p - q) * num
        grad = 4 * (np.diag(w.sum(axis=1)) - w) @ y
        gains = np.where(np.sign(grad) != np.sign(velocity), gains + 0.2, gains * 0.8).clip(0.01)
        velocity = momentum * velocity - lr * gains * grad
        y = y + velocity
        y = y - y.mean(axis=0)
    return y


def embed_2d(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """'tsne' (scikit-learn when installed, else `tsne` above) or 'pca'."""
    if method == "pca":
        return pca(features, 2)
    if method != "tsne":
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        return tsne(features, seed=seed)
    n = len(features)
    return TSNE(2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(
        np.asarray(features, np.float64))


def plot_embedding(features: np.ndarray, labels: np.ndarray, out_png: str, class_names: Sequence[str] | None = None,
                   method: str = "tsne", title: str = "", seed: int = 0, backend: str = "auto") -> str:
    """2-D map of embeddings coloured by class."""
    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 2 or labels.shape != (len(features),):
        raise ValueError(f"features [N, D] and labels [N] expected, got {features.shape} and {labels.shape}")
    y = embed_2d(features, method, seed)
    classes = np.unique(labels)
    names = {c: (class_names[c] if class_names is not None else str(c)) for c in classes}
    if _use_matplotlib(backend):
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 5))
        for n, c in enumerate(classes):
            m = labels == c
            ax.scatter(y[m, 0], y[m, 1], s=10, color=np.array(_PALETTE[n % len(_PALETTE)]) / 255, label=names[c])
        ax.legend(fontsize=7, markerscale=1.5, loc="best")
        ax.set_title(title or f"{method} of {features.shape[1]}-d embeddings", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        fig.savefig(out_png, dpi=100)
        plt.close(fig)
        return out_png
    size, legend = 480, 150
    image, draw = _canvas(size + legend, size)
    lo, hi = y.min(axis=0), y.max(axis=0)
    pts = 20 + (y - lo) / np.where(hi > lo, hi - lo, 1) * (size - 40)
    for n, c in enumerate(classes):
        color = _PALETTE[n % len(_PALETTE)]
        for px, py in pts[labels == c]:
            draw.ellipse((px - 3, size - py - 3, px + 3, size - py + 3), fill=color)
        draw.rectangle((size + 8, 20 + 16 * n, size + 18, 30 + 16 * n), fill=color)
        draw.text((size + 24, 19 + 16 * n), str(names[c])[:18], fill=(0, 0, 0))
    draw.text((4, 4), title or f"{method} of {features.shape[1]}-d embeddings", fill=(0, 0, 0))
    return _save(image, out_png)


# -- MAE reconstructions --------------------------------------------------------------------------------------------


def denormalize_patches(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Norm-pix predictions back to input units with each target patch's mean and unbiased variance."""
    target = np.asarray(target, np.float64)
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, ddof=1, keepdims=True)
    return np.asarray(pred, np.float64) * np.sqrt(var + 1e-6) + mean


def _grid(rows: list[list[np.ndarray]], gap: int = 4) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """Rows of equally sized RGB uint8 tiles -> one image."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    image = Image.new("RGB", (cols * (w + gap) + gap, len(rows) * (h + gap + 12) + gap), "white")
    draw = ImageDraw.Draw(image)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            image.paste(Image.fromarray(tile), (gap + j * (w + gap), 12 + gap + i * (h + gap + 12)))
    return image, draw


def _tile(image: np.ndarray, min_side: int = 96) -> np.ndarray:
    scale = max(1, int(np.ceil(min_side / min(image.shape[:2]))))
    return np.kron(image, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else image


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
    rows = [[_tile(colormap(img[k].T[::-1], lo, hi)) for k in channels_shown] for img in images]
    image, draw = _grid(rows)
    tile_h = rows[0][0].shape[0]
    for i, name in enumerate(("input", "masked", "reconstruction")):
        draw.text((4, i * (tile_h + 16)), f"{name}  (channels {list(channels_shown)}, time ->, freq ^)",
                  fill=(0, 0, 0))
    return _save(image, out_png)


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
    rows = [[_tile((np.clip(clip * s + m, 0, 1)[:, t].transpose(1, 2, 0) * 255).round().astype(np.uint8))
             for t in shown] for clip in clips]
    image, draw = _grid(rows)
    tile_h = rows[0][0].shape[0]
    for i, name in enumerate(("input", "masked", "reconstruction")):
        draw.text((4, i * (tile_h + 16)), f"{name} (frames {shown.tolist()})", fill=(0, 0, 0))
    return _save(image, out_png)


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
