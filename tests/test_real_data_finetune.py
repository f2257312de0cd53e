"""The real-data benchmark's fine-tune recipes (configs/imu_simclr.py FINETUNE, benchmarks/real_data.py row f)."""

import jax
import numpy as np
import pytest
from flax import nnx

from benchmarks import real_data
from configs import imu_simclr
from imujax.probe import group_kfold


def _tiny_encoder():
    config = imu_simclr.get_config("own:hapt")
    config.model.update(widths=(4, 4), dim=4, proj_dim=4)
    return real_data.encoder(config, None)


def _data(n=24, sensors=2, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, sensors, 6, 100)).astype(np.float32) * 0.1 + y[:, None, None, None]
    return dict(x=x, y=y, groups=np.arange(n) % 4, session=np.array([f"s{i}" for i in range(n)]))


def _encoder_params(model):
    return [np.asarray(v) for v in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_lpft_starts_from_the_logistic_probe_and_then_moves_the_encoder():
    data = _data()
    recipe = imu_simclr.finetune_config("lpft")
    model = _tiny_encoder()
    before = _encoder_params(model)
    feats = real_data.embed(model, data["x"])
    probe = real_data.logistic(feats, data["y"], data["groups"], feats, data["y"])
    np.testing.assert_array_equal(real_data.finetune(model, data, data["x"], 0, recipe), probe)  # LP: the probe
    real_data.finetune(model, data, data["x"][:4], 3, recipe)                                    # FT: encoder moves
    assert any(not np.array_equal(a, b) for a, b in zip(before, _encoder_params(model)))
    kernel, bias = real_data.probe_head(model, {k: v[data["y"] < 2] for k, v in data.items()}, 3)
    assert kernel.shape == (8, 3) and np.all(kernel[:, 2] == 0) and bias[2] < bias[:2].min()  # absent class


def test_learning_rate_is_chosen_on_a_validation_split_of_the_training_subjects():
    recipe = imu_simclr.finetune_config("plain")
    recipe.lrs = (1e-3, 1e-2)
    data = _data()
    pred, info = real_data.finetune_selected(_tiny_encoder, data, data["x"][:5], 2, recipe, per_recording=False)
    assert pred.shape == (5,) and info["recipe"] == "plain" and info["lr"] in (1e-3, 1e-2)
    assert info["val_subjects"] == [3] and set(info["val_macro_f1"]) == {"0.001", "0.01"}
    with pytest.raises(ValueError, match="unknown fine-tune recipe"):
        imu_simclr.finetune_config("nope")


def test_overrides_reach_the_random_init_encoder_and_refuse_unknown_keys():
    config = real_data.apply_overrides(imu_simclr.get_config("own:dsads"),
                                       ["model.widths=(8, 8)", "model.dim=8", "augment.max_stretch=1.0"])
    assert tuple(config.model.widths) == (8, 8) and config.augment.max_stretch == 1.0
    assert real_data.embed(real_data.encoder(config, None), _data(n=2)["x"]).shape == (2, 2 * 8)
    with pytest.raises(KeyError):
        real_data.apply_overrides(imu_simclr.get_config("own:dsads"), ["augment.max_strech=1.0"])


def test_scores_break_macro_f1_into_the_test_classes():
    data = dict(y=np.array([0, 0, 1, 1, 2, 2]), session=np.array(list("abcdef")))
    out = real_data.scores(np.array([0, 0, 1, 0, 2, 1]), data, per_recording=False)
    assert out["f1_per_class"] == {0: 0.8, 1: 0.5, 2: 0.667}
    assert out["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3) and out["accuracy"] == pytest.approx(4 / 6)


def test_folds_predict_every_subject_with_a_probe_that_never_saw_it():
    data = _data(n=48)
    data["groups"] = np.arange(48) % 5
    held_out = group_kfold(data["groups"], 2)
    subjects = [set(data["groups"][held].tolist()) for held in held_out]
    assert sorted(map(len, subjects)) == [2, 3]
    assert set.union(*subjects) == set(range(5)) and not set.intersection(*subjects)  # each subject in one fold
    assert len(group_kfold(data["groups"], 9)) == 5  # at most one fold a subject
    with pytest.raises(ValueError, match="1 group"):
        group_kfold(np.zeros(8), 3)
    seen = []

    def fit(train_x, train_y, train_groups, test_x, test_y):
        seen.append(set(train_groups.tolist()))
        return real_data.logistic(train_x, train_y, train_groups, test_x, test_y)

    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    pred = real_data.fitted(flat, fit, None, data, held_out)
    assert seen == [subjects[1], subjects[0]]
    for k, held in enumerate(held_out):
        mine = np.zeros(48, bool)
        mine[held] = True
        alone = real_data.logistic(flat(data["x"][~mine]), data["y"][~mine], data["groups"][~mine],
                                   flat(data["x"][mine]), data["y"][mine])
        np.testing.assert_array_equal(pred[mine], alone)


def test_finetuning_over_folds_never_trains_on_the_subjects_it_predicts(monkeypatch):
    data = _data(n=40)
    data["groups"] = np.arange(40) % 5
    held_out = group_kfold(data["groups"], 5)
    calls = []

    def fake(make_encoder, train, test_x, steps, recipe, per_recording):  # predicts the smallest unseen subject
        calls.append((set(train["groups"].tolist()), len(test_x)))
        return np.full(len(test_x), min(set(range(5)) - calls[-1][0], default=-1)), {"lr": 1.0}

    monkeypatch.setattr(real_data, "finetune_selected", fake)
    pred, info = real_data.finetune_scored(None, None, data, held_out, 3, imu_simclr.finetune_config("plain"), False)
    np.testing.assert_array_equal(pred, data["groups"])  # every window predicted by the fold that held it out
    assert [len(seen) for seen, _ in calls] == [4] * 5 and sum(n for _, n in calls) == 40
    assert info["recipe"] == "plain" and len(info["folds"]) == 5
    fixed = real_data.finetune_scored(None, data, {"x": data["x"][:3]}, None, 3, None, False)
    assert len(calls) == 6 and calls[-1] == (set(range(5)), 3) and fixed[0].tolist() == [-1] * 3  # the fixed split


def test_folds_refuse_rows_that_pretrain_on_the_set(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["real_data.py", "--folds=4", "--skip=b,e,h,i"])
    with pytest.raises(SystemExit):
        real_data.main()
    assert "rows ['d'] pretrain on the set" in capsys.readouterr().err
    monkeypatch.setattr("sys.argv", ["real_data.py", "--folds=1", "--skip=b,d,e,f"])
    with pytest.raises(SystemExit):
        real_data.main()
    assert "0 (the builders' held-out split) or at least 2 folds" in capsys.readouterr().err
