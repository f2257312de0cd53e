"""Probes on frozen features: closed-form ridge, SGD logistic regression (optax) and k-nearest neighbours.

Every probe has `fit(features [N, D], labels [N]) -> self`, `scores(features) -> [N, C]` and `predict(features)`.
Features are standardised with the training mean and standard deviation (ridge and logistic) or L2-normalised
(k-NN, cosine similarity), so the probes do not depend on the embedding's scale.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imujax.eval import linear_probe


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
