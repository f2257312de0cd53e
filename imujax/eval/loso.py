"""Leave-one-subject-out (LOSO) evaluation with multi-horizon labels: the RevalExo protocol.

RevalExo (revalexo/revalexo@6ca9000 train/loso_multi_horizon.py, train/configs/loso/revalexo/): 13 folds, one per
subject with egocentric video; each fold trains on the other 12 subjects and uses the held-out subject as both
validation and test set. Labels are the locomotion mode at the window end + h for h in (0, .1, .2, .3, .5, 1.0) s, one
head per horizon. The checkpoint kept is the one with the best weighted F1 at horizon index 0 on the validation (= test)
subject; this is optimistic, and reproduced here on purpose (`selection="test_subject"`); `selection="first"` keeps the
first candidate (no selection on test data). Metrics are reported per horizon, over all horizons pooled, and split into
steady-state and transition windows by the per-horizon transition flags, per fold and pooled over folds.

Here a "candidate" stands for one upstream checkpoint: a function that fits on the training arrays and returns a
predictor (e.g. probes with different regularisation, or fine-tuning epochs).

Fine-tuned folds (`configs/revalexo_loso.py:<subject>`, one workdir each) make the selection inside the training loop
(`imujax.checkpointing.BestCheckpointer`: weighted F1 at horizon 0 on the held-out subject, every epoch);
`--mode=eval` on a fold evaluates that selected checkpoint and writes eval_best_predictions.npz, and
`finetune_report` pools those files into the same report as `run_loso`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Callable, Mapping, Sequence

import numpy as np

from imujax.eval import classification, metrics

REVALEXO_SUBJECTS = ("Subject01", "Subject02", "Subject03", "Subject05", "Subject06", "Subject07", "Subject08",
                     "Subject11", "Subject17", "Subject20", "Subject24", "Subject26", "Subject29")
REVALEXO_HORIZONS_S = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)

# fit(train_features [N, D], train_labels [N, H]) -> predict(features [M, D]) -> labels [M, H]
Predictor = Callable[[np.ndarray], np.ndarray]
Candidate = Callable[[np.ndarray, np.ndarray], Predictor]


@dataclasses.dataclass
class LosoData:
    features: np.ndarray                    # [N, D]
    labels: np.ndarray                      # [N, H] class index per horizon ([N] is read as H = 1)
    subjects: np.ndarray                    # [N] subject ids (str or int)
    transitions: np.ndarray | None = None   # [N, H] bool: the label time falls in a transition segment

    def __post_init__(self):
        self.features = np.asarray(self.features)
        self.labels = np.asarray(self.labels)
        if self.labels.ndim == 1:
            self.labels = self.labels[:, None]
        self.subjects = np.asarray(self.subjects)
        n = len(self.features)
        if self.features.ndim != 2 or self.labels.shape[0] != n or self.subjects.shape != (n,):
            raise ValueError(f"LosoData: features [N, D], labels [N, H] and subjects [N] must agree; got "
                             f"{self.features.shape}, {self.labels.shape}, {self.subjects.shape}")
        if self.transitions is not None:
            self.transitions = np.asarray(self.transitions, bool)
            if self.transitions.ndim == 1:
                self.transitions = self.transitions[:, None]
            if self.transitions.shape != self.labels.shape:
                raise ValueError(f"LosoData: transitions {self.transitions.shape} must match labels "
                                 f"{self.labels.shape}")


def probe_candidate(make_probe: Callable[[], object]) -> Candidate:
    """A candidate fitting one fresh probe per horizon (probes from imujax.eval.probes)."""

    def fit(x: np.ndarray, y: np.ndarray) -> Predictor:
        fitted = [make_probe().fit(x, y[:, h]) for h in range(y.shape[1])]
        return lambda q: np.stack([p.predict(q) for p in fitted], axis=1)

    return fit


def horizon_metrics(labels: np.ndarray, preds: np.ndarray, transitions: np.ndarray | None,
                    horizon_names: Sequence[str], num_classes: int) -> dict[str, dict]:
    """{horizon name | 'all': {'all' | 'steady' | 'transition': summary}} (empty subsets are left out)."""
    out: dict[str, dict] = {}
    columns = [(name, [h]) for h, name in enumerate(horizon_names)] + [("all", list(range(len(horizon_names))))]
    for name, hs in columns:
        y, p = labels[:, hs].ravel(), preds[:, hs].ravel()
        groups = {"all": np.ones_like(y, bool)}
        if transitions is not None:
            t = transitions[:, hs].ravel()
            groups.update(steady=~t, transition=t)
        out[name] = {g: metrics.classification_summary(y[m], p[m], num_classes) for g, m in groups.items() if m.any()}
    return out


def run_loso(data: LosoData, candidates: Mapping[str, Candidate], num_classes: int,
             subjects: Sequence | None = None, horizon_names: Sequence[str] | None = None,
             selection: str = "test_subject", selection_horizon: int = 0) -> dict:
    """Runs every fold; returns per-fold results, pooled metrics and pooled confusion matrices per horizon."""
    if selection not in ("test_subject", "first"):
        raise ValueError(f"selection must be 'test_subject' (upstream) or 'first', got {selection!r}")
    if not candidates:
        raise ValueError("run_loso needs at least one candidate")
    num_h = data.labels.shape[1]
    horizon_names = list(horizon_names or [f"h{h}" for h in range(num_h)])
    if len(horizon_names) != num_h:
        raise ValueError(f"{len(horizon_names)} horizon names for {num_h} label columns")
    present = list(dict.fromkeys(data.subjects.tolist()))
    subjects = list(subjects) if subjects is not None else sorted(present)
    missing = [s for s in subjects if s not in present]
    if missing:
        raise ValueError(f"LOSO subjects {missing} have no examples (present: {present})")

    folds, pooled_y, pooled_p, pooled_t = [], [], [], []
    for subject in subjects:
        test = data.subjects == subject
        train = ~test
        if not train.any():
            raise ValueError(f"fold {subject!r}: no training subjects left")
        tried = {}
        for name, fit in candidates.items():
            preds = np.asarray(fit(data.features[train], data.labels[train])(data.features[test]))
            score = metrics.f1_score(data.labels[test][:, selection_horizon], preds[:, selection_horizon],
                                     "weighted")
            tried[name] = (score, preds)
            if selection == "first":
                break
        chosen = max(tried, key=lambda n: tried[n][0])
        preds = tried[chosen][1]
        trans = None if data.transitions is None else data.transitions[test]
        folds.append({"subject": _plain(subject), "num_test": int(test.sum()), "num_train": int(train.sum()),
                      "selected": chosen,
                      "selection_scores": {n: s for n, (s, _) in tried.items()},
                      "metrics": horizon_metrics(data.labels[test], preds, trans, horizon_names, num_classes)})
        pooled_y.append(data.labels[test])
        pooled_p.append(preds)
        if trans is not None:
            pooled_t.append(trans)

    protocol = {"selection": selection, "selection_metric": f"weighted_f1@{horizon_names[selection_horizon]}",
                "subjects": [_plain(s) for s in subjects], "horizons": horizon_names, "candidates": list(candidates)}
    return _report(protocol, folds, pooled_y, pooled_p, pooled_t, horizon_names, num_classes)


def _report(protocol: dict, folds: list, pooled_y: list, pooled_p: list, pooled_t: list,
            horizon_names: list[str], num_classes: int) -> dict:
    y, p = np.concatenate(pooled_y), np.concatenate(pooled_p)
    t = np.concatenate(pooled_t) if pooled_t and len(pooled_t) == len(pooled_y) else None
    fold_wf1 = {h: [f["metrics"][h]["all"]["weighted_f1"] for f in folds] for h in horizon_names + ["all"]}
    return {
        "protocol": protocol,
        "folds": folds,
        "pooled": horizon_metrics(y, p, t, horizon_names, num_classes),
        "fold_mean_weighted_f1": {h: float(np.mean(v)) for h, v in fold_wf1.items()},
        "fold_std_weighted_f1": {h: float(np.std(v)) for h, v in fold_wf1.items()},
        "confusion": {name: metrics.confusion_matrix(y[:, h], p[:, h], num_classes).tolist()
                      for h, name in enumerate(horizon_names)},
    }


def finetune_report(fold_workdirs: Mapping[str, str], num_classes: int, source: str = "best") -> dict:
    """LOSO report of fine-tuned folds, {held-out subject: fold workdir}, from each fold's
    ``eval_<source>_predictions.npz`` (written by ``--mode=eval``; source 'best' = the checkpoint the loop selected).
    Same structure as `run_loso`; each fold's "selected" is the evaluated checkpoint step."""
    if not fold_workdirs:
        raise ValueError("finetune_report needs at least one fold")
    folds, pooled_y, pooled_p, pooled_t = [], [], [], []
    horizon_names = None
    for subject, workdir in fold_workdirs.items():
        path = os.path.join(workdir, f"eval_{source}_predictions.npz")
        if not os.path.exists(path):
            raise FileNotFoundError(f"fold {subject!r}: no {path}; run --mode=eval on that fold's workdir first")
        fold = classification.load_predictions(path)
        names = [str(n) for n in fold["horizon_names"]]
        if horizon_names is None:
            horizon_names = names
        elif names != horizon_names:
            raise ValueError(f"fold {subject!r} has horizons {names}, other folds {horizon_names}")
        labels, preds = fold["labels"], fold["predictions"]
        keep = (labels >= 0).all(axis=1)  # windows with a label at every horizon
        trans = fold["transitions"][keep] if "transitions" in fold else None
        labels, preds = labels[keep], preds[keep]
        folds.append({"subject": subject, "num_test": int(len(labels)), "selected": int(fold["step"]),
                      "metrics": horizon_metrics(labels, preds, trans, horizon_names, num_classes)})
        pooled_y.append(labels)
        pooled_p.append(preds)
        if trans is not None:
            pooled_t.append(trans)
    protocol = {"selection": "test_subject" if source == "best" else source,
                "selection_metric": f"weighted_f1@{horizon_names[0]}" if source == "best" else "",
                "subjects": list(fold_workdirs), "horizons": horizon_names, "checkpoint": source}
    return _report(protocol, folds, pooled_y, pooled_p, pooled_t, horizon_names, num_classes)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def write_report(result: dict, directory: str) -> dict[str, str]:
    """loso.json (everything) and loso_summary.csv (pooled + fold-mean metrics per horizon and subset)."""
    os.makedirs(directory, exist_ok=True)
    paths = {"json": os.path.join(directory, "loso.json"), "csv": os.path.join(directory, "loso_summary.csv")}
    with open(paths["json"], "w") as f:
        json.dump(result, f, indent=1)
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["horizon", "subset", "count", "accuracy", "macro_f1", "weighted_f1",
                         "fold_mean_weighted_f1", "fold_std_weighted_f1"])
        for horizon, subsets in result["pooled"].items():
            for subset, m in subsets.items():
                fold = [f"{result[k][horizon]:.4f}" if subset == "all" else ""
                        for k in ("fold_mean_weighted_f1", "fold_std_weighted_f1")]
                writer.writerow([horizon, subset, m["count"], f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}",
                                 f"{m['weighted_f1']:.4f}", *fold])
    return paths
