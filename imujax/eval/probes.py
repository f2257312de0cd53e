"""Probes on frozen features: closed-form ridge, SGD logistic regression (optax) and k-nearest neighbours, and the
labelled-protocol probes `logistic_probe` / `mlp_probe` (scikit-learn, regularisation chosen by grouped CV on the
training subjects) with `pool_per_recording`.

Every probe has `fit(features [N, D], labels [N]) -> self`, `scores(features) -> [N, C]` and `predict(features)`.
Features are standardised with the training mean and standard deviation (ridge and logistic) or L2-normalised
(k-NN, cosine similarity), so the probes do not depend on the embedding's scale.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imujax.eval import linear_probe, metrics


def _check(features: np.ndarray, labels: np.ndarray | None = None, num_classes: int | None = None) -> None:
    if np.asarray(features).ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {np.asarray(features).shape}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(features),):
            raise ValueError(f"labels must be [N] = [{len(features)}], got shape {labels.shape}")
        if num_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")


@dataclasses.dataclass
class RidgeProbe:
    """Ridge regression onto one-hot targets, solved in closed form (`linear_probe.fit_ridge`)."""
    num_classes: int
    l2: float = 1e-2

    def fit(self, features, labels) -> "RidgeProbe":
        _check(features, labels, self.num_classes)
        self.mean_, self.scale_, self.weights_ = linear_probe.fit_ridge(features, np.asarray(labels), self.num_classes,
                                                                        self.l2)
        return self

    def scores(self, features) -> np.ndarray:
        _check(features)
        x = (np.asarray(features, np.float64) - self.mean_) / self.scale_
        return np.concatenate([x, np.ones((len(x), 1))], axis=1) @ self.weights_

    def predict(self, features) -> np.ndarray:
        return self.scores(features).argmax(axis=1)


@dataclasses.dataclass
class LogisticProbe:
    """Multinomial logistic regression trained with optax AdamW on mini-batches (cross-entropy + decoupled decay).

    Deterministic given `seed`. The whole training run is one jitted `lax.scan` over steps.
    """
    num_classes: int
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    steps: int = 500
    batch_size: int = 256
    label_smoothing: float = 0.0
    seed: int = 0

    def fit(self, features, labels) -> "LogisticProbe":
        _check(features, labels, self.num_classes)
        x = np.asarray(features, np.float64)
        self.mean_, self.scale_ = x.mean(axis=0), x.std(axis=0) + 1e-8
        x = jnp.asarray((x - self.mean_) / self.scale_, jnp.float32)
        y = jnp.asarray(labels, jnp.int32)
        n, d = x.shape
        batch = min(self.batch_size, n)
        tx = optax.adamw(self.learning_rate, weight_decay=self.weight_decay)
        params = {"w": jnp.zeros((d, self.num_classes)), "b": jnp.zeros((self.num_classes,))}
        targets = optax.smooth_labels(jax.nn.one_hot(y, self.num_classes), self.label_smoothing)

        def loss_fn(p, xb, tb):
            return optax.softmax_cross_entropy(xb @ p["w"] + p["b"], tb).mean()

        def step(carry, key):
            p, opt_state = carry
            idx = jax.random.choice(key, n, (batch,), replace=False)
            grads = jax.grad(loss_fn)(p, x[idx], targets[idx])
            updates, opt_state = tx.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), None

        keys = jax.random.split(jax.random.key(self.seed), self.steps)
        (params, _), _ = jax.jit(lambda c, k: jax.lax.scan(step, c, k))((params, tx.init(params)), keys)
        self.weights_ = {k: np.asarray(v, np.float64) for k, v in params.items()}
        return self

    def scores(self, features) -> np.ndarray:
        _check(features)
        x = (np.asarray(features, np.float64) - self.mean_) / self.scale_
        return x @ self.weights_["w"] + self.weights_["b"]

    def predict_proba(self, features) -> np.ndarray:
        logits = self.scores(features)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, features) -> np.ndarray:
        return self.scores(features).argmax(axis=1)


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclasses.dataclass
class KNNProbe:
    """k nearest neighbours by cosine similarity.

    weighting 'uniform': one vote per neighbour; 'similarity': votes weighted exp(sim / temperature) (the DINO-style
    weighted k-NN). Ties in the vote go to the class whose neighbours are most similar in total, then the smaller index.
    """
    num_classes: int
    k: int = 20
    weighting: str = "uniform"
    temperature: float = 0.07
    chunk: int = 1024

    def fit(self, features, labels) -> "KNNProbe":
        _check(features, labels, self.num_classes)
        if self.weighting not in ("uniform", "similarity"):
            raise ValueError(f"weighting must be 'uniform' or 'similarity', got {self.weighting!r}")
        self.bank_ = _l2_normalize(features)
        self.labels_ = np.asarray(labels, np.int64)
        return self

    def scores(self, features) -> np.ndarray:
        _check(features)
        queries = _l2_normalize(features)
        k = min(self.k, len(self.bank_))
        out = np.zeros((len(queries), self.num_classes))
        for start in range(0, len(queries), self.chunk):
            sim = queries[start:start + self.chunk] @ self.bank_.T
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            top_sim = np.take_along_axis(sim, top, axis=1)
            votes = np.ones_like(top_sim) if self.weighting == "uniform" else np.exp(top_sim / self.temperature)
            rows = np.repeat(np.arange(len(top))[:, None], k, axis=1)
            block = np.zeros((len(top), self.num_classes))
            np.add.at(block, (rows, self.labels_[top]), votes)
            if self.weighting == "uniform":  # break equal vote counts by summed similarity (always < one vote)
                tie_break = np.zeros_like(block)
                np.add.at(tie_break, (rows, self.labels_[top]), top_sim)
                block += 1e-6 * tie_break / k
            out[start:start + len(top)] = block
        return out

    def predict(self, features) -> np.ndarray:
        return self.scores(features).argmax(axis=1)


def make_probe(name: str, num_classes: int, **kwargs):
    """'ridge', 'logistic' or 'knn' with that probe's keyword arguments."""
    probes = {"ridge": RidgeProbe, "logistic": LogisticProbe, "knn": KNNProbe}
    if name not in probes:
        raise ValueError(f"unknown probe {name!r}; expected one of {sorted(probes)}")
    return probes[name](num_classes=num_classes, **kwargs)


# -- labelled-protocol probes (scikit-learn): hyperparameters chosen by grouped CV on the training subjects only ------

LOGISTIC_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
MLP_ALPHAS = (1e-4, 1e-2, 1.0)


class PooledRecordings(NamedTuple):
    features: np.ndarray   # [R, D] mean over each recording's windows
    labels: np.ndarray     # [R]
    record_ids: np.ndarray  # [R] in order of first appearance
    groups: np.ndarray | None  # [R] (e.g. subject) when given


def pool_per_recording(features, labels, record_ids, groups=None) -> PooledRecordings:
    """Mean-pools window features into one row per recording (one prediction per recording, as HAR papers report).

    A recording's windows must share one label (and one group): a recording with mixed labels is an error, not a vote.
    """
    features = np.asarray(features)
    _check(features)
    labels, record_ids = np.asarray(labels), np.asarray(record_ids)
    if labels.shape != (len(features),) or record_ids.shape != (len(features),):
        raise ValueError(f"labels {labels.shape} and record_ids {record_ids.shape} must both be [{len(features)}]")
    unique, first, inverse = np.unique(record_ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # keep the recordings in the order they first appear
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    index = rank[inverse.ravel()]
    counts = np.bincount(index, minlength=len(unique))
    pooled = np.zeros((len(unique), features.shape[1]), np.float64)
    np.add.at(pooled, index, features.astype(np.float64))
    pooled /= counts[:, None]

    def per_recording(values: np.ndarray, what: str) -> np.ndarray:
        out = values[first[order]]
        disagree = np.flatnonzero(values != out[index])
        if disagree.size:
            rid = record_ids[disagree[0]]
            raise ValueError(f"recording {rid!r} has windows with different {what}: "
                             f"{sorted(set(values[record_ids == rid].tolist()))}")
        return out

    pooled_groups = None if groups is None else per_recording(np.asarray(groups), "groups")
    return PooledRecordings(pooled.astype(features.dtype if features.dtype.kind == "f" else np.float64),
                            per_recording(labels, "labels"), unique[order], pooled_groups)


def _grouped_cv(train_groups: np.ndarray, folds: int):
    """GroupKFold over the training subjects; None when there is only one subject (nothing to hold out)."""
    from sklearn.model_selection import GroupKFold
    n_groups = len(np.unique(train_groups))
    return GroupKFold(n_splits=min(folds, n_groups)) if n_groups >= 2 else None


def _fit_and_score(estimator, param_name: str, grid, train_x, train_y, train_groups, test_x, test_y,
                   num_classes: int | None, folds: int) -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
    from sklearn.model_selection import GridSearchCV
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    train_y, test_y = np.asarray(train_y, np.int64), np.asarray(test_y, np.int64)
    train_groups = np.asarray(train_groups)
    _check(train_x, train_y)
    _check(test_x, test_y)
    if train_groups.shape != train_y.shape:
        raise ValueError(f"train_groups must be [{len(train_y)}], got shape {train_groups.shape}")
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"the training set holds one class only ({np.unique(train_y).tolist()}): nothing to probe")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train features have {train_x.shape[1]} dims, test features {test_x.shape[1]}")
    num_classes = num_classes or int(max(train_y.max(), test_y.max(initial=0))) + 1
    cv = _grouped_cv(train_groups, folds)
    with warnings.catch_warnings():  # small folds miss classes and short runs stop early; neither is an error here
        warnings.simplefilter("ignore", (ConvergenceWarning, UndefinedMetricWarning, UserWarning))
        if cv is None:
            chosen, cv_f1 = grid[len(grid) // 2], None
            model = estimator.set_params(**{param_name: chosen}).fit(train_x, train_y)
        else:
            search = GridSearchCV(estimator, {param_name: list(grid)}, scoring="f1_macro", cv=cv, refit=True)
            search.fit(train_x, train_y, groups=train_groups)
            model, chosen, cv_f1 = search.best_estimator_, search.best_params_[param_name], search.best_score_
        pred = model.predict(test_x).astype(np.int64)
    scores = metrics.per_class_scores(test_y, pred, num_classes)
    return {"accuracy": metrics.accuracy(test_y, pred), "macro_f1": metrics.f1_score(test_y, pred, "macro"),
            "per_class_f1": scores["f1"].tolist(), "confusion": metrics.confusion_matrix(test_y, pred,
                                                                                        num_classes).tolist(),
            param_name.split("__")[-1]: float(chosen), "cv_macro_f1": None if cv_f1 is None else float(cv_f1),
            "cv_folds": 0 if cv is None else cv.get_n_splits(), "n_train": int(len(train_y)),
            "n_test": int(len(test_y)), "predictions": pred.tolist()}


def logistic_probe(train_x, train_y, train_groups, test_x, test_y, *, num_classes: int | None = None,
                   cs=LOGISTIC_CS, folds: int = 5, max_iter: int = 2000) -> dict:
    """Standardise on train, multinomial logistic regression with C chosen by grouped CV (macro-F1) on the training
    subjects only, refit on all of train, scored on test.

    Returns accuracy, macro_f1, per_class_f1 [C], confusion [C][C] (rows true), C, cv_macro_f1, cv_folds, n_train,
    n_test and the test predictions. With one training subject there is nothing to cross-validate: C is the middle of
    the grid and cv_folds is 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    return _fit_and_score(estimator, "logisticregression__C", cs, train_x, train_y, train_groups, test_x, test_y,
                          num_classes, folds)


def mlp_probe(train_x, train_y, train_groups, test_x, test_y, *, num_classes: int | None = None,
              alphas=MLP_ALPHAS, hidden: int = 256, folds: int = 5, max_iter: int = 300, seed: int = 0) -> dict:
    """As `logistic_probe`, with a one-hidden-layer MLP (scikit-learn, Adam); its L2 `alpha` is chosen by grouped CV."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    estimator = make_pipeline(StandardScaler(), MLPClassifier((hidden,), max_iter=max_iter, random_state=seed))
    return _fit_and_score(estimator, "mlpclassifier__alpha", alphas, train_x, train_y, train_groups, test_x, test_y,
                          num_classes, folds)
