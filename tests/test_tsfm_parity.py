"""TSFM Stage 2: JAX vs an independent PyTorch reference through the bridge rule table (<= 1e-5 fp32, random weights).

Two tiny variants cover the branches: (a) cnn extractor, text_proj, fusion self-attention, temporal encoder + pooling,
K=1 label bank; (b) spectral-temporal extractor, no text_proj, per-patch prediction, K=3 prototypes. Raw inputs go
through the upstream raw path (per-sample rate and patch seconds, valid-prefix trimming, padded channels).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imujax.bridges.torch import conversion, rules, tsfm_rules
from imujax.transforms import tsfm_patches
from tests.torch_reference import tsfm as ref

TOL = 1e-5

VARIANTS = {
    "cnn_pooled_k1": dict(d_model=32, num_heads=4, num_temporal_layers=2, dim_feedforward=64, feature_extractor="cnn",
                          max_positions=100, text_dim=20, channel_text_num_heads=4, d_model_fused=16, semantic_dim=24,
                          num_semantic_temporal_layers=2, num_fusion_queries=3, num_pool_queries=2,
                          fusion_self_attention=True, pool_self_attention=False, per_patch_prediction=False,
                          label_bank_num_heads=4, label_bank_num_queries=3, num_prototypes=1),
    "spectral_perpatch_k3": dict(d_model=32, num_heads=4, num_temporal_layers=1, dim_feedforward=48,
                                 feature_extractor="spectral_temporal", max_positions=100, text_dim=32,
                                 channel_text_num_heads=2, d_model_fused=24, semantic_dim=16,
                                 num_semantic_temporal_layers=1, num_fusion_queries=2, num_pool_queries=2,
                                 fusion_self_attention=False, pool_self_attention=True, per_patch_prediction=True,
                                 label_bank_num_heads=2, label_bank_num_queries=2, num_prototypes=3),
}


def _perturb(module: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))


def _checkpoint(cfg):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = ref.SemanticAlignmentModel(cfg).eval()
    bank = ref.LabelBank(cfg["semantic_dim"], cfg["label_bank_num_queries"], cfg["label_bank_num_heads"],
                         cfg["num_prototypes"]).eval()
    _perturb(model, gen)
    _perturb(bank, gen)
    np_sd = lambda m: {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
    ckpt = {"epoch": 3, "model_state_dict": np_sd(model), "label_bank_state_dict": np_sd(bank),
            "criterion_state_dict": {"loss_fn.logit_scale": np.asarray(2.6593, np.float32)}}
    return model, bank, ckpt


def _inputs(cfg, seed=0):
    rng = np.random.default_rng(seed)
    b, t, c, s, n_labels = 3, 260, 6, 7, 5
    imu = rng.normal(size=(b, t, c)).astype(np.float32) * 3 + 1
    lengths = np.array([260, 200, 150])
    attention = np.arange(t)[None] < lengths[:, None]
    imu[~attention] = 0.0
    channel_mask = np.ones((b, c), bool)
    channel_mask[1, 4:] = False  # sample 1 has 4 real channels; its padded ones are all-zero
    imu[1, :, 4:] = 0.0
    tok_mask = np.arange(s)[None, None] < rng.integers(1, s + 1, size=(b, c))[..., None]
    tok_mask[1, 5] = False  # an all-padding description row ("[PAD]" with no valid token)
    lab_mask = np.arange(s)[None] < rng.integers(2, s + 1, size=n_labels)[:, None]
    return dict(imu=imu, attention_mask=attention, channel_mask=channel_mask,
                sampling_rate=np.array([50.0, 20.0, 30.0]), patch_seconds=np.array([1.0, 2.0, 1.5]),
                channel_text_tokens=rng.normal(size=(b, c, s, cfg["text_dim"])).astype(np.float32),
                channel_text_mask=tok_mask,
                label_text_tokens=rng.normal(size=(n_labels, s, cfg["semantic_dim"])).astype(np.float32),
                label_text_mask=lab_mask)


def _torch_forward(model, bank, x):
    t = lambda k, dt=torch.float32: torch.as_tensor(x[k], dtype=dt)
    patches, patch_mask = ref.preprocess_raw(t("imu"), x["attention_mask"], x["sampling_rate"], x["patch_seconds"])
    with torch.no_grad():
        emb = model(patches, patch_mask, t("channel_mask", torch.bool), t("channel_text_tokens"),
                    t("channel_text_mask", torch.bool))
        labels = bank.pooling(t("label_text_tokens"), t("label_text_mask", torch.bool))
        scores = torch.einsum("bd,lkd->blk", emb, labels).amax(-1)
    return patches.numpy(), patch_mask.numpy(), emb.numpy(), scores.numpy()


def _overrides(cfg):
    return {k: str(cfg[k]) for k in tsfm_rules.NOT_IN_TENSORS}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def case(request):
    cfg = VARIANTS[request.param]
    model, bank, ckpt = _checkpoint(cfg)
    sd = tsfm_rules.merge_checkpoint(ckpt)
    converted = conversion.convert_state_dict("tsfm", sd, _overrides(cfg))
    x = _inputs(cfg)
    return dict(cfg=cfg, ckpt=ckpt, sd=sd, converted=converted, x=x, torch=_torch_forward(model, bank, x),
                jax=conversion.run_forward("tsfm", converted.model, x))


def test_load_is_complete_and_sizes_inferred(case):
    assert case["converted"].report.ok, case["converted"].report.format()
    cfg = case["converted"].config
    for key, value in case["cfg"].items():
        assert cfg[key] == value, key


def test_preprocessing_matches_torch(case):
    x = case["x"]
    patches, mask = tsfm_patches.preprocess_raw_batch(x["imu"], x["attention_mask"], x["sampling_rate"],
                                                      x["patch_seconds"])
    np.testing.assert_array_equal(mask, case["torch"][1])
    np.testing.assert_allclose(patches, case["torch"][0], atol=TOL, rtol=0)
    assert not patches[1, :, :, 4:].any()  # zero channels stay exactly zero


def test_session_embedding_and_scores_match(case):
    out = case["jax"]
    np.testing.assert_allclose(out["emb_session"], case["torch"][2], atol=TOL, rtol=0)
    np.testing.assert_allclose(out["zs_scores"], case["torch"][3], atol=TOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(out["emb_session"], axis=-1), 1.0, atol=1e-5)


def test_export_round_trip_is_bit_exact(case):
    conv = case["converted"]
    import flax.nnx as nnx
    exported = conversion.export_state_dict("tsfm", conv.config, nnx.state(conv.model))
    assert set(exported) == set(case["sd"])
    for k, v in case["sd"].items():
        np.testing.assert_array_equal(np.asarray(exported[k]), v, err_msg=k)


def test_legacy_fused_gate_is_split():
    cfg = VARIANTS["cnn_pooled_k1"]
    _, _, ckpt = _checkpoint(cfg)
    msd = dict(ckpt["model_state_dict"])
    ws, wc, bc = (msd.pop(f"channel_fusion.{k}") for k in ("gate_sensor.weight", "gate_channel.weight",
                                                            "gate_channel.bias"))
    msd["channel_fusion.gate.0.weight"] = np.concatenate([ws, wc], axis=1)
    msd["channel_fusion.gate.0.bias"] = bc
    sd = tsfm_rules.merge_checkpoint(dict(ckpt, model_state_dict=msd))
    np.testing.assert_array_equal(sd["channel_fusion.gate_sensor.weight"], ws)
    np.testing.assert_array_equal(sd["channel_fusion.gate_channel.weight"], wc)
    np.testing.assert_array_equal(sd["channel_fusion.gate_channel.bias"], bc)


def test_hyperparameters_json_supplies_unstored_fields(tmp_path):
    hp = {"config": {"encoder": {"num_heads": 4}, "per_patch_prediction": True, "channel_text_num_heads": 2,
                     "label_bank_num_heads": 2}, "ablation": {"channel_text_fusion": True}}
    (tmp_path / "hyperparameters.json").write_text(json.dumps(hp))
    got = tsfm_rules.overrides_from_source(str(tmp_path / "best.pt"))
    assert got == {"num_heads": "4", "per_patch_prediction": "True", "channel_text_num_heads": "2",
                   "label_bank_num_heads": "2"}
    with pytest.raises(ValueError, match="'config' is missing"):
        tsfm_rules.overrides_from_hyperparameters({"ablation": {}}, "hp.json")


def test_missing_per_patch_flag_is_a_clear_error(case):
    over = _overrides(case["cfg"])
    del over["per_patch_prediction"]
    with pytest.raises(ValueError, match="per_patch_prediction"):
        tsfm_rules.infer_tsfm(rules.strip_prefixes(case["sd"], ("module.",)), over)


def test_convert_cli_path_reads_best_pt_and_hyperparameters(tmp_path):
    """best.pt written by torch.save + hyperparameters.json next to it -> convert_file -> outputs match torch."""
    cfg = VARIANTS["cnn_pooled_k1"]
    model, bank, ckpt = _checkpoint(cfg)
    as_torch = lambda sd: {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}
    torch.save({"epoch": 3, "model_state_dict": as_torch(ckpt["model_state_dict"]),
                "label_bank_state_dict": as_torch(ckpt["label_bank_state_dict"]),
                "criterion_state_dict": {"loss_fn.logit_scale": torch.tensor(2.6593)},
                "hyperparameters": {"lr": 8e-5}}, tmp_path / "best.pt")
    hp = {"config": {k: cfg[k] for k in tsfm_rules.NOT_IN_TENSORS}, "ablation": {"channel_text_fusion": True}}
    (tmp_path / "hyperparameters.json").write_text(json.dumps(hp))
    x = _inputs(cfg, seed=1)
    np.savez(tmp_path / "in.npz", **x)
    conversion.convert_file("tsfm", str(tmp_path / "best.pt"), str(tmp_path / "out"),
                         inputs_path=str(tmp_path / "in.npz"), outputs_path=str(tmp_path / "out.npz"))
    got = np.load(tmp_path / "out.npz")
    _, _, emb, scores = _torch_forward(model, bank, x)
    np.testing.assert_allclose(got["emb_session"], emb, atol=TOL, rtol=0)
    np.testing.assert_allclose(got["zs_scores"], scores, atol=TOL, rtol=0)
