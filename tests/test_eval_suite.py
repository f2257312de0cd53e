"""Evaluation suite: metrics against hand computations, probes against independent solvers and the PNG figures."""

import json
import os

import numpy as np
import pytest
import scipy.optimize
from PIL import Image

from imujax import figures, patch_layout, run_metrics
from imujax.eval import metrics, plots, probes, reconstruction

# -- metrics ----------------------------------------------------------------------------------------------------------

Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0, 2])


def test_confusion_and_f1_match_hand_computation():
    # rows true, columns predicted, counted by hand from Y_TRUE / Y_PRED
    np.testing.assert_array_equal(metrics.confusion_matrix(Y_TRUE, Y_PRED), [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    # precision (1/2, 2/3, 1), recall (1/2, 1, 2/3) -> F1 (0.5, 0.8, 0.8)
    scores = metrics.per_class_scores(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(scores["f1"], [0.5, 0.8, 0.8])
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 7)
    assert metrics.f1_score(Y_TRUE, Y_PRED, "macro") == pytest.approx(2.1 / 3)
    assert metrics.f1_score(Y_TRUE, Y_PRED, "weighted") == pytest.approx((2 * 0.5 + 2 * 0.8 + 3 * 0.8) / 7)


def test_macro_f1_counts_predicted_only_classes_and_weighted_ignores_them():
    y_true, y_pred = np.array([0, 0, 1]), np.array([0, 2, 1])
    # class 0: P 1, R 1/2 -> 2/3; class 1: 1; class 2 (never true): 0
    assert metrics.f1_score(y_true, y_pred, "macro") == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert metrics.f1_score(y_true, y_pred, "weighted") == pytest.approx((2 * 2 / 3 + 1) / 3)
    with pytest.raises(ValueError, match="y_true"):
        metrics.accuracy(np.array([[0, 1]]), np.array([0, 1]))


def _ap_by_definition(y, s):
    """Independent AP: for each distinct threshold (high to low), precision times the recall increase."""
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(s.tolist()), reverse=True):
        chosen = s >= threshold
        tp = np.sum(y[chosen])
        recall = tp / y.sum()
        total += (recall - previous_recall) * tp / chosen.sum()
        previous_recall = recall
    return total


def test_average_precision_hand_values_ties_and_random():
    # thresholds .9 (P 1, R .5), .8 (P .5), .7 (P 2/3, R 1) -> .5*1 + .5*2/3
    assert metrics.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 1 / 3)
    # a tie at .5 enters together: P .5 at R .5, then P 2/3 at R 1
    assert metrics.average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(0.25 + 1 / 3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.random(40) < 0.3
        s = rng.integers(0, 8, 40) / 8.0  # many ties
        assert metrics.average_precision(y, s) == pytest.approx(_ap_by_definition(y.astype(int), s))
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 0]]) * 0.9 + 0.05  # label-smoothed multi-hot
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.3], [0.8, 0.4]])
    ap0 = _ap_by_definition(np.array([1, 0, 1, 0]), scores[:, 0])
    ap1 = _ap_by_definition(np.array([0, 1, 0, 0]), scores[:, 1])
    assert metrics.mean_average_precision(targets, scores) == pytest.approx((ap0 + ap1) / 2)


# -- probes -----------------------------------------------------------------------------------------------------------


def _blobs(n_per_class=40, classes=3, dim=6, spread=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    x = np.concatenate([c + spread * rng.normal(size=(n_per_class, dim)) for c in centres])
    return x, np.repeat(np.arange(classes), n_per_class)


def test_ridge_probe_matches_augmented_least_squares():
    x, y = _blobs(spread=2.0)
    probe = probes.RidgeProbe(3, l2=0.1).fit(x, y)
    z = (x - x.mean(0)) / (x.std(0) + 1e-8)
    z = np.concatenate([z, np.ones((len(z), 1))], axis=1)
    # ridge == least squares on rows stacked with sqrt(l2 * N) * I
    a = np.concatenate([z, np.sqrt(0.1 * len(z)) * np.eye(z.shape[1])])
    b = np.concatenate([np.eye(3)[y], np.zeros((z.shape[1], 3))])
    w = np.linalg.lstsq(a, b, rcond=None)[0]
    np.testing.assert_allclose(probe.scores(x), z @ w, atol=1e-8)


def test_logistic_probe_reaches_the_scipy_optimum():
    x, y = _blobs(n_per_class=30, spread=3.0, dim=3, seed=1)  # overlapping classes: finite optimum
    probe = probes.LogisticProbe(3, learning_rate=0.05, weight_decay=0.0, steps=3000, batch_size=len(x)).fit(x, y)
    z = (x - x.mean(0)) / (x.std(0) + 1e-8)

    def nll(flat):
        w, b = flat[:9].reshape(3, 3), flat[9:]
        logits = z @ w + b
        logits = logits - logits.max(1, keepdims=True)
        return -np.mean(logits[np.arange(len(y)), y] - np.log(np.exp(logits).sum(1)))

    best = scipy.optimize.minimize(nll, np.zeros(12), method="L-BFGS-B", options={"maxiter": 2000}).x
    ref = z @ best[:9].reshape(3, 3) + best[9:]
    ref = np.exp(ref - ref.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(probe.predict_proba(x), ref, atol=2e-2)


def test_knn_probe_matches_brute_force_vote():
    x, y = _blobs(spread=3.0, seed=2)
    q, _ = _blobs(n_per_class=5, spread=3.0, seed=3)
    knn = probes.KNNProbe(3, k=7).fit(x, y)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for row, pred in zip(q, knn.predict(q)):
        sims = xn @ (row / np.linalg.norm(row))
        top = np.argsort(-sims)[:7]
        votes = np.bincount(y[top], minlength=3)
        winners = np.flatnonzero(votes == votes.max())
        if len(winners) == 1:
            assert pred == winners[0]
        else:  # tie broken by summed similarity
            assert pred == winners[np.argmax([sims[top][y[top] == c].sum() for c in winners])]
    with pytest.raises(ValueError, match="labels must lie"):
        probes.KNNProbe(2).fit(x, y)


# -- plots ------------------------------------------------------------------------------------------------------------


def test_patch_layout_inverses_match_model_targets():
    rng = np.random.default_rng(0)
    imu = rng.normal(size=(1, 12, 64, 32)).astype(np.float32)
    patches = patch_layout.imu_patches(imu, 16)[0]
    np.testing.assert_array_equal(patch_layout.imu_from_patches(patches, 12, 64, 32, 16), imu[0])
    video = rng.normal(size=(1, 3, 4, 32, 32)).astype(np.float32)
    patches = patch_layout.video_patches(video, 2, 16)[0]
    np.testing.assert_array_equal(patch_layout.video_from_patches(patches, 4, 32, 2, 16), video[0])
    # norm-pix inverse: normalising a target patch and pasting it back as a removed patch's prediction gives it back
    t = rng.normal(size=(5, 48)).astype(np.float32)
    norm = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)
    mask = np.array([1, 0, 1, 0, 1])
    masked, recon = reconstruction.paste_patches(norm, t, mask, norm_pix=True)
    np.testing.assert_allclose(np.asarray(recon), t, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(masked)[mask == 1], 0)
    np.testing.assert_array_equal(np.asarray(masked)[mask == 0], t[mask == 0])


def test_figures_are_written(tmp_path):
    jsonl = tmp_path / "metrics.jsonl"
    with open(jsonl, "w") as f:
        for step in range(10, 110, 10):
            f.write(json.dumps({"step": step, "loss": 1 / step, "lr": 1e-3, "steps_per_s": 3.0}) + "\n")
        f.write(json.dumps({"step": 100, "eval/linear_probe_acc": 0.5}) + "\n")
    written = [plots.plot_curves(str(jsonl), str(tmp_path / "curves.png")),
               plots.plot_confusion(np.array([[3, 1], [0, 4]]), str(tmp_path / "cm.png"), ["a", "b"])]
    rng = np.random.default_rng(1)
    clip = rng.random(size=(3, 4, 32, 32))
    written.append(plots.plot_video_reconstruction(clip, clip * 0.5, clip, str(tmp_path / "video.png")))
    for path in written:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 50
    writer = run_metrics.open_writer(str(tmp_path))
    run_metrics.write_png(writer, 100, "figures/curves", written[0])
    writer.close()
    assert os.listdir(tmp_path / "tensorboard")
    with pytest.raises(ValueError, match=r"three clips \[3, T, H, W\]"):
        plots.plot_video_reconstruction(clip, clip[:, :2], clip, str(tmp_path / "x.png"))
    # a system's pictures are drawn by their kind
    spec = rng.normal(size=(2, 3, 16, 24)).astype(np.float32)
    for picture in (reconstruction.Reconstruction(spec, spec * 0, spec, reconstruction.SPECTROGRAM),
                    reconstruction.Reconstruction(clip[None], clip[None] * 0.5, clip[None], reconstruction.VIDEO)):
        with Image.open(figures.draw(picture, str(tmp_path / f"{picture.kind}.png"))) as im:
            assert im.format == "PNG"
    with pytest.raises(ValueError, match="no drawing for picture kind 'audio'"):
        figures.draw(reconstruction.Reconstruction(spec, spec, spec, "audio"), str(tmp_path / "z.png"))
    with pytest.raises(ValueError, match="line 1"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text("not json\n")
        plots.plot_curves(str(bad), str(tmp_path / "y.png"))
