"""Row z of the real-data benchmark (issue 26): zero-shot with text on the real sets from TSFM Stage 2 trained on the
synthetic corpus. Class phrases in each set's label order, the real sets' channels through TSFM's record path, the
closed-set prediction path, and the training-time sensor subsets."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from flax import nnx

from benchmarks import real_data
from configs import imu_simclr, tsfm_stage2
from data_builders.synthetic_egomotion import config as corpus_config
from data_builders.synthetic_egomotion.corpus import channel_names
from data_builders.synthetic_egomotion.primitives import ACTIVITIES
from imujax.eval import zero_shot as zs
from imujax.systems import tsfm_stage2 as s2


@pytest.mark.parametrize("name", imu_simclr.REAL_SETS)
def test_class_phrases_follow_the_built_sets_label_order(name, tmp_path):
    parsing = importlib.import_module(f"data_builders.{name}.parsing")
    builder = importlib.import_module(f"data_builders.{name}").Builder(config=imu_simclr.SPLIT_CONFIG[name],
                                                                       data_dir=str(tmp_path))
    names = builder.info.features["label"].names  # label index -> class name, as the records carry it
    assert list(names) == list(parsing.LABELS) and set(parsing.LABEL_TEXT) == set(parsing.LABELS)
    phrases = real_data.label_text(name, names)
    assert [phrases[i] for i in range(len(names))] == [parsing.LABEL_TEXT[n] for n in names]
    assert len(set(phrases)) == len(phrases)  # two classes with one text could never be told apart
    with pytest.raises(KeyError, match="no phrase"):
        real_data.label_text(name, [*names, "juggling"])


def test_synthetic_config_aligns_the_corpus_labels_with_their_phrases():
    config = tsfm_stage2.get_config("synthetic")
    assert tuple(tsfm_stage2.PRIMITIVE_TEXT) == ACTIVITIES  # class_names[label] is the phrase of that primitive
    assert config.data.class_names[ACTIVITIES.index("stairs_up")] == "walking up the stairs"
    assert tuple(config.data.channel_names) == tuple(channel_names(corpus_config.MOTION_REALSETS.placements))
    assert config.data.name == "synthetic_egomotion/motion_realsets"


def _tiny(config):
    config.text.update(dict(embedder="hashed", hashed_width=24, cache_dir=""))
    config.model.update(dict(d_model=16, num_heads=2, num_temporal_layers=1, dim_feedforward=32, cnn_channels=(4, 8),
                             max_positions=16, dropout=0.0, text_dim=24, semantic_dim=24, d_model_fused=16,
                             num_fusion_queries=2, num_pool_queries=2, label_bank_num_queries=2,
                             label_bank_num_heads=2, channel_text_num_heads=2))
    return config


def _dsads_records(n):
    from data_builders.dsads import parsing
    rng = np.random.default_rng(0)
    return [{"imu": rng.normal(size=(100, len(parsing.CHANNELS))).astype(np.float32), "imu_rate_hz": np.float32(50),
             "channels": [c.encode() for c in parsing.CHANNELS], "label": i % len(parsing.LABELS)} for i in range(n)]


def test_real_set_channels_and_classes_go_through_tsfms_record_path():
    from data_builders.dsads import parsing
    records = _dsads_records(5)
    config = _tiny(real_data.zero_shot_config("dsads", parsing.LABELS, records[0]))
    wanted = [c for c in parsing.CHANNELS if "/mag_" not in c]  # 5 units x acc + gyro, in the record's order
    assert list(config.data.imu_channels) == wanted and len(wanted) == config.data.max_channels == 30
    system = s2.System(config)
    assert system.class_names == [parsing.LABEL_TEXT[n] for n in parsing.LABELS]
    row = system.preprocess(records[0], None)
    assert row["channel_mask"].sum() == 30  # every acc/gyro channel, no magnetometer
    model = system.make_model(nnx.Rngs(0))
    model.eval()
    pred, labels = zs.closed_set_predictions(system, model, records, batch_size=4)  # 4 + 1 padded
    assert pred.shape == (5,) and pred.max() < len(parsing.LABELS)
    np.testing.assert_array_equal(labels, [r["label"] for r in records])


class _Aligned:
    """A toy system whose embedding of a record is its class's text embedding: zero-shot must be exact."""

    def __init__(self, label_emb):
        self.label_emb = label_emb

    def preprocess(self, record, rng):
        return {"x": self.label_emb[record["label"]].astype(np.float32), "label": np.int32(record["label"])}

    def session_embedding(self, model, batch):
        return batch["x"]

    def label_embeddings(self, model):
        return self.label_emb


def test_a_perfectly_aligned_encoder_scores_accuracy_one():
    rng = np.random.default_rng(0)
    label_emb = rng.normal(size=(6, 8))
    label_emb /= np.linalg.norm(label_emb, axis=1, keepdims=True)
    records = [{"label": int(y)} for y in rng.integers(0, 6, 11)]
    pred, labels = zs.closed_set_predictions(_Aligned(label_emb), nnx.Dict(), records, batch_size=4)
    np.testing.assert_array_equal(pred, labels)
    data = dict(y=labels, session=np.arange(11))
    assert real_data.scores(pred, data, per_recording=False)["accuracy"] == 1.0
    swapped = _Aligned(label_emb)  # class texts in the wrong order: the predictions follow the texts, not the labels
    swapped.label_embeddings = lambda model: label_emb[[1, 0, 2, 3, 4, 5]]
    pred, _ = zs.closed_set_predictions(swapped, nnx.Dict(), records, batch_size=4)
    np.testing.assert_array_equal(pred, np.array([1, 0, 2, 3, 4, 5])[labels])


def test_chance_is_near_one_over_the_classes():
    y = np.repeat(np.arange(5), 40)
    out = real_data.chance_scores(dict(y=y, session=np.arange(len(y))), per_recording=False, num_classes=5)
    assert abs(out["chance_accuracy"] - 0.2) < 0.02 and abs(out["chance_macro_f1"] - 0.2) < 0.03


def test_keep_sensors_keeps_whole_sensors():
    config = tsfm_stage2.get_config("synthetic")
    names = list(tsfm_stage2.MOTION_CHANNELS)
    record = {"imu": np.arange(len(names), dtype=np.float32)[None].repeat(3, 0), "channels": names}
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(50):
        out = s2.keep_sensors(record, rng, config.data)
        locations = {c.rpartition("/")[0] for c in out["channels"]}
        counts.add(len(locations))
        assert len(out["channels"]) == 6 * len(locations)  # whole sensors: acc + gyro of each
        np.testing.assert_array_equal(out["imu"][0], [names.index(c) for c in out["channels"]])  # columns follow
    assert counts == {1, 2, 3, 4, 5}
    evaluated = s2.keep_sensors(record, None, config.data)  # evaluation: the first 5 sensors, every time
    assert evaluated["channels"] == names[:30]
    config.data.keep_sensors = ()
    assert s2.keep_sensors(record, rng, config.data) is record  # off: every channel
    config.data.keep_sensors = (1, 5)
    config.data.imu_channels = tuple(names[:6])
    with pytest.raises(ValueError, match="keep_sensors"):
        s2.keep_sensors(record, rng, config.data)
