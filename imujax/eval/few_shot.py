"""Few-shot evaluation on frozen features: n labelled examples per class, repeated over seeded episodes.

Each episode draws `shots` training examples of every class (without replacement) from the support pool, fits a
classifier on them and scores the whole query set. Classifiers: 'prototype' (nearest class mean by cosine
similarity) or any probe name of `imujax.eval.probes` ('ridge', 'logistic', 'knn').
"""

from __future__ import annotations

import numpy as np

from imujax.eval import metrics, probes


def sample_support(labels: np.ndarray, shots: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `shots` examples of every class; a class with fewer examples is an error naming it."""
    labels = np.asarray(labels)
    chosen = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool) < shots:
            raise ValueError(f"few-shot: class {c} has {len(pool)} support examples, {shots} shots requested")
        chosen.append(rng.choice(pool, shots, replace=False))
    return np.concatenate(chosen)


class PrototypeClassifier:
    """Nearest class mean of L2-normalised features, by cosine similarity."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def fit(self, features, labels) -> "PrototypeClassifier":
        x = probes._l2_normalize(features)
        labels = np.asarray(labels)
        self.prototypes_ = probes._l2_normalize(np.stack([x[labels == c].mean(axis=0)
                                                          for c in range(self.num_classes)]))
        return self

    def scores(self, features) -> np.ndarray:
        return probes._l2_normalize(features) @ self.prototypes_.T

    def predict(self, features) -> np.ndarray:
        return self.scores(features).argmax(axis=1)


def few_shot_eval(support_x, support_y, query_x, query_y, num_classes: int, shots: int = 5, episodes: int = 10,
                  classifier: str = "prototype", seed: int = 0, **probe_kwargs) -> dict[str, float]:
    """Mean and standard deviation over episodes of query accuracy and macro F1."""
    rng = np.random.default_rng(seed)
    accs, f1s = [], []
    for _ in range(episodes):
        idx = sample_support(support_y, shots, num_classes, rng)
        if classifier == "prototype":
            model = PrototypeClassifier(num_classes)
        else:
            model = probes.make_probe(classifier, num_classes, **probe_kwargs)
        model.fit(np.asarray(support_x)[idx], np.asarray(support_y)[idx])
        pred = model.predict(query_x)
        accs.append(metrics.accuracy(query_y, pred))
        f1s.append(metrics.f1_score(query_y, pred, "macro"))
    return {f"{shots}shot_acc": float(np.mean(accs)), f"{shots}shot_acc_std": float(np.std(accs)),
            f"{shots}shot_macro_f1": float(np.mean(f1s)), "episodes": episodes}
