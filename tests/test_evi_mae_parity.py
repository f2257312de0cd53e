"""EVI-MAE family: full-size key/shape sets against the spec, and JAX-vs-PyTorch parity through the bridge rule tables.

Full size: the PyTorch references are built on the ``meta`` device (nothing allocated) and compared with the key
lists written out from shared/specs/evi_mae.md §1.4-1.6; the NNX models are sized with ``nnx.eval_shape``.
Parity: reduced widths/depths, random weights and random BatchNorm running statistics; every torch state_dict goes
through ``imujax.bridges.torch.conversion.convert_state_dict`` (the rule tables), never a hand copy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from imujax.bridges.torch import conversion, evi_mae_rules, registry, rules
from imujax.models.evi_mae import EVIMAESizes
from imujax.models import evi_mae_fusion
from imujax import patch_layout
from tests.torch_reference import evi_mae as ref

TOL = 1e-5


# -- the spec's key lists (§1.4-1.6), written out independently of the reference modules ---------------------------
def _ln(p, d):
    return {f"{p}.weight": (d,), f"{p}.bias": (d,)}


def _lin(p, din, dout, bias=True):
    return {f"{p}.weight": (dout, din), **({f"{p}.bias": (dout,)} if bias else {})}


def _bn(p, d):
    return {f"{p}.weight": (d,), f"{p}.bias": (d,), f"{p}.running_mean": (d,), f"{p}.running_var": (d,),
            f"{p}.num_batches_tracked": ()}


def _block(p, d):
    out = {}
    for n in ("norm1", "norm1_a", "norm1_v", "norm2", "norm2_a", "norm2_v"):
        out |= _ln(f"{p}.{n}", d)
    return (out | _lin(f"{p}.attn.qkv", d, 3 * d) | _lin(f"{p}.attn.proj", d, d) | _lin(f"{p}.mlp.fc1", d, 4 * d)
            | _lin(f"{p}.mlp.fc2", 4 * d, d))


def _video_block(p, d):
    return (_ln(f"{p}.norm1", d) | {f"{p}.attn.q_bias": (d,), f"{p}.attn.v_bias": (d,)}
            | _lin(f"{p}.attn.qkv", d, 3 * d, bias=False) | _lin(f"{p}.attn.proj", d, d) | _ln(f"{p}.norm2", d)
            | _lin(f"{p}.mlp.fc1", d, 4 * d) | _lin(f"{p}.mlp.fc2", 4 * d, d))


def spec_encoder_keys(p=""):
    out = {f"{p}modality_a": (1, 1, 768), f"{p}modality_video": (1, 1, 384),
           f"{p}patch_embed_a.proj.weight": (768, 3, 16, 16), f"{p}patch_embed_a.proj.bias": (768,),
           f"{p}patch_embed_video.proj.weight": (384, 3, 2, 16, 16), f"{p}patch_embed_video.proj.bias": (384,)}
    for i in range(11):
        out |= _block(f"{p}blocks_a.{i}", 768)
    for i in range(12):
        out |= _video_block(f"{p}blocks_video.{i}", 384)
    out |= _block(f"{p}blocks_u.0", 384) | _ln(f"{p}norm_a", 384) | _ln(f"{p}norm_video", 384) | _ln(f"{p}norm", 384)
    for i, din in enumerate((768, 512)):
        g = f"{p}graph_encoder.layers.{i}"
        out |= {f"{g}.eps": (1,), f"{g}.apply_func.mlp.activations.0.weight": (1,), f"{g}.apply_func.act.weight": (1,)}
        out |= _lin(f"{g}.apply_func.mlp.linears.0", din, 512) | _lin(f"{g}.apply_func.mlp.linears.1", 512, 512)
        out |= _bn(f"{g}.apply_func.mlp.norms.0", 512) | _bn(f"{g}.apply_func.norm", 512)
    return out


def spec_evi_mae_keys():
    out = spec_encoder_keys() | {"mask_token": (1, 1, 192), "decoder_modality_a": (1, 1, 192),
                                 "decoder_modality_video": (1, 1, 192), "graph_enc_mask_token": (1, 768)}
    out |= _lin("decoder_embed", 384, 192) | _ln("decoder_norm", 192)
    for i in range(8):
        out |= _block(f"decoder_blocks.{i}", 192)
    out |= _lin("decoder_pred_a", 192, 3072) | _lin("decoder_pred_video", 192, 1536)
    g = "graph_decoder.layers.0"
    out |= {f"{g}.eps": (1,), f"{g}.apply_func.activations.0.weight": (1,)}
    out |= _lin(f"{g}.apply_func.linears.0", 512, 512) | _lin(f"{g}.apply_func.linears.1", 512, 768)
    out |= _bn(f"{g}.apply_func.norms.0", 512) | _lin("graph_encoder_to_decoder", 512, 512, bias=False)
    return out


def spec_ft_keys(n_class=32):
    return spec_encoder_keys() | _ln("mlp_head.0", 896) | _lin("mlp_head.1", 896, n_class)


def spec_fusion_keys(c=7):
    out = spec_encoder_keys("encoder.") | _ln("encoder.mlp_head.0", 896) | _lin("encoder.mlp_head.1", 896, 768)
    out |= _lin("classifier.shared_net.0", 768, 768)
    for k in range(6):
        out |= _lin(f"classifier.heads.{k}", 768, c)
    return out


def _torch_shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _torch_params(module):
    return sum(p.numel() for p in module.parameters())


FULL = {  # name: (spec keys, torch factory, entries, params)
    "evi_mae": (spec_evi_mae_keys, lambda: ref.EVIMAE(ref.RefSizes()), 626, 108_926_725),
    "evi_mae_ft": (spec_ft_keys, lambda: ref.EVIMAEFT(ref.RefSizes(), 32), 446, 103_501_220),
    "revalexo_evi_mae_fusion": (spec_fusion_keys, lambda: ref.EVIMAEFusion(ref.RefSizes(), 7), 460, 104_784_302),
}


@pytest.mark.parametrize("name", list(FULL))
def test_full_size_torch_layout_matches_spec(name):
    spec_keys, torch_fn, entries, params = FULL[name]
    expected = spec_keys()
    assert len(expected) == entries
    with torch.device("meta"):
        module = torch_fn()
    assert _torch_shapes(module) == expected
    assert _torch_params(module) == params


@pytest.mark.parametrize("name", list(FULL))
def test_full_size_rule_table_and_nnx_model(name):
    """Spec-shaped checkpoints infer the released sizes, every key maps onto the abstract NNX model (strict), and the
    NNX model has the spec's parameter count (params only; BatchNorm statistics are nnx.BatchStat)."""
    spec_keys, _, _, n_params = FULL[name]
    prefix = "" if name == "revalexo_evi_mae_fusion" else "module."
    dtypes = {k: np.int64 if k.endswith("num_batches_tracked") else np.float32 for k in spec_keys()}
    sd = {prefix + k: np.broadcast_to(np.zeros((), dtypes[k]), s) for k, s in spec_keys().items()}
    family = registry.get_family(name)
    config = family.infer_config(rules.strip_prefixes(sd, family.strip_prefixes), {})
    assert evi_mae_rules.sizes_of(config) == EVIMAESizes()
    abstract = conversion.abstract_model(family, config)
    assert sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == n_params
    target = conversion.bridge_arrays(abstract)
    params, report = rules.load_into(target, sd, family.rule_table(config))
    assert report.ok and set(params) == set(target)
    assert len(report.ignored) == (3 if name == "evi_mae" else 2)  # the GIN eps buffers
    if name == "evi_mae_ft":
        assert config["num_classes"] == 32
    if name == "revalexo_evi_mae_fusion":
        assert (config["num_classes"], config["num_horizons"], config["feature_dim"]) == (7, 6, 768)


# -- reduced-size parity ------------------------------------------------------------------------------------------
SMALL = dict(imu_dim=64, imu_depth=2, imu_heads=4, imu_time=64, imu_freq=32, video_dim=32, video_depth=2,
             video_heads=2, num_frames=4, img_size=32, decoder_dim=16, decoder_heads=2, decoder_depth=2)
UNSTORED = ("imu_heads", "video_heads", "decoder_heads", "imu_time", "imu_freq", "num_frames", "img_size")
B = 3
RATIO = 0.75  # with 8 IMU and 8 video tokens: 2 kept of each


def _state_dict(module, prefix=""):
    return {prefix + k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _bridge(name, module, prefix, **overrides):
    ov = {k: str(SMALL[k]) for k in UNSTORED} | {k: str(v) for k, v in overrides.items()}
    converted = conversion.convert_state_dict(name, _state_dict(module, prefix), ov)
    assert converted.report.ok
    return converted


def _make_inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    B = batch
    return {"imu": rng.standard_normal((B, 12, 64, 32)).astype(np.float32),
            "video": rng.standard_normal((B, 3, 4, 32, 32)).astype(np.float32),
            "node_perm": rng.permutation(4 * B),
            "imu_noise": rng.random((B, 8)).astype(np.float32),
            "video_noise": rng.random((B, 8)).astype(np.float32)}


@pytest.fixture(scope="module")
def inputs():
    return _make_inputs(B)


def _close(jax_value, torch_value, what):
    a, b = np.asarray(jax_value), torch_value.detach().numpy() if isinstance(torch_value, torch.Tensor) else torch_value
    assert a.shape == b.shape, (what, a.shape, b.shape)
    diff = float(np.abs(a - b).max())
    assert diff <= TOL, f"{what}: max abs diff {diff:.2e} (scale {float(np.abs(b).max()):.2e})"


def _torch_inputs(inputs, *names):
    return [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in names]


def test_ft_logits(inputs):
    module = ref.randomize_(ref.EVIMAEFT(ref.RefSizes(**SMALL), 5), seed=1)
    ref.calibrate_batch_norm_(module, lambda: module(*_torch_inputs(inputs, "imu", "video")), seed=1).eval()
    model = _bridge("evi_mae_ft", module, "module.").model
    out = conversion.run_forward("evi_mae_ft", model, inputs)
    with torch.no_grad():
        expected = module(torch.from_numpy(inputs["imu"]), torch.from_numpy(inputs["video"]))
    assert np.abs(expected.numpy()).max() > 0.1  # a meaningful scale, not an all-zero comparison
    _close(out["logits"], expected, "logits")


def test_fusion_logits_and_features(inputs):
    imu = np.ascontiguousarray(np.swapaxes(inputs["imu"], 2, 3))  # RevalExo (freq, time) layout [B, 12, 32, 64]
    module = ref.randomize_(ref.EVIMAEFusion(ref.RefSizes(**SMALL), 7), seed=2)
    ref.calibrate_batch_norm_(module, lambda: module(torch.from_numpy(imu), torch.from_numpy(inputs["video"])), seed=2)
    module.eval()
    model = _bridge("revalexo_evi_mae_fusion", module, "").model
    out = conversion.run_forward("revalexo_evi_mae_fusion", model, {"imu": imu, "video": inputs["video"]})
    with torch.no_grad():
        logits, features = module(torch.from_numpy(imu), torch.from_numpy(inputs["video"]))
    assert out["logits_per_horizon"].shape == (6, B, 7)
    for k, expected in enumerate(logits):
        _close(out["logits_per_horizon"][k], expected, f"horizon {k} logits")
    _close(out["encoder_features"], features, "encoder_features")


def test_fusion_accepts_upstream_5d_imu():
    """Upstream squeezes [B, 1, 12, F, T] and merges [B, 4, 3, F, T]; anything else is a clear error."""
    imu = np.arange(2 * 12 * 4 * 6, dtype=np.float32).reshape(2, 12, 4, 6)
    for shaped in (imu[:, None], imu.reshape(2, 4, 3, 4, 6), imu):
        np.testing.assert_array_equal(np.asarray(evi_mae_fusion._as_channels_first(jnp.asarray(shaped), 12)), imu)
    with pytest.raises(ValueError, match="imu must be"):
        evi_mae_fusion._as_channels_first(jnp.zeros((2, 6, 4, 6)), 12)


def _pretrain_module(inputs, seed):
    module = ref.randomize_(ref.EVIMAE(ref.RefSizes(**SMALL, graph_dropout=0.0)), seed=seed)
    run = lambda: module(*_torch_inputs(inputs, "imu", "video", "node_perm", "imu_noise", "video_noise"), RATIO, RATIO)
    return ref.calibrate_batch_norm_(module, run, seed=seed)


@pytest.fixture(scope="module")
def pretrain_pair(inputs):
    module = _pretrain_module(inputs, seed=3)
    converted = _bridge("evi_mae", module, "module.", graph_dropout=0.0)
    return module, converted


def test_evi_mae_unmasked_latents(inputs, pretrain_pair):
    module, converted = pretrain_pair
    module.eval()
    out = conversion.run_forward("evi_mae", converted.model, {k: inputs[k] for k in ("imu", "video")})  # no draws
    with torch.no_grad():
        latent_a, latent_v = module.encode_unmasked(torch.from_numpy(inputs["imu"]), torch.from_numpy(inputs["video"]))
    _close(out["latent_imu"], latent_a, "latent_imu")
    _close(out["latent_video"], latent_v, "latent_video")


def _pretrain_both(module, model, inputs, train: bool):
    module.train(train)
    if train:
        model.train()
    else:
        model.eval()
    masks = {k: jnp.asarray(inputs[k]) for k in ("node_perm", "imu_noise", "video_noise")}

    @nnx.jit
    def forward(model, imu, video, masks):
        return model(imu, video, masks=masks, imu_mask_ratio=RATIO, video_mask_ratio=RATIO)

    got = forward(model, jnp.asarray(inputs["imu"]), jnp.asarray(inputs["video"]), masks)
    with torch.no_grad():
        want = module(torch.from_numpy(inputs["imu"]), torch.from_numpy(inputs["video"]),
                      torch.from_numpy(inputs["node_perm"]), torch.from_numpy(inputs["imu_noise"]),
                      torch.from_numpy(inputs["video_noise"]), RATIO, RATIO)
    return got, want


def _check_pretrain_pieces(got, want):
    B = want["pred_imu"].shape[0]
    for key in ("pred_video", "mask_imu", "mask_video", "target_video",
                "contrast_imu", "contrast_video", "latent_imu", "latent_video"):
        _close(got[key], want[key], key)
    for key in ("pred_imu", "target_imu"):  # upstream's (y, x, channel) vectors -> imujax's (channel, y, x)
        _close(got[key], patch_layout.imu_vectors_from_upstream(want[key].numpy(), 12), key)
    _close(got["graph_nodes"], want["graph_nodes"].reshape(B, 4, -1), "graph_nodes")
    _close(got["graph_recon"], want["graph_recon"].reshape(B, 4, -1), "graph_recon")
    masked = np.zeros(4 * B, bool)
    masked[want["graph_mask_nodes"].numpy()] = True
    np.testing.assert_array_equal(np.asarray(got["graph_masked"]), masked.reshape(B, 4))


def test_evi_mae_pretraining_eval(inputs, pretrain_pair):
    module, converted = pretrain_pair
    got, want = _pretrain_both(module, converted.model, inputs, train=False)
    _check_pretrain_pieces(got, want)


def test_evi_mae_pretraining_train_mode_batch_norm():
    """Dropout 0, BatchNorm on batch statistics over the 4B node rows; running stats and counters must follow torch.

    Batch 8: with fewer graphs some GIN features have near-zero batch variance and float32 rounding (of torch and JAX
    alike, checked against float64) exceeds the tolerance."""
    inputs = _make_inputs(8, seed=5)
    module = _pretrain_module(inputs, seed=4)
    converted = _bridge("evi_mae", module, "module.", graph_dropout=0.0)
    before = _state_dict(module)
    got, want = _pretrain_both(module, converted.model, inputs, train=True)
    _check_pretrain_pieces(got, want)
    after = _state_dict(module)
    exported = conversion.export_state_dict("evi_mae", converted.config, nnx.state(converted.model))
    stats = [k for k in after if "running" in k or "num_batches_tracked" in k]
    assert len(stats) == 3 * 5  # 5 BatchNorms x (mean, var, count)
    for key in stats:
        assert not np.array_equal(after[key], before[key]), f"{key} did not change in torch train mode"
        if key.endswith("num_batches_tracked"):
            assert exported["module." + key] == after[key] == before[key] + 1
        else:
            _close(exported["module." + key], after[key], key)
