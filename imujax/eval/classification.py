"""Classification metrics from a model's own logits, for the periodic and `--mode=eval` evaluation of fine-tuning
systems, and the checkpoint-selection metric they define.

A system opts in by defining ``classification_spec() -> ClassificationSpec``: which ``embed`` output holds the
logits ([B, C], or [B, H, C] with one head per prediction horizon), which batch keys hold the labels ([B] or [B, H]
class indices; negative = unlabelled, left out), optional multi-hot targets (adds mAP) and transition flags (kept for
LOSO reports), and the metric that selects the best checkpoint.

Metric names (all under ``eval/`` in metrics.jsonl and TensorBoard):
- one horizon: ``accuracy``, ``macro_f1``, ``weighted_f1`` (+ ``map`` with multi-hot targets);
- several horizons: ``<metric>_<horizon>`` for each horizon name (e.g. ``weighted_f1_h0s``, ``weighted_f1_h0.5s``)
  and ``<metric>_mean``, the unweighted mean over horizons.
F1 follows scikit-learn (`imujax.eval.metrics`): macro over the classes present in labels or predictions, weighted by
true support, as the RevalExo trainer's classification report.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from imujax.eval import metrics

METRICS = ("accuracy", "macro_f1", "weighted_f1")
SELECTABLE = METRICS + ("map",)


def horizon_name(seconds: float) -> str:
    """0.0 -> 'h0s', 0.1 -> 'h0.1s', 1.0 -> 'h1s' (characters TensorBoard keeps in a tag)."""
    return f"h{float(seconds):g}s"


@dataclasses.dataclass(frozen=True)
class ClassificationSpec:
    num_classes: int
    logits: str = "logits"                 # `embed` output: [B, C] or [B, H, C]
    labels: str = "label"                  # batch key: [B] or [B, H] class indices (< 0: no label)
    horizon_names: tuple[str, ...] = ()    # one per head; () or one name: a single head, unsuffixed metric names
    multi_hot: str = ""                    # batch key of [B, C] targets (values >= 0.5 positive): adds mAP
    transitions: str = ""                  # batch key of [B, H] bool transition flags (LOSO steady/transition split)
    selection: str = "weighted_f1"         # metric that selects the best checkpoint ("" = no selection)
    selection_horizon: int = 0             # horizon index of the selection metric
    selection_mode: str = "max"

    def __post_init__(self):
        if self.selection and self.selection not in SELECTABLE:
            raise ValueError(f"selection metric {self.selection!r} is not one of {SELECTABLE}")
        if self.selection == "map" and not self.multi_hot:
            raise ValueError("selection by 'map' needs multi-hot targets (ClassificationSpec.multi_hot)")
        if self.selection_mode not in ("max", "min"):
            raise ValueError(f"selection_mode must be 'max' or 'min', got {self.selection_mode!r}")
        if self.horizon_names and not 0 <= self.selection_horizon < len(self.horizon_names):
            raise ValueError(f"selection_horizon {self.selection_horizon} outside the {len(self.horizon_names)} "
                             f"horizons")

    @property
    def multi_horizon(self) -> bool:
        return len(self.horizon_names) > 1

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """Batch entries the evaluator must carry alongside the embeddings."""
        return tuple(k for k in (self.labels, self.multi_hot, self.transitions) if k)

    def metric_name(self, metric: str, horizon: int | None = None) -> str:
        """Name of a metric (without the 'eval/' prefix) at one horizon, or its mean over horizons (None)."""
        if not self.multi_horizon or metric == "map":
            return metric
        return f"{metric}_{'mean' if horizon is None else self.horizon_names[horizon]}"

    @property
    def selection_key(self) -> str:
        """The logged key of the selection metric, e.g. 'eval/weighted_f1_h0s' (RevalExo: weighted F1 at horizon 0)."""
        return f"eval/{self.metric_name(self.selection, self.selection_horizon)}" if self.selection else ""


@dataclasses.dataclass
class ClassificationResult:
    scalars: dict[str, float]              # metric name (no 'eval/' prefix) -> value
    confusions: dict[str, np.ndarray]      # horizon name ('' for a single head) -> [C, C], rows true
    labels: np.ndarray                     # [N, H]
    predictions: np.ndarray                # [N, H] argmax of the logits
    transitions: np.ndarray | None         # [N, H] bool
    horizon_names: tuple[str, ...]


def _per_horizon(array: np.ndarray, num: int, what: str) -> np.ndarray:
    array = np.asarray(array)
    array = array[:, None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != num:
        raise ValueError(f"{what} has shape {array.shape}; expected [N] or [N, {num}]")
    return array


def classification_metrics(spec: ClassificationSpec, outputs: dict[str, np.ndarray]) -> ClassificationResult:
    """Metrics of the argmax predictions of ``outputs[spec.logits]`` against ``outputs[spec.labels]``."""
    logits = np.asarray(outputs[spec.logits], np.float32)
    logits = logits[:, None] if logits.ndim == 2 else logits
    if logits.ndim != 3 or logits.shape[-1] != spec.num_classes:
        raise ValueError(f"logits '{spec.logits}' have shape {np.shape(outputs[spec.logits])}; expected [N, C] or "
                         f"[N, H, C] with C = {spec.num_classes}")
    num_h = logits.shape[1]
    names = tuple(spec.horizon_names) or ("h0",)
    if len(names) != num_h:
        raise ValueError(f"{num_h} logit heads for {len(names)} horizon names {names}")
    labels = _per_horizon(outputs[spec.labels], num_h, f"labels '{spec.labels}'").astype(np.int64)
    preds = logits.argmax(-1)
    transitions = None
    if spec.transitions and spec.transitions in outputs:
        transitions = _per_horizon(outputs[spec.transitions], num_h, f"transitions '{spec.transitions}'").astype(bool)
    scalars: dict[str, float] = {}
    confusions: dict[str, np.ndarray] = {}
    per_metric: dict[str, list[float]] = {m: [] for m in METRICS}
    for h, name in enumerate(names):
        keep = labels[:, h] >= 0
        if not keep.any():
            continue
        y, p = labels[keep, h], preds[keep, h]
        summary = metrics.classification_summary(y, p, spec.num_classes)
        for m in METRICS:
            scalars[spec.metric_name(m, h)] = summary[m]
            per_metric[m].append(summary[m])
        confusions[name if spec.multi_horizon else ""] = metrics.confusion_matrix(y, p, spec.num_classes)
    if spec.multi_horizon:
        for m, values in per_metric.items():
            if values:
                scalars[spec.metric_name(m)] = float(np.mean(values))
    if spec.multi_hot and spec.multi_hot in outputs:
        targets = np.asarray(outputs[spec.multi_hot])
        if (targets >= 0.5).any():
            scalars["map"] = metrics.mean_average_precision(targets, logits[:, 0])
    return ClassificationResult(scalars, confusions, labels, preds, transitions, names)


def save_predictions(path: str, result: ClassificationResult, **extra) -> None:
    """An .npz of labels, predictions (and transitions) per horizon, read by `imujax.eval.loso.finetune_report`."""
    arrays = dict(labels=result.labels, predictions=result.predictions,
                  horizon_names=np.asarray(result.horizon_names, dtype=str), **extra)
    if result.transitions is not None:
        arrays["transitions"] = result.transitions
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_predictions(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def names_for(horizons: Sequence[float]) -> tuple[str, ...]:
    return tuple(horizon_name(h) for h in horizons)
