"""torch checkpoint (upstream layout) -> imujax.convert -> forward, against the PyTorch reference encoders.

Checkpoints are written with torch.save in the layouts of shared/specs/rnn_imu_encoders.md §2.7 / §3.1 and
shared/specs/evi_mae.md §4, converted through the rule tables of `imujax/bridges/torch/rnn_imu_rules.py` by the
same function the CLI runs, and the eval-mode outputs are compared with the torch modules (<= 1e-5).
"""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest
import torch

from imujax.bridges.torch import conversion, rules
from tests.torch_reference import rnn_imu as ref

TOL = 1e-5


def _imu(n: int, channels: int, t: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, channels, t)).astype(np.float32)
    x[:, :3] = x[:, :3] * 2.0 + np.array([0.0, 0.0, 9.8], np.float32)[:, None]
    return x


def _randomise_norms(*norms: torch.nn.GroupNorm) -> None:
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)


def _convert_and_run(tmp_path, name: str, ckpt: str, inputs: dict[str, np.ndarray]):
    in_path, out_path = str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")
    np.savez(in_path, **inputs)
    converted = conversion.convert_file(name, ckpt, str(tmp_path / "converted"), inputs_path=in_path,
                                     outputs_path=out_path)
    with np.load(out_path) as data:
        outputs = {k: data[k] for k in data.files}
    return converted, outputs


@pytest.fixture(scope="module")
def primus_torch():
    torch.manual_seed(0)
    model = ref.MW2StackRNNPoolingMultihead().eval()  # released sizes: 32 conv channels, 512-d embeddings
    _randomise_norms(model.backbone[0], model.backbone[4])
    return model


def test_primus_lightning_checkpoint(tmp_path, primus_torch):
    # Lightning layout: loss temperatures first, the encoder, then the frozen clip4clip towers (dropped on load).
    state = collections.OrderedDict()
    state["mmcl_loss.temperature"] = torch.tensor(0.0712)
    state["ssl_loss.temperature"] = torch.tensor(0.0834)
    state.update((f"imu_encoder.{k}", v) for k, v in primus_torch.state_dict().items())
    state["text_encoder.text_model.text_model.embeddings.token_embedding.weight"] = torch.randn(7, 4)
    state["text_encoder.video_model.visual_projection.weight"] = torch.randn(4, 6)
    ckpt = str(tmp_path / "best_model.ckpt")
    torch.save({"state_dict": state, "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.1.0",
                "optimizer_states": [], "lr_schedulers": []}, ckpt)

    x = _imu(3, 6, 250, seed=1)
    converted, got = _convert_and_run(tmp_path, "primus", ckpt, {"imu": x})
    assert converted.report.ok
    assert converted.config["mmcl_temperature"] == pytest.approx(0.0712, rel=1e-6)
    assert converted.config["ssl_temperature"] == pytest.approx(0.0834, rel=1e-6)
    assert (converted.config["input_dim"], converted.config["size_embeddings"]) == (32, 512)
    with torch.no_grad():
        expected = primus_torch(torch.from_numpy(x))
    for key in ("emb", "ssl", "mmcl"):
        assert got[key].shape == (3, 512)
        assert np.max(np.abs(got[key] - expected[key].numpy())) <= TOL, key

    # The saved directory reloads, and exports back to exactly the encoder's torch tensors.
    meta = json.load(open(os.path.join(tmp_path, "converted", conversion.CONFIG_FILE)))
    assert meta["model"] == "primus"
    exported = conversion.export_converted(str(tmp_path / "converted"), str(tmp_path / "export.pth"))
    reference = primus_torch.state_dict()
    assert set(exported) == set(reference)
    for key, value in reference.items():
        np.testing.assert_array_equal(exported[key], value.numpy(), err_msg=key)


def test_primus_other_length_and_bare_state_dict(tmp_path, primus_torch):
    ckpt = str(tmp_path / "encoder.pt")
    torch.save(primus_torch.state_dict(), ckpt)
    x = _imu(2, 6, 200, seed=2)
    converted, got = _convert_and_run(tmp_path, "primus", ckpt, {"imu": x})
    assert converted.config["mmcl_temperature"] is None
    with torch.no_grad():
        expected = primus_torch(torch.from_numpy(x))
    assert np.max(np.abs(got["mmcl"] - expected["mmcl"].numpy())) <= TOL


@pytest.mark.parametrize("layout", ["src_encoder", "lightning"])
def test_imu2clip(tmp_path, layout):
    torch.manual_seed(1)
    model = ref.MW2StackRNNPooling().eval()
    _randomise_norms(model.net[0], model.net[4])
    if layout == "src_encoder":
        ckpt = str(tmp_path / "ego4d_imu2text+video_mw2_src_encoder.pt")
        torch.save(model.state_dict(), ckpt)
    else:
        state = collections.OrderedDict([("loss.temperature", torch.tensor(0.093))])
        state.update((f"imu_encoder.{k}", v) for k, v in model.state_dict().items())
        state["text_encoder.clip_model.logit_scale"] = torch.tensor(4.6)
        state["video_encoder.clip_model.logit_scale"] = torch.tensor(4.6)
        ckpt = str(tmp_path / "epoch=14.ckpt")
        torch.save({"state_dict": state, "epoch": 14}, ckpt)
    x = _imu(2, 6, 1000, seed=3)
    converted, got = _convert_and_run(tmp_path, "imu2clip", ckpt, {"imu": x})
    if layout == "lightning":
        assert converted.config["temperature"] == pytest.approx(0.093, rel=1e-6)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert got["emb"].shape == (2, 512)
    assert np.max(np.abs(got["emb"] - expected)) <= TOL


def test_deepconvlstm_imu_encoder_best(tmp_path):
    torch.manual_seed(2)
    cfg = dict(channels=42, conv_kernels=8, conv_kernel_size=11, lstm_units=64, feature_dim=32, num_classes=11)
    model = ref.DeepConvLSTM(**cfg).eval()
    ckpt = str(tmp_path / "imu_encoder_best.pt")
    torch.save(model.state_dict(), ckpt)
    x = np.random.default_rng(4).normal(size=(3, 120, 42)).astype(np.float32) * 3.0
    converted, got = _convert_and_run(tmp_path, "deepconvlstm", ckpt, {"imu": x})
    for key, value in cfg.items():
        assert converted.config[key] == value, key
    assert converted.config["window_size"] == 120
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert got["features"].shape == (3, 32)
    assert np.max(np.abs(got["features"] - expected)) <= TOL


def test_missing_encoder_key_is_reported_by_name(tmp_path, primus_torch):
    state = {k: v for k, v in primus_torch.state_dict().items() if k != "backbone.5.bias_hh_l0"}
    ckpt = str(tmp_path / "broken.pt")
    torch.save(state, ckpt)
    with pytest.raises(rules.BridgeMismatchError, match=r"backbone/5/bias_hh_l0"):
        conversion.convert_file("primus", ckpt, str(tmp_path / "out"))


def test_converted_primus_grafts_into_the_training_system(tmp_path):
    from flax import nnx

    from configs import primus as primus_config
    from imujax import systems

    torch.manual_seed(5)
    encoder = ref.MW2StackRNNPoolingMultihead(32, 24).eval()
    state = collections.OrderedDict([("mmcl_loss.temperature", torch.tensor(0.05)),
                                     ("ssl_loss.temperature", torch.tensor(0.2))])
    state.update((f"imu_encoder.{k}", v) for k, v in encoder.state_dict().items())
    ckpt = str(tmp_path / "best_model.ckpt")
    torch.save({"state_dict": state}, ckpt)
    conversion.convert_file("primus", ckpt, str(tmp_path / "converted"))
    name, cfg, converted = conversion.load_converted(str(tmp_path / "converted"))

    config = primus_config.get_config("demo")
    config.model.imu_encoder.size_embeddings = 24
    config.model.video.update(dict(dim=16, depth=1, heads=2, img_size=32, num_frames=2))
    system = systems.make_system(config)
    _, params, _ = nnx.split(system.make_model(nnx.Rngs(0)), nnx.Param, ...)
    params = system.init_from_converted(params, name, cfg, converted)
    assert float(params["mmcl_temperature"][...]) == pytest.approx(0.05)
    assert float(params["ssl_temperature"][...]) == pytest.approx(0.2)
    got = params["imu_encoder"]["backbone"][5]["weight_hh_l0"][...]
    np.testing.assert_array_equal(np.asarray(got), encoder.backbone[5].weight_hh_l0.detach().numpy().T)
    np.testing.assert_array_equal(np.asarray(params["imu_encoder"]["mmcl_head"]["bias"][...]),
                                  encoder.mmcl_head.bias.detach().numpy())

    config.model.imu_encoder.size_embeddings = 16  # a mismatching system is refused with a clear error
    _, small, _ = nnx.split(systems.make_system(config).make_model(nnx.Rngs(0)), nnx.Param, ...)
    with pytest.raises(ValueError, match="does not match config.model.imu_encoder"):
        systems.make_system(config).init_from_converted(small, name, cfg, converted)
