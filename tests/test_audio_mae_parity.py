"""Audio-MAE / HIMU-MAE: full-size key/shape sets against the spec, and JAX-vs-PyTorch parity through the rule tables.

Full size: every key of the spec's §1.3 table (written out here) is mapped through the rule table one tensor at a time
and compared with the abstract NNX model. Parity: reduced widths/depths, random weights; every torch state_dict goes
through ``imujax.convert`` (rule tables; the HIMU one through a safetensors file), never a hand copy.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from imujax.bridges.torch import audio_mae_rules, conversion, export as torch_export, rules
from imujax.models import audio_mae as am
from imujax.objectives import mae
from tests.torch_reference import audio_mae as ref

TOL = 1e-5


# -- full-size key sets (spec §1.3 / §2.3) -------------------------------------------------------------------------------
def _lin(p, din, dout):
    return {f"{p}.weight": (dout, din), f"{p}.bias": (dout,)}


def _ln(p, d):
    return {f"{p}.weight": (d,), f"{p}.bias": (d,)}


def spec_mae_keys(chans=1, tokens=512, video=0):
    out = {"cls_token": (1, 1, 768), "pos_embed": (1, tokens + 1, 768), "patch_embed.proj.weight": (768, chans, 16, 16),
           "patch_embed.proj.bias": (768,), "mask_token": (1, 1, 512), "decoder_pos_embed": (1, tokens + 1, 512)}
    for i in range(12):
        b = f"blocks.{i}"
        out |= _ln(f"{b}.norm1", 768) | _ln(f"{b}.norm2", 768) | _lin(f"{b}.attn.qkv", 768, 2304)
        out |= _lin(f"{b}.attn.proj", 768, 768) | _lin(f"{b}.mlp.fc1", 768, 3072) | _lin(f"{b}.mlp.fc2", 3072, 768)
    out |= _ln("norm", 768) | _lin("decoder_embed", 768 + video, 512)
    for j in range(16):
        b = f"decoder_blocks.{j}"
        out |= {f"{b}.attn.tau": (16,)} | _lin(f"{b}.attn.qkv", 512, 1536) | _lin(f"{b}.attn.proj", 512, 512)
        out |= _lin(f"{b}.attn.meta_mlp.fc1", 2, 384) | _lin(f"{b}.attn.meta_mlp.fc2", 384, 16)
        out |= _ln(f"{b}.norm1", 512) | _ln(f"{b}.norm2", 512) | _lin(f"{b}.mlp.fc1", 512, 2048)
        out |= _lin(f"{b}.mlp.fc2", 2048, 512)
    return out | _ln("decoder_norm", 512) | _lin("decoder_pred", 512, 256 * chans)


def _check_full_size(spec: dict, sizes: am.AudioMAESizes, table_cfg: dict):
    table = audio_mae_rules.mae_table(table_cfg)
    model = nnx.eval_shape(lambda: am.AudioMAE(sizes, rngs=nnx.Rngs(0)))
    target = conversion.bridge_arrays(model)  # stacked towers seen one layer at a time, as the rules name them
    seen = set()
    for key, shape in spec.items():
        found = table.find(key)
        assert found is not None, f"no rule for spec key {key}"
        _, rule, _, bindings = found
        path = rules.fill_path(rule.nnx, bindings)
        out = rule.transform.forward(np.empty(shape, np.float32), tuple(target[path].shape))
        assert out.shape == tuple(target[path].shape), (key, out.shape, target[path].shape)
        seen.add(path)
    assert seen == set(target), f"NNX params without a spec key: {sorted(set(target) - seen)[:5]}"


def test_audio_mae_full_size_keys():
    cfg = {"in_chans": 1, "patch": 16, "decoder_mode": 1}
    spec = spec_mae_keys()
    assert len(spec) == 6 + 12 * 12 + 4 + 16 * 17 + 4
    _check_full_size(spec, am.AUDIO_MAE, cfg)


def test_himu_mae_full_size_keys():
    _check_full_size(spec_mae_keys(chans=3, tokens=160, video=1536), am.HIMU_MAE,
                     {"in_chans": 3, "patch": 16, "decoder_mode": 1})


def test_truncating_keep_counts():
    assert am.num_kept(512, 0.8) == 102
    assert [am.num_kept(160, r) for r in (0.9, 0.8, 0.7, 0.6)] == [15, 31, 48, 64]


def test_position_tables_match_spec_layout():
    """Audio-MAE's table is built on the swapped 8x64 grid; HIMU's on the true 8x20 grid (loops in the reference)."""
    np.testing.assert_allclose(am.position_table(am.AUDIO_MAE, 768)[0], ref.mae_sincos(8, 64, 768), atol=1e-6)
    np.testing.assert_allclose(am.position_table(am.HIMU_MAE, 512)[0], ref.mae_sincos(8, 20, 512), atol=1e-6)


# -- reduced-size parity --------------------------------------------------------------------------------------------------
AUDIO = ref.RefSizes(img_h=128, img_w=64, in_chans=1, embed_dim=32, depth=2, num_heads=2, decoder_dim=32,
                     decoder_depth=4, decoder_heads=16, swapped_grid=True)
HIMU = ref.RefSizes(img_h=128, img_w=128, in_chans=3, embed_dim=32, depth=2, num_heads=2, decoder_dim=32,
                    decoder_depth=4, decoder_heads=16, video_dim=16, swapped_grid=False)
GLOBAL = ref.RefSizes(img_h=64, img_w=32, in_chans=1, embed_dim=32, depth=2, num_heads=2, decoder_dim=32,
                      decoder_mode=0, decoder_depth=2, decoder_heads=4, swapped_grid=True)
SETS = {"num_heads": "2"}


def _torch_mae(s, seed):
    return ref.randomize(ref.RefMAE(s), seed).eval()


def _torch_outputs(model, x, noise, ratio, video=None):
    with torch.no_grad():
        latent, mask, restore = model.forward_encoder(torch.from_numpy(x), torch.from_numpy(noise), ratio)
        pred = model.forward_decoder(latent, restore, None if video is None else torch.from_numpy(video))
        loss = model.forward_loss(torch.from_numpy(x), pred, mask)
        natural = torch.from_numpy(np.tile(np.arange(noise.shape[1], dtype=np.float32), (x.shape[0], 1)))
        enc, _, _ = model.forward_encoder(torch.from_numpy(x), natural, 0.0)
    return {"latent": latent.numpy(), "mask": mask.numpy(), "pred": pred.numpy(), "mae_loss": loss.numpy(),
            "enc_tokens": enc[:, 1:].numpy()}


@pytest.mark.parametrize("name,sizes,ratio", [("audio_mae", AUDIO, 0.8), ("audio_mae", GLOBAL, 0.75),
                                              ("himu_mae", HIMU, 0.9)])
def test_mae_parity(name, sizes, ratio, tmp_path):
    rng = np.random.default_rng(0)
    model = _torch_mae(sizes, seed=1)
    sd = ref.state_dict_numpy(model)
    tokens = sizes.grid[0] * sizes.grid[1]
    x = rng.normal(size=(2, sizes.in_chans, sizes.img_h, sizes.img_w)).astype(np.float32)
    noise = rng.random((2, tokens)).astype(np.float32)
    video = rng.normal(size=(2, sizes.video_dim)).astype(np.float32) if sizes.video_dim else None
    want = _torch_outputs(model, x, noise, ratio, video)

    if name == "himu_mae":  # the released HIMU format: a flat safetensors file
        path = os.path.join(tmp_path, "model.safetensors")
        torch_export.write_safetensors(path, sd)
        sd = conversion.read_state_dict(name, path)
    overrides = dict(SETS, img_h=str(sizes.img_h), img_w=str(sizes.img_w))
    if sizes.decoder_mode == 0:
        overrides["decoder_heads"] = str(sizes.decoder_heads)
    converted = conversion.convert_state_dict(name, sd, overrides)
    assert converted.report.ok, converted.report.format()
    assert converted.config["pos_grid_swapped"] == sizes.swapped_grid
    assert converted.config["video_dim"] == sizes.video_dim
    inputs = {"spec" if name == "himu_mae" else "fbank": x, "mask_noise": noise, "mask_ratio": np.float32(ratio)}
    if video is not None:
        inputs["video"] = video
    got = conversion.run_forward(name, converted.model, inputs)
    for key in ("latent", "mask", "pred", "mae_loss", "enc_tokens"):
        np.testing.assert_allclose(got[key], want[key], atol=TOL, rtol=TOL, err_msg=key)
    assert got["latent"].shape[1] == 1 + am.num_kept(tokens, ratio)

    back = conversion.export_state_dict(name, converted.config, nnx.state(converted.model))
    assert set(back) == set(sd)
    for key in sd:
        np.testing.assert_array_equal(back[key], sd[key], err_msg=key)


def test_vit_parity():
    rng = np.random.default_rng(3)
    model = ref.randomize(ref.RefViT(AUDIO, num_classes=5), seed=4).eval()
    sd = ref.state_dict_numpy(model)
    x = rng.normal(size=(2, 1, AUDIO.img_h, AUDIO.img_w)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    converted = conversion.convert_state_dict("audio_mae_vit", {f"module.{k}": v for k, v in sd.items()},
                                           dict(SETS, img_h="128", img_w="64"))
    assert converted.report.ok, converted.report.format()
    assert converted.config["num_classes"] == 5 and not converted.config["probe_bn"]
    got = conversion.run_forward("audio_mae_vit", converted.model, {"fbank": x})["logits"]
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


def test_grid_size_mismatch_is_named():
    sd = ref.state_dict_numpy(_torch_mae(AUDIO, seed=0))
    with pytest.raises(ValueError, match="pos_embed holds 32 patch positions"):
        conversion.convert_state_dict("audio_mae", sd, dict(SETS, img_h="64", img_w="64"))


def test_wear_init_tiles_input_weights():
    """12-channel WEAR init: four identical 3-channel copies embed exactly like the 3-channel model."""
    sd = ref.state_dict_numpy(_torch_mae(HIMU, seed=5))
    wear = audio_mae_rules.wear_init_from_himu(sd)
    assert wear["patch_embed.proj.weight"].shape == (32, 12, 16, 16)
    assert wear["decoder_pred.weight"].shape == (4 * 768, 32) and "decoder_embed.weight" not in wear
    np.testing.assert_array_equal(wear["decoder_pred.bias"][768:1536], sd["decoder_pred.bias"])
    x = np.random.default_rng(0).normal(size=(1, 3, 16, 16)).astype(np.float32)
    w3, w12 = torch.from_numpy(sd["patch_embed.proj.weight"]), torch.from_numpy(wear["patch_embed.proj.weight"])
    y3 = torch.nn.functional.conv2d(torch.from_numpy(x), w3)
    y12 = torch.nn.functional.conv2d(torch.from_numpy(np.tile(x, (1, 4, 1, 1))), w12)
    np.testing.assert_allclose(y12.numpy(), y3.numpy(), atol=1e-5)


def test_norm_pix_loss_uses_unbiased_variance():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(2, 6, 8)), rng.normal(size=(2, 6, 8))
    mask = (rng.random((2, 6)) > 0.5).astype(np.float32)
    mask[0, 0] = 1
    t = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, ddof=1, keepdims=True) + 1e-6)
    want = (((pred - t) ** 2).mean(-1) * mask).sum() / mask.sum()
    np.testing.assert_allclose(float(mae.masked_mse(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask))),
                               want, rtol=1e-5)


def test_2d_masking_keeps_natural_order():
    x = jnp.arange(2 * 8 * 6, dtype=jnp.float32).reshape(2, 48, 1)
    rng = np.random.default_rng(2)
    noise_r, noise_c = jnp.asarray(rng.random((2, 8))), jnp.asarray(rng.random((2, 6)))
    kept, mask, restore = am.random_masking_2d(x, (8, 6), noise_r, noise_c, 0.6, 0.5)
    for b in range(2):
        rows_kept = np.argsort(np.asarray(noise_r[b]))[:3]
        cols_kept = np.argsort(np.asarray(noise_c[b]))[:3]
        want = sorted(r * 6 + c for r in rows_kept for c in cols_kept)
        np.testing.assert_array_equal(np.asarray(kept[b, :, 0]) - 48 * b, want)
        assert float(mask[b].sum()) == 48 - 9
        np.testing.assert_array_equal(np.asarray(mask[b]).reshape(8, 6)[rows_kept][:, cols_kept], 0)


# -- stacked towers --------------------------------------------------------------------------------------------------------
def test_stacked_decoder_matches_blocks_run_one_by_one():
    """The decoder's one scan with a per-layer shift flag gives what its layers give run one at a time with a static
    shift (even: no roll and no mask at all; odd: rolled and masked), in train mode (meta dropout, per-layer keys)."""
    sizes = am.AudioMAESizes(img_h=128, img_w=64, embed_dim=32, depth=1, num_heads=2, decoder_dim=32,
                             decoder_depth=5, meta_hidden=16)
    model = am.AudioMAE(sizes, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, sizes.num_tokens, 32)), jnp.float32)
    key = jax.random.key(1)

    @nnx.jit
    def one_by_one(model, x):
        for i, k in enumerate(jax.random.split(key, sizes.decoder_depth)):
            x = model.decoder_blocks.layer(i)(x, k, shifted=i % 2 == 1)
        return x

    got = nnx.jit(lambda m, x: m.run_decoder_blocks(x, key))(model, x)
    assert any(model.decoder_blocks.layer(1).shift)
    np.testing.assert_allclose(np.asarray(got), np.asarray(one_by_one(model, x)), atol=TOL, rtol=TOL)


def test_converted_checkpoint_stores_stacked_towers(tmp_path):
    """convert output: encoder and decoder params stacked [depth, ...] under blocks/block and decoder_blocks/block;
    reloaded it gives the same outputs; an output of the per-block layout (format_version 2) is refused."""
    sd = ref.state_dict_numpy(_torch_mae(AUDIO, seed=2))
    converted = conversion.convert_state_dict("audio_mae", sd, dict(SETS, img_h="128", img_w="64"))
    out_dir = tmp_path / "conv"
    conversion.save_converted(str(out_dir), converted)
    _, _, state = conversion.load_converted(str(out_dir))
    pure = state.to_pure_dict()
    assert set(pure["blocks"]) == {"block"} and set(pure["decoder_blocks"]) == {"block"}
    assert pure["blocks"]["block"]["attn"]["qkv"]["kernel"].shape == (AUDIO.depth, 32, 96)
    assert pure["decoder_blocks"]["block"]["attn"]["tau"].shape == (AUDIO.decoder_depth, 16)
    _, _, model = conversion.load_converted_model(str(out_dir))
    x = np.random.default_rng(0).normal(size=(2, 1, 128, 64)).astype(np.float32)
    np.testing.assert_array_equal(conversion.run_forward("audio_mae", model, {"fbank": x})["enc_tokens"],
                                  conversion.run_forward("audio_mae", converted.model, {"fbank": x})["enc_tokens"])
    meta_path = out_dir / conversion.CONFIG_FILE
    meta_path.write_text(meta_path.read_text().replace('"format_version": 4', '"format_version": 2'))
    with pytest.raises(ValueError, match="format_version 2, this imujax reads 3 or 4 for audio_mae"):
        conversion.load_converted(str(out_dir))
