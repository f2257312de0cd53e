"""Reading UniMiB SHAR (Micucci et al. 2017) in its original layout.

Layout: `UniMiB-SHAR/data/acc_data.mat` (variable `acc_data`, [N, 453]: 151 x, then 151 y, then 151 z samples of one
3 s window at 50 Hz, acceleration in m/s²), `acc_labels.mat` (variable `acc_labels`, [N, 3]: activity id 1-17,
subject 1-30, trial), `acc_names.mat` (the 17 class names). MATLAB v5 files, read with `scipy.io.loadmat`.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import io as scipy_io

from imujax.io import har

RATE_HZ = 50.0
WINDOW_SAMPLES = 151
LABEL_CODES = {
    1: "StandingUpFS", 2: "StandingUpFL", 3: "Walking", 4: "Running", 5: "GoingUpS", 6: "Jumping",
    7: "GoingDownS", 8: "LyingDownFS", 9: "SittingDown", 10: "FallingForw", 11: "FallingRight", 12: "FallingBack",
    13: "HittingObstacle", 14: "FallingWithPS", 15: "FallingBackSC", 16: "Syncope", 17: "FallingLeft",
}
LABELS = tuple(LABEL_CODES.values())
CHANNELS = har.channel_names("pocket", ("acc",))


def find_data_dir(root: str) -> str:
    for candidate in (os.path.join(root, "UniMiB-SHAR", "data"), os.path.join(root, "data"), root):
        if os.path.isfile(os.path.join(candidate, "acc_data.mat")):
            return candidate
    raise har.HarFormatError(f"{root}: acc_data.mat not found (expected UniMiB-SHAR/data/acc_data.mat)")


def _load_variable(path: str, name: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise har.HarFormatError(f"{path}: file not found")
    try:
        content = scipy_io.loadmat(path)
    except (ValueError, NotImplementedError, OSError) as e:
        raise har.HarFormatError(f"{path}: not a readable MATLAB v5 file ({e})") from None
    if name not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise har.HarFormatError(f"{path}: no variable {name!r}; it holds {found}")
    return np.asarray(content[name])


def read_windows(data_dir: str) -> list[har.Session]:
    """One session per 151-sample window: pocket acc x/y/z in m/s²."""
    data_path = os.path.join(data_dir, "acc_data.mat")
    labels_path = os.path.join(data_dir, "acc_labels.mat")
    data = _load_variable(data_path, "acc_data").astype(np.float64)
    labels = _load_variable(labels_path, "acc_labels")
    if data.ndim != 2 or data.shape[1] != 3 * WINDOW_SAMPLES:
        raise har.HarFormatError(f"{data_path}: acc_data has shape {data.shape}, expected [N, {3 * WINDOW_SAMPLES}]")
    if labels.shape != (len(data), 3):
        raise har.HarFormatError(f"{labels_path}: acc_labels has shape {labels.shape}, expected ({len(data)}, 3)")
    if not np.all(np.isfinite(data)):
        row = int(np.argwhere(~np.isfinite(data))[0, 0]) + 1
        raise har.HarFormatError(f"{data_path}: non-finite values in row {row}")
    classes = har.map_codes(labels[:, 0].astype(np.int64).tolist(), {c: i for i, c in enumerate(LABEL_CODES)},
                            labels_path, "activity id")
    windows = data.reshape(len(data), 3, WINDOW_SAMPLES).transpose(0, 2, 1)
    return [har.Session(f"{row:05d}_s{int(labels[row, 1])}_t{int(labels[row, 2])}", int(labels[row, 1]),
                        windows[row], np.full(WINDOW_SAMPLES, classes[row], np.int64), RATE_HZ, CHANNELS,
                        f"{data_path} row {row + 1}")
            for row in range(len(data))]
