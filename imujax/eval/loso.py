"""Leave-one-subject-out (LOSO) evaluation with multi-horizon labels: the RevalExo protocol.

RevalExo (revalexo/revalexo@6ca9000 train/loso_multi_horizon.py, train/configs/loso/revalexo/): 13 folds, one per
subject with egocentric video; each fold trains on the other 12 subjects and uses the held-out subject as both
validation and test set. Labels are the locomotion mode at the window end + h for h in (0, .1, .2, .3, .5, 1.0) s, one
head per horizon. The checkpoint kept is the one with the best weighted F1 at horizon index 0 on the validation (= test)
subject; this is optimistic, and reproduced on purpose. Metrics are reported per horizon, over all horizons pooled,
and split into steady-state and transition windows by the per-horizon transition flags, per fold and pooled over folds.

Fine-tuned folds (`configs/revalexo_loso.py:<subject>`, one workdir each) make the selection inside the training loop
(`imujax.checkpointing.BestCheckpointer`: weighted F1 at horizon 0 on the held-out subject, every epoch);
`--mode=eval` on a fold evaluates that selected checkpoint and writes eval_best_predictions.npz, and
`finetune_report` pools those files into one report (`write_report`: loso.json and loso_summary.csv).
"""

from __future__ import annotations

import csv
import json
import os
from typing import Mapping, Sequence

import numpy as np

from imujax.eval import classification, metrics

REVALEXO_SUBJECTS = ("Subject01", "Subject02", "Subject03", "Subject05", "Subject06", "Subject07", "Subject08",
                     "Subject11", "Subject17", "Subject20", "Subject24", "Subject26", "Subject29")
REVALEXO_HORIZONS_S = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


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
    Each fold's "selected" is the evaluated checkpoint step."""
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
