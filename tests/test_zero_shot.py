"""Zero-shot and supervision protocols on synthetic embeddings with known answers."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from imujax.eval import zero_shot as zs


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clusters(n_per, label_emb, noise, rng):
    y = np.repeat(np.arange(len(label_emb)), n_per)
    return _unit(label_emb[y] + noise * rng.normal(size=(len(y), label_emb.shape[-1]))), y


def test_closed_set_recovers_clusters_and_uses_fixed_class_f1():
    rng = np.random.default_rng(0)
    labels = _unit(rng.normal(size=(4, 16)))
    emb, y = _clusters(20, labels, 0.05, rng)
    out = zs.closed_set(emb, labels, y)
    assert out["acc"] == 1.0 and out["macro_f1"] == 1.0
    # class 3 absent from the test data and never predicted still counts as F1 = 0 in the macro average
    keep = y < 3
    out = zs.closed_set(emb[keep], labels, y[keep])
    assert out["acc"] == 1.0 and np.isclose(out["macro_f1"], 0.75)


def test_multi_prototype_scores_take_the_max():
    rng = np.random.default_rng(1)
    protos = _unit(rng.normal(size=(3, 2, 8)))
    emb = protos[[0, 1, 2], [1, 0, 1]]  # each sample equals one of its class's prototypes
    scores = zs.label_scores(emb, protos)
    np.testing.assert_allclose(scores[np.arange(3), [0, 1, 2]], 1.0, atol=1e-6)
    assert (scores.argmax(1) == [0, 1, 2]).all()


def test_open_set_matches_synonym_groups():
    rng = np.random.default_rng(2)
    names = ["walking", "walk", "running", "sitting"]
    cand = _unit(rng.normal(size=(4, 12)))
    emb = cand[[1, 0, 2, 3]]  # "walking" samples predicted as "walk" and vice versa: same group
    out = zs.open_set(emb, cand, names, ["walking", "walk", "running", "sitting"], {"walk": "walking"})
    assert out["acc"] == 1.0 and out["macro_f1"] == 1.0
    exact = zs.open_set(emb, cand, names, ["walking", "walk", "running", "sitting"], {})
    assert exact["acc"] == 0.5


def test_majority_vote_ignores_padding():
    scores = np.zeros((1, 4, 3))
    scores[0, 0, 2] = scores[0, 1, 1] = scores[0, 2, 1] = 1
    scores[0, 3, 2] = 5  # a padded patch would tip the vote to class 2
    assert zs.majority_vote(scores, np.array([[1, 1, 1, 0]], bool))[0] == 1


def test_balanced_subsample_counts():
    labels = np.repeat(np.arange(5), 40)
    train, val, test = zs.split_indices(len(labels))
    assert len(train) == 160 and len(val) == 20 and len(test) == 20
    assert len(set(train) | set(val) | set(test)) == 200
    sub = zs.balanced_subsample(train, labels, 0.10, 5)
    assert np.all(np.bincount(labels[sub], minlength=5) == 3)  # int(160 * 0.1) // 5
    sub1 = zs.balanced_subsample(train, labels, 0.01, 5)
    assert np.all(np.bincount(labels[sub1], minlength=5) == 1)  # max(1, 1 // 5)


def test_supervised_protocol_improves_a_bad_encoder():
    rng = np.random.default_rng(3)
    d_in, d, n_classes = 10, 8, 4
    label_emb = _unit(rng.normal(size=(n_classes, d)))
    y = np.repeat(np.arange(n_classes), 100)
    means = rng.normal(size=(n_classes, d_in)) * 2
    x = (means[y] + rng.normal(size=(len(y), d_in))).astype(np.float32)

    def embed(w, batch):
        e = batch["x"] @ w
        return e / jnp.linalg.norm(e, axis=-1, keepdims=True)

    w0 = jnp.asarray(rng.normal(size=(d_in, d)).astype(np.float32))
    _, _, test = zs.split_indices(len(y))
    before = zs.closed_set(np.asarray(embed(w0, {"x": jnp.asarray(x[test])})), label_emb, y[test])["acc"]
    out = zs.supervised_protocol(w0, embed, label_emb, {"x": x}, y, rate=0.10, learning_rate=3e-2,
                                 max_epochs=20, batch_size=8)
    assert out["train_examples"] == 32 and out["acc"] > before + 0.2 and out["acc"] > 0.8
