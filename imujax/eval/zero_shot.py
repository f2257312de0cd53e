"""TSFM evaluation (alxdofficial/tsfm@308eea1 val_scripts/human_activity_recognition/evaluate_tsfm.py): zero-shot
open/closed set, majority vote, 1%/10% supervision.

Scores are cosine similarities of L2-normalised sensor embeddings with label-bank embeddings, max over prototypes.
Macro-F1 is the fixed-class form: every class of the test label list counts, absent ones with F1 = 0.
Supervised protocol: 80/10/10 split (seed 3431), a class-balanced subsample of the training part
(n = max(1, int(N_train * rate) // n_classes) per class), end-to-end fine-tuning of ``params`` with logits
emb · text^T / 0.07 against frozen label embeddings, AdamW 1e-5 / wd 1e-5, batch 32, <= 20 epochs, early stopping
with patience 5 on validation accuracy (best restored).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imujax.eval import metrics


def label_scores(emb: np.ndarray, label_emb: np.ndarray) -> np.ndarray:
    """emb [N, D] x label_emb [L, D] or [L, K, D] -> [N, L] (max over the K prototypes)."""
    label_emb = label_emb[:, None] if label_emb.ndim == 2 else label_emb
    return np.einsum("nd,lkd->nlk", emb, label_emb).max(axis=-1)


def _summary(y_true, y_pred, labels: Sequence[int]) -> dict[str, float]:
    return {"acc": metrics.accuracy(y_true, y_pred),
            "macro_f1": metrics.f1_score(y_true, y_pred, "macro", labels=labels),
            "weighted_f1": metrics.f1_score(y_true, y_pred, "weighted", labels=labels)}


def closed_set(emb: np.ndarray, label_emb: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """Candidates are the test dataset's own classes (indices into the sorted class list)."""
    pred = label_scores(emb, label_emb).argmax(axis=1)
    return _summary(np.asarray(y_true), pred, list(range(label_emb.shape[0])))


def open_set(emb: np.ndarray, candidate_emb: np.ndarray, candidate_names: Sequence[str], true_names: Sequence[str],
             groups: Mapping[str, str]) -> dict[str, float]:
    """Candidates are all training labels; prediction and truth are compared as synonym-group names."""
    group = lambda name: groups.get(name, name)
    pred_groups = [group(candidate_names[i]) for i in label_scores(emb, candidate_emb).argmax(axis=1)]
    true_groups = [group(n) for n in true_names]
    names = sorted(set(true_groups) | set(pred_groups))
    index = {n: i for i, n in enumerate(names)}
    y_true = np.array([index[g] for g in true_groups])
    y_pred = np.array([index[g] for g in pred_groups])
    return _summary(y_true, y_pred, sorted({index[g] for g in true_groups} | set(y_pred.tolist())))


def majority_vote(patch_scores: np.ndarray, patch_mask: np.ndarray) -> np.ndarray:
    """[N, P, L] per-patch scores -> per-recording class with the most patch votes (ties: lowest index)."""
    votes = patch_scores.argmax(axis=-1)
    counts = np.zeros((patch_scores.shape[0], patch_scores.shape[2]), np.int64)
    for n in range(votes.shape[0]):
        np.add.at(counts[n], votes[n][patch_mask[n].astype(bool)], 1)
    return counts.argmax(axis=1)


def split_indices(n: int, seed: int = 3431, fractions: tuple[float, float] = (0.8, 0.1)
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(fractions[0] * n), int(fractions[1] * n)
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]


def balanced_subsample(train_idx: np.ndarray, labels: np.ndarray, rate: float, num_classes: int,
                       seed: int = 3431) -> np.ndarray:
    per_class = max(1, int(len(train_idx) * rate) // num_classes)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = train_idx[labels[train_idx] == c]
        chosen.extend(rng.permutation(members)[:per_class].tolist())
    return np.asarray(sorted(chosen), np.int64)


EmbedFn = Callable[[Any, Mapping[str, jax.Array]], jax.Array]


def finetune(params, embed_fn: EmbedFn, label_emb: np.ndarray, inputs: Mapping[str, np.ndarray], labels: np.ndarray,
             train_idx: np.ndarray, val_idx: np.ndarray, *, learning_rate: float = 1e-5, weight_decay: float = 1e-5,
             batch_size: int = 32, max_epochs: int = 20, patience: int = 5, temperature: float = 0.07,
             seed: int = 3431) -> tuple[Any, list[float]]:
    """End-to-end fine-tuning of ``params`` (embed_fn(params, batch) -> L2-normalised [B, D]); returns the best
    params by validation accuracy and the per-epoch validation accuracies."""
    text = jnp.asarray(label_emb[:, None] if label_emb.ndim == 2 else label_emb)
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)
    opt_state = tx.init(params)

    def logits(p, batch):
        return jnp.einsum("bd,lkd->blk", embed_fn(p, batch), text).max(-1) / temperature

    @jax.jit
    def step(p, state, batch, y):
        loss, grads = jax.value_and_grad(
            lambda q: optax.softmax_cross_entropy_with_integer_labels(logits(q, batch), y).mean())(p)
        updates, state = tx.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    predict = jax.jit(lambda p, batch: logits(p, batch).argmax(-1))
    take = lambda idx: {k: jnp.asarray(v[idx]) for k, v in inputs.items()}

    def accuracy(p, idx):
        preds = np.concatenate([np.asarray(predict(p, take(idx[i:i + batch_size])))
                                for i in range(0, len(idx), batch_size)])
        return float((preds == labels[idx]).mean())

    rng = np.random.default_rng(seed)
    best, best_acc, history, waited = params, accuracy(params, val_idx), [], 0
    for _ in range(max_epochs):
        order = rng.permutation(train_idx)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            params, opt_state, _ = step(params, opt_state, take(idx), jnp.asarray(labels[idx]))
        acc = accuracy(params, val_idx)
        history.append(acc)
        if acc > best_acc:
            best, best_acc, waited = params, acc, 0
        else:
            waited += 1
            if waited >= patience:
                break
    return best, history


def supervised_protocol(params, embed_fn: EmbedFn, label_emb: np.ndarray, inputs: Mapping[str, np.ndarray],
                        labels: np.ndarray, rate: float, seed: int = 3431, **finetune_kwargs) -> dict[str, float]:
    """The 1% / 10% protocol: split, balanced subsample, fine-tune, then closed-set metrics on the test part."""
    labels = np.asarray(labels)
    num_classes = label_emb.shape[0]
    train, val, test = split_indices(len(labels), seed)
    train = balanced_subsample(train, labels, rate, num_classes, seed)
    best, history = finetune(params, embed_fn, label_emb, inputs, labels, train, val, seed=seed, **finetune_kwargs)
    emb = np.concatenate([np.asarray(embed_fn(best, {k: jnp.asarray(v[test[i:i + 256]]) for k, v in inputs.items()}))
                          for i in range(0, len(test), 256)])
    out = closed_set(emb, label_emb, labels[test])
    return {**out, "train_examples": float(len(train)), "epochs": float(len(history))}


def closed_set_predictions(system, model, source, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Closed-set zero-shot on every record of ``source``: the class whose label-bank embedding (of the raw
    config.data.class_names text, max over prototypes) scores highest against the record's session embedding, and the
    record's label; ``model`` in eval mode. Batches are padded to batch_size (one compiled shape)."""
    embed = nnx.jit(lambda m, batch: system.session_embedding(m, batch))
    label_emb = np.asarray(system.label_embeddings(model))
    preds, labels = [], []
    for start in range(0, len(source), batch_size):
        rows = [system.preprocess(source[i], None) for i in range(start, min(start + batch_size, len(source)))]
        padded = rows + [rows[-1]] * (batch_size - len(rows))
        batch = {k: jnp.asarray(np.stack([r[k] for r in padded])) for k in rows[0]
                 if k not in ("label", "label_variant")}
        emb = np.asarray(embed(model, batch))[:len(rows)]
        preds.append(label_scores(emb, label_emb).argmax(axis=1))
        labels.append(np.array([r["label"] for r in rows]))
    return np.concatenate(preds), np.concatenate(labels)


# -- end to end on a trained TSFM Stage-2 model (`python -m imujax.main --mode=eval` on a Stage-2 workdir) ---------
def evaluate_model(system, model, source, rates: Sequence[float] = (0.10,), finetune_lr: float = 1e-5
                   ) -> dict[str, float]:
    """Closed-set zero-shot metrics (and chance = 1 / classes) of an eval-mode TSFM Stage-2 ``model`` on every
    record of ``source``, and the supervision protocol at each of ``rates`` ('supervised_10pct/...' for 0.1)."""
    rows = [system.preprocess(source[i], None) for i in range(len(source))]
    inputs = {k: np.stack([r[k] for r in rows]) for k in rows[0] if k not in ("label", "label_variant")}
    labels = np.array([r["label"] for r in rows])
    graphdef, params, other = nnx.split(model, nnx.Param, ...)

    def embed_fn(p, batch):
        return system.session_embedding(nnx.merge(graphdef, p, other), batch)

    embed = jax.jit(embed_fn)
    emb = np.concatenate([np.asarray(embed(params, {k: v[i:i + 64] for k, v in inputs.items()}))
                          for i in range(0, len(labels), 64)])
    label_emb = np.asarray(system.label_embeddings(model))
    out = {f"zs_closed/{k}": v for k, v in closed_set(emb, label_emb, labels).items()}
    out["zs_closed/chance_acc"] = 1.0 / label_emb.shape[0]
    for rate in rates:
        sup = supervised_protocol(params, embed_fn, label_emb, inputs, labels, rate, learning_rate=finetune_lr)
        out.update({f"supervised_{rate * 100:g}pct/{k}": v for k, v in sup.items()})
    return out
