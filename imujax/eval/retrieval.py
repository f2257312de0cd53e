"""Cross-modal retrieval recall@k from paired embeddings (row i of each matrix is the same clip)."""

from __future__ import annotations

import numpy as np


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def recall_at_k(queries: np.ndarray, keys: np.ndarray, ks=(1, 5, 10)) -> dict[int, float]:
    """Fraction of queries whose paired key ranks within the top k by cosine similarity (ties count against)."""
    if queries.shape != keys.shape or queries.ndim != 2:
        raise ValueError(f"recall_at_k: expected two [N, D] arrays of equal shape, got {queries.shape}, {keys.shape}")
    sim = _normalize(queries.astype(np.float64)) @ _normalize(keys.astype(np.float64)).T
    positive = np.diag(sim)[:, None]
    rank = (sim >= positive).sum(axis=1) - 1  # other keys scoring at least as high as the paired one
    return {k: float((rank < k).mean()) for k in ks}


def retrieval_metrics(imu: np.ndarray, video: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    out = {}
    for name, (q, k) in {"imu_to_video": (imu, video), "video_to_imu": (video, imu)}.items():
        for kk, value in recall_at_k(q, k, ks).items():
            out[f"{name}_r{kk}"] = value
    out["chance_r1"] = 1.0 / len(imu)
    return out
