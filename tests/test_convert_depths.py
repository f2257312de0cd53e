"""Every convert family loads checkpoints with 0 and 1 blocks per tower (tiny widths) and matches its torch reference.

Depth 0 is legal upstream wherever the blocks sit in a plain ``ModuleList`` loop (the tokens pass through): the
EVI-MAE towers, the Audio-MAE / HIMU-MAE encoder and decoder, TSFM's dual-branch encoder. Where the original module
refuses 0 the smallest legal depths are used instead: ``nn.LSTM`` (DeepConvLSTM: 1 and 2 layers) and TSFM's semantic
``nn.TransformerEncoder`` (its forward indexes layer 0; kept at 1). The MW2 encoders (PRIMUS, IMU2CLIP) have a fixed
architecture with no depth argument. The evi_mae pretraining family is covered in test_evi_mae_convert_pretrain.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from imujax.bridges.torch import conversion, registry, tsfm_rules
from tests import test_audio_mae_parity as audio_tests
from tests import test_tsfm_parity as tsfm_tests
from tests.torch_reference import audio_mae as audio_ref
from tests.torch_reference import evi_mae as evi_ref
from tests.torch_reference import rnn_imu as rnn_ref

TOL = 1e-5
EVI_SMALL = dict(imu_dim=32, imu_heads=2, imu_time=32, imu_freq=32, video_dim=16, video_heads=2, num_frames=2,
                 img_size=32, decoder_dim=16, decoder_heads=2)


def _close(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.abs(want).max() > 1e-2, f"{what}: degenerate reference"
    diff = float(np.abs(got - want).max())
    assert diff <= TOL, f"{what}: max abs diff {diff:.2e}"


def _numpy_state(module, prefix=""):
    return {prefix + k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _evi_ft(depth):
    sizes = evi_ref.RefSizes(**EVI_SMALL, imu_depth=depth, video_depth=depth)
    rng = np.random.default_rng(depth)
    imu = rng.standard_normal((2, 12, 32, 32)).astype(np.float32)
    video = rng.standard_normal((2, 3, 2, 32, 32)).astype(np.float32)
    overrides = {k: str(EVI_SMALL[k]) for k in ("imu_heads", "video_heads", "imu_time", "imu_freq", "num_frames",
                                                 "img_size")}
    return sizes, imu, video, overrides


def case_evi_mae_ft(depth):
    sizes, imu, video, overrides = _evi_ft(depth)
    module = evi_ref.randomize_(evi_ref.EVIMAEFT(sizes, 5), seed=depth).eval()
    with torch.no_grad():
        want = {"logits": module(torch.from_numpy(imu), torch.from_numpy(video)).numpy()}
    return "evi_mae_ft", _numpy_state(module, "module."), overrides, {"imu": imu, "video": video}, want


def case_revalexo_evi_mae_fusion(depth):
    sizes, imu, video, overrides = _evi_ft(depth)
    module = evi_ref.randomize_(evi_ref.EVIMAEFusion(sizes, 3, feature_dim=24), seed=depth).eval()
    with torch.no_grad():
        logits, features = module(torch.from_numpy(imu), torch.from_numpy(video))
    want = {"logits_per_horizon": torch.stack(logits).numpy(), "encoder_features": features.numpy()}
    return "revalexo_evi_mae_fusion", _numpy_state(module), overrides, {"imu": imu, "video": video}, want


def _mae_case(name, sizes, depth):
    sizes = dataclasses.replace(sizes, depth=depth, decoder_depth=depth)
    module = audio_tests._torch_mae(sizes, seed=depth)
    rng = np.random.default_rng(depth)
    x = rng.normal(size=(2, sizes.in_chans, sizes.img_h, sizes.img_w)).astype(np.float32)
    noise = rng.random((2, sizes.grid[0] * sizes.grid[1])).astype(np.float32)
    video = rng.normal(size=(2, sizes.video_dim)).astype(np.float32) if sizes.video_dim else None
    want = audio_tests._torch_outputs(module, x, noise, 0.75, video)
    inputs = {"spec" if name == "himu_mae" else "fbank": x, "mask_noise": noise, "mask_ratio": np.float32(0.75)}
    if video is not None:
        inputs["video"] = video
    overrides = dict(audio_tests.SETS, img_h=str(sizes.img_h), img_w=str(sizes.img_w))
    return name, audio_ref.state_dict_numpy(module), overrides, inputs, want


def case_audio_mae(depth):
    return _mae_case("audio_mae", audio_tests.AUDIO, depth)


def case_himu_mae(depth):
    return _mae_case("himu_mae", audio_tests.HIMU, depth)


def case_audio_mae_vit(depth):
    sizes = dataclasses.replace(audio_tests.AUDIO, depth=depth)
    module = audio_ref.randomize(audio_ref.RefViT(sizes, num_classes=5), depth).eval()
    x = np.random.default_rng(depth).normal(size=(2, 1, sizes.img_h, sizes.img_w)).astype(np.float32)
    with torch.no_grad():
        want = {"logits": module(torch.from_numpy(x)).numpy()}
    state = {f"module.{k}": v for k, v in audio_ref.state_dict_numpy(module).items()}
    return "audio_mae_vit", state, dict(audio_tests.SETS, img_h=str(sizes.img_h), img_w=str(sizes.img_w)), \
        {"fbank": x}, want


def case_tsfm(depth):
    cfg = dict(tsfm_tests.VARIANTS["cnn_pooled_k1"], num_temporal_layers=depth, num_semantic_temporal_layers=1)
    model, bank, ckpt = tsfm_tests._checkpoint(cfg)
    x = tsfm_tests._inputs(cfg)
    _, _, emb, scores = tsfm_tests._torch_forward(model, bank, x)
    overrides = tsfm_tests._overrides(cfg)
    if depth == 0:  # the unused feed-forward width is not in a depth-0 checkpoint
        overrides["dim_feedforward"] = str(cfg["dim_feedforward"])
    return "tsfm", tsfm_rules.merge_checkpoint(ckpt), overrides, x, {"emb_session": emb, "zs_scores": scores}


def case_deepconvlstm(depth):
    layers = depth + 1  # nn.LSTM refuses num_layers=0
    torch.manual_seed(layers)
    module = rnn_ref.DeepConvLSTM(channels=6, conv_kernels=4, conv_kernel_size=3, lstm_units=16, feature_dim=8,
                                  num_classes=3, lstm_layers=layers).eval()
    x = np.random.default_rng(layers).normal(size=(2, 20, 6)).astype(np.float32) * 3.0
    with torch.no_grad():
        want = {"features": module(torch.from_numpy(x)).numpy()}
    return "deepconvlstm", _numpy_state(module), {"window_size": "20"}, {"imu": x}, want


CASES = {f.__name__[len("case_"):]: f for f in (case_evi_mae_ft, case_revalexo_evi_mae_fusion, case_audio_mae,
                                                case_himu_mae, case_audio_mae_vit, case_tsfm, case_deepconvlstm)}
DEPTH_FIELDS = {"evi_mae_ft": ("imu_depth", "video_depth"), "revalexo_evi_mae_fusion": ("imu_depth", "video_depth"),
                "audio_mae": ("depth", "decoder_depth"), "himu_mae": ("depth", "decoder_depth"),
                "audio_mae_vit": ("depth",), "tsfm": ("num_temporal_layers",), "deepconvlstm": ("lstm_layers",)}


def test_every_family_with_a_depth_is_covered():
    families_with_depth = set(registry.families()) - {"evi_mae", "primus", "imu2clip"}
    assert families_with_depth == set(CASES)


@pytest.mark.parametrize("depth", [0, 1])
@pytest.mark.parametrize("family", sorted(CASES))
def test_depth(family, depth):
    name, state_dict, overrides, inputs, want = CASES[family](depth)
    converted = conversion.convert_state_dict(name, state_dict, overrides)
    assert converted.report.ok, converted.report.format()
    expected_depth = depth + 1 if family == "deepconvlstm" else depth
    for field in DEPTH_FIELDS[family]:
        assert converted.config[field] == expected_depth, field
    got = conversion.run_forward(name, converted.model, inputs)
    for key, value in want.items():
        _close(got[key], value, key)
