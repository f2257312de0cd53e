"""Labelled-protocol probes: logistic / MLP with regularisation chosen by grouped CV on the training subjects only,
per-recording pooling, metrics checked against scikit-learn's own."""

import numpy as np
import pytest
from sklearn import metrics as skm

from imujax.eval import probes


def _subjects(seed=0, subjects=4, per_class=12, classes=3, dim=6, noise=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 2
    x, y, g = [], [], []
    for s in range(subjects):
        shift = rng.normal(size=dim) * 0.3  # a subject offset, as real subjects have
        for c in range(classes):
            x.append(centres[c] + shift + noise * rng.normal(size=(per_class, dim)))
            y += [c] * per_class
            g += [s] * per_class
    return np.concatenate(x), np.array(y), np.array(g)


def test_logistic_probe_metrics_agree_with_sklearn_and_c_comes_from_train_subjects():
    x, y, g = _subjects()
    train, test = g < 3, g == 3
    out = probes.logistic_probe(x[train], y[train], g[train], x[test], y[test])
    pred = np.array(out["predictions"])
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y[test], pred))
    assert out["macro_f1"] == pytest.approx(skm.f1_score(y[test], pred, average="macro"))
    np.testing.assert_allclose(out["per_class_f1"], skm.f1_score(y[test], pred, average=None))
    np.testing.assert_array_equal(out["confusion"], skm.confusion_matrix(y[test], pred))
    assert out["C"] in probes.LOGISTIC_CS and out["cv_folds"] == 3 and out["n_test"] == test.sum()
    assert out["macro_f1"] > 0.8  # well-separated classes
    # The test set never enters the choice of C: scrambling its features changes the score, not C.
    scrambled = probes.logistic_probe(x[train], y[train], g[train], x[test][::-1] * -3, y[test])
    assert scrambled["C"] == out["C"] and scrambled["cv_macro_f1"] == out["cv_macro_f1"]


def test_probe_with_one_training_subject_uses_the_middle_of_the_grid():
    x, y, g = _subjects(subjects=2)
    out = probes.logistic_probe(x[g == 0], y[g == 0], g[g == 0], x[g == 1], y[g == 1], num_classes=4)
    assert out["cv_folds"] == 0 and out["cv_macro_f1"] is None
    assert out["C"] == probes.LOGISTIC_CS[len(probes.LOGISTIC_CS) // 2]
    assert len(out["per_class_f1"]) == 4 and np.asarray(out["confusion"]).shape == (4, 4)


def test_mlp_probe_same_contract():
    x, y, g = _subjects(seed=1, dim=4)
    out = probes.mlp_probe(x[g < 3], y[g < 3], g[g < 3], x[g == 3], y[g == 3], hidden=16, max_iter=200)
    assert out["alpha"] in probes.MLP_ALPHAS and out["cv_folds"] == 3
    assert out["macro_f1"] > 0.6 and np.asarray(out["confusion"]).sum() == (g == 3).sum()


def test_probe_refuses_one_class_and_mismatched_dims():
    x, y, g = _subjects()
    with pytest.raises(ValueError, match="one class"):
        probes.logistic_probe(x, np.zeros_like(y), g, x, y)
    with pytest.raises(ValueError, match="dims"):
        probes.logistic_probe(x, y, g, x[:, :2], y)


def test_pool_per_recording_means_in_first_appearance_order():
    features = np.array([[1.0, 0], [3, 0], [10, 10], [5, 2]], np.float32)
    pooled = probes.pool_per_recording(features, [2, 2, 0, 2], [b"r9", b"r9", b"r1", b"r9"], groups=[7, 7, 8, 7])
    np.testing.assert_allclose(pooled.features, [[3, 2 / 3], [10, 10]], rtol=1e-6)
    assert pooled.record_ids.tolist() == [b"r9", b"r1"] and pooled.labels.tolist() == [2, 0]
    assert pooled.groups.tolist() == [7, 8]
    with pytest.raises(ValueError, match="different labels"):
        probes.pool_per_recording(features, [2, 1, 0, 2], ["a", "a", "b", "a"])


def test_kfold_and_loso_hold_out_whole_subjects_once():
    import ml_collections

    from imujax import probe
    groups = np.array([b"s1", b"s2", b"s3", b"s1", b"s4", b"s2", b"s5", b"s1", b"s3", b"s5"])
    data = {"features": np.arange(10.0)[:, None], "labels": np.arange(10) % 2, "groups": groups}
    for protocol, count in (("kfold", 3), ("loso", 5)):
        config = ml_collections.ConfigDict(dict(eval=dict(protocol=protocol, folds=3, group_field="subject")))
        parts = probe.folds(config, data, None)
        assert len(parts) == count
        held = [set(test["groups"].tolist()) for _, _, test in parts]
        assert sorted(s for h in held for s in h) == [b"s1", b"s2", b"s3", b"s4", b"s5"]  # each subject once
        for (_, train, test), subjects in zip(parts, held):
            assert not subjects & set(train["groups"].tolist()) and len(train["groups"]) + len(test["groups"]) == 10
    for protocol in ("kfold", "loso"):
        one = ml_collections.ConfigDict(dict(eval=dict(protocol=protocol, folds=3, group_field="subject")))
        with pytest.raises(ValueError, match="only one 'subject' value"):
            probe.folds(one, {**data, "groups": np.full(10, b"s1")}, None)
    with pytest.raises(ValueError, match="at least 2 of each"):  # folds=1 holds nothing out
        probe.folds(ml_collections.ConfigDict(dict(eval=dict(protocol="kfold", folds=1, group_field="subject"))),
                    data, None)
