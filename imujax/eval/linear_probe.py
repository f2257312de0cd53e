"""Linear probe on frozen features: closed-form ridge regression onto one-hot labels (standardised features)."""

from __future__ import annotations

import numpy as np


def fit_ridge(features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float = 1e-2):
    """Returns (mean, scale, weights) for predict(); features [N, D], labels [N] ints."""
    x = features.astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-8
    x = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    targets = np.eye(num_classes)[labels]
    gram = x.T @ x + l2 * len(x) * np.eye(x.shape[1])
    return mean, scale, np.linalg.solve(gram, x.T @ targets)


def predict(probe, features: np.ndarray) -> np.ndarray:
    mean, scale, weights = probe
    x = (features.astype(np.float64) - mean) / scale
    return (np.concatenate([x, np.ones((len(x), 1))], axis=1) @ weights).argmax(axis=1)


def linear_probe_accuracy(train_x, train_y, test_x, test_y, num_classes: int, l2: float = 1e-2) -> float:
    probe = fit_ridge(train_x, train_y, num_classes, l2)
    return float((predict(probe, test_x) == test_y).mean())
