"""The loader never feeds non-finite values to the model: a bad record stops the pipeline with its id."""

import numpy as np
import pytest

from imujax import input_pipeline


def preprocess(record, rng):
    return {"imu": record["imu"] * 2.0, "label": np.int32(record["label"])}


def test_finite_record_passes_and_keeps_its_id():
    out = input_pipeline.CheckedTransform(preprocess)({"imu": np.ones((4, 3), np.float32), "label": 1, "id": b"r7"})
    assert out["id"] == b"r7" and out["imu"].sum() == 24.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_record_is_rejected_by_name(bad):
    imu = np.ones((4, 3), np.float32)
    imu[2, 1] = bad
    with pytest.raises(input_pipeline.BadRecordError, match=r"record b'clip_42'.*'imu'.*1 non-finite"):
        input_pipeline.CheckedTransform(preprocess)({"imu": imu, "label": 0, "id": b"clip_42"})


def test_bad_record_inside_the_grain_pipeline_surfaces():
    source = [{"imu": np.full((4, 3), np.nan if i == 5 else 1.0, np.float32), "label": 0, "id": f"r{i}".encode()}
              for i in range(8)]
    it = iter(input_pipeline.train_dataset(source, preprocess, global_batch=8, seed=0, worker_count=0))
    with pytest.raises(input_pipeline.BadRecordError, match="r5"):
        next(it)


def test_dataset_not_built_names_the_build_command(tmp_path):
    from configs import evi_mae
    config = evi_mae.get_config("demo")
    config.data.data_dir = str(tmp_path)
    with pytest.raises(input_pipeline.DatasetNotBuiltError) as e:
        input_pipeline.open_source(config, str(tmp_path), "train")
    message = str(e.value)
    assert f"tfds build data_builders/synthetic_egomotion --data_dir={tmp_path} --config=default" in message
    assert "python -m imujax.build_dataset data_builders/synthetic_egomotion" in message
