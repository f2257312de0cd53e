"""The PRIMUS few-shot downstream protocol on frozen encoder features.

Facts: Nokia-Bell-Labs/pretrained-imu-encoders@562e142 downstream_evaluation/classification_downstream_egoexo4d.py:
1. keep K randomly chosen training windows per class (seeded permutation; classes with <= K windows keep all);
2. the classifier is Linear(D -> C) on L2-normalised features, its weight row c initialised to the mean of the
   L2-normalised text embeddings of class c's prompts (the mean is not renormalised), bias 0;
3. test once before training: the "zero-shot" accuracy of the text-initialised head;
4. train the head only (frozen encoder): AdamW lr 1e-4, weight decay 1e-4, batch 256, 20 epochs, per-step linear
   warmup then cosine to 0 (T_max = int(max(N / 256, 1) * 20), warmup = max(T_max // 100, 10));
5. validate every 5 epochs, keep the best-val-accuracy head, report its test accuracy (micro accuracy).

Upstream drops the last partial batch of the val / test loaders; `drop_last_eval=True` reproduces that (it drops
everything when a split has fewer than 256 windows, so it is off by default). Features are precomputed once
(`mmcl` head outputs for PRIMUS), which is what a frozen encoder under no_grad amounts to.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class DownstreamConfig:
    shots: int | None = None          # K windows per class; None = all
    seed: int = 1234
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 256
    epochs: int = 20
    val_every_epochs: int = 5
    drop_last_eval: bool = False


def few_shot_indices(labels: np.ndarray, shots: int | None, seed: int = 1234) -> np.ndarray:
    """Sorted indices of K random windows per class (all of a class with <= K windows; all when shots is None)."""
    labels = np.asarray(labels)
    if shots is None:
        return np.arange(len(labels))
    if shots < 1:
        raise ValueError(f"few_shot_indices: shots must be >= 1 (or None for all), got {shots}")
    rng = np.random.RandomState(seed)
    keep = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        keep.append(members if len(members) <= shots else members[rng.permutation(len(members))[:shots]])
    return np.sort(np.concatenate(keep))


def _normalize(x: np.ndarray | jax.Array, eps: float = 1e-12):
    xp = jnp if isinstance(x, jax.Array) else np
    return x / xp.maximum(xp.linalg.norm(x, axis=-1, keepdims=True), eps)


def text_prompt_head(prompt_embeddings: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(weight [C, D], bias [C]) from one [P_c, D] array of prompt embeddings per class."""
    if not prompt_embeddings:
        raise ValueError("text_prompt_head: no classes given")
    rows = []
    for c, prompts in enumerate(prompt_embeddings):
        prompts = np.asarray(prompts, np.float64)
        if prompts.ndim != 2 or len(prompts) == 0:
            raise ValueError(f"text_prompt_head: class {c} needs a [P, D] array of prompt embeddings, got "
                             f"{prompts.shape}")
        rows.append(_normalize(prompts).mean(axis=0))
    widths = {r.shape[0] for r in rows}
    if len(widths) != 1:
        raise ValueError(f"text_prompt_head: prompt embeddings have different widths {sorted(widths)}")
    weight = np.stack(rows).astype(np.float32)
    return weight, np.zeros(len(rows), np.float32)


def head_logits(params: dict, features):
    """ClassificationHead(normalize=True): L2-normalise the features, then Linear."""
    return _normalize(features) @ params["weight"].T + params["bias"]


def accuracy(params: dict, features: np.ndarray, labels: np.ndarray, batch_size: int = 256,
             drop_last: bool = False) -> float:
    n = len(labels)
    if drop_last:
        n = (n // batch_size) * batch_size
        if n == 0:
            raise ValueError(f"accuracy: drop_last with {len(labels)} windows < batch {batch_size} leaves nothing")
    logits = head_logits({k: np.asarray(v) for k, v in params.items()}, np.asarray(features[:n], np.float32))
    return float((logits.argmax(axis=1) == np.asarray(labels[:n])).mean())


def warmup_cosine_schedule(base_lr: float, num_train: int, batch_size: int, epochs: int) -> tuple[optax.Schedule, int]:
    """Upstream's per-step schedule and its length T_max."""
    total = int(max(num_train / batch_size, 1) * epochs)
    warmup = max(total // 100, 10)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm = base_lr * (step + 1) / warmup
        progress = jnp.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
        cosine = 0.5 * base_lr * (1 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warmup, warm, cosine)

    return schedule, total


def run_protocol(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], prompt_embeddings: Sequence[np.ndarray],
                 config: DownstreamConfig = DownstreamConfig()) -> dict[str, float]:
    """Zero-shot accuracy of the text-initialised head, then few-shot training; returns the figures."""
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = train, val, test
    keep = few_shot_indices(y_train, config.shots, config.seed)
    x_train, y_train = np.asarray(x_train, np.float32)[keep], np.asarray(y_train)[keep]
    weight, bias = text_prompt_head(prompt_embeddings)
    if weight.shape[1] != x_train.shape[1]:
        raise ValueError(f"run_protocol: features are {x_train.shape[1]}-d but prompt embeddings {weight.shape[1]}-d")
    params = {"weight": jnp.asarray(weight), "bias": jnp.asarray(bias)}
    acc = lambda p, x, y: accuracy(p, x, y, config.batch_size, config.drop_last_eval)  # noqa: E731
    result = {"zero_shot_test_acc": acc(params, x_test, y_test), "zero_shot_val_acc": acc(params, x_val, y_val),
              "num_train": float(len(y_train))}

    schedule, _ = warmup_cosine_schedule(config.learning_rate, len(y_train), config.batch_size, config.epochs)
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(head_logits(p, x), y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.RandomState(config.seed)
    best_val, best = -1.0, params
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(y_train))
        for start in range(0, len(order), config.batch_size):  # upstream's train loader keeps the last batch
            rows = order[start:start + config.batch_size]
            params, opt_state, _ = step(params, opt_state, jnp.asarray(x_train[rows]), jnp.asarray(y_train[rows]))
        if epoch % config.val_every_epochs == 0 or epoch == config.epochs:
            val_acc = acc(params, x_val, y_val)
            if val_acc > best_val:
                best_val, best = val_acc, params
    result.update(best_val_acc=best_val, test_acc=acc(best, x_test, y_test),
                  steps=float(config.epochs * math.ceil(len(y_train) / config.batch_size)))
    return result
