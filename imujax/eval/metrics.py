"""Classification metrics in numpy: accuracy, confusion matrix, per-class precision/recall/F1, macro and weighted F1,
and average precision / mAP with the same definitions as scikit-learn.

Conventions (scikit-learn's): a class's precision or recall with a zero denominator counts as 0; macro F1 averages over
the classes that occur in the labels or the predictions (or over `labels` when given); weighted F1 weights each class by
its number of true examples. Average precision is the step-wise sum over distinct score thresholds
AP = sum_n (R_n - R_{n-1}) P_n (no interpolation).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_labels(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
        raise ValueError(f"{name} must hold non-negative integer class indices, got dtype {y.dtype}")
    return y.astype(np.int64)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must have the same length")
    return y_true, y_pred


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = _pair(y_true, y_pred)
    if not y_true.size:
        raise ValueError("accuracy of an empty set")
    return float((y_true == y_pred).mean())


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """[C, C] counts, rows = true class, columns = predicted class."""
    y_true, y_pred = _pair(y_true, y_pred)
    top = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    num_classes = top if num_classes is None else num_classes
    if top > num_classes:
        raise ValueError(f"class index {top - 1} does not fit num_classes={num_classes}")
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_scores(y_true, y_pred, num_classes: int | None = None) -> dict[str, np.ndarray]:
    """precision, recall, f1 and support per class index (zero denominators give 0)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _present(y_true, y_pred, labels: Sequence[int] | None) -> np.ndarray:
    if labels is not None:
        return np.asarray(labels, np.int64)
    return np.union1d(np.unique(y_true), np.unique(y_pred))


def f1_score(y_true, y_pred, average: str = "macro", labels: Sequence[int] | None = None) -> float:
    """average: 'macro' (unweighted mean over classes), 'weighted' (by support) or 'micro' (= accuracy here)."""
    y_true, y_pred = _pair(y_true, y_pred)
    if average == "micro":
        return accuracy(y_true, y_pred)
    classes = _present(y_true, y_pred, labels)
    num_classes = int(max(classes.max(initial=-1), y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    scores = per_class_scores(y_true, y_pred, num_classes)
    f1, support = scores["f1"][classes], scores["support"][classes]
    if average == "macro":
        return float(f1.mean()) if f1.size else 0.0
    if average == "weighted":
        return float((f1 * support).sum() / support.sum()) if support.sum() else 0.0
    raise ValueError(f"average must be 'macro', 'weighted' or 'micro', got {average!r}")


def classification_summary(y_true, y_pred, num_classes: int | None = None) -> dict[str, float]:
    """The numbers the RevalExo trainer logs per horizon: accuracy, macro F1/precision/recall, weighted F1."""
    y_true, y_pred = _pair(y_true, y_pred)
    classes = _present(y_true, y_pred, None)
    scores = per_class_scores(y_true, y_pred, num_classes)
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": f1_score(y_true, y_pred, "macro"),
            "macro_precision": float(scores["precision"][classes].mean()),
            "macro_recall": float(scores["recall"][classes].mean()),
            "weighted_f1": f1_score(y_true, y_pred, "weighted"), "count": int(y_true.size)}


def average_precision(y_true_binary, scores) -> float:
    """Average precision of one binary task (scikit-learn `average_precision_score`): sum_n (R_n - R_{n-1}) P_n over
    the distinct score thresholds, highest first; tied scores enter together. NaN when there is no positive."""
    y = np.asarray(y_true_binary).astype(bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must have the same length")
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # index of the last item at each distinct score
    tp = np.cumsum(y)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(targets, scores) -> float:
    """mAP over classes: targets [N, C] multi-hot (values >= 0.5 count as positive, so label-smoothed targets work),
    scores [N, C]. Classes without a positive are left out of the mean (their AP is undefined)."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    if targets.ndim != 2 or targets.shape != scores.shape:
        raise ValueError(f"targets and scores must both be [N, C], got {targets.shape} and {scores.shape}")
    aps = np.array([average_precision(targets[:, c] >= 0.5, scores[:, c]) for c in range(targets.shape[1])])
    if np.all(np.isnan(aps)):
        raise ValueError("mean_average_precision: no class has a positive example")
    return float(np.nanmean(aps))
