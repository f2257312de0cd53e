"""Torch bridge for Audio-MAE / HIMU-MAE: rule tables, size inference from checkpoint shapes, convert registrations.

Three upstream checkpoints (facebookresearch/AudioMAE@bd60e29 models_mae.py, models_vit.py;
amir-goudarzi/IMU_testing@9c52aa2 src/subtrees/AudioMAE/models_mae.py, models_vit.py):
* ``audio_mae``: Audio-MAE ``pretrained.pth`` (weights under ``'model'``), ``MaskedAutoencoderViT``.
* ``audio_mae_vit``: a fine-tuned / linear-probed ``VisionTransformer`` (``finetuned.pth``): ``fc_norm`` + ``head``
  (or the MAE linear-probe ``head.0`` BatchNorm1d(affine=False) + ``head.1``).
* ``himu_mae``: HIMU-MAE ``accelerator_state/model.safetensors`` (flat state_dict), the same keys with 3 input
  channels, an 8x20 grid and (with Omnivore conditioning) ``decoder_embed`` [512, 768 + 1536].

Widths, depths, decoder kind and the video width come from tensor shapes; the grid orientation of the stored
position tables is recognised by comparing them with both sin-cos layouts. Input height/width are not stored:
``--set img_h=.. img_w=..``, the shape of the input array, or the family default (1024x128, 128x320).
``wear_init_from_himu`` builds the 12-channel WEAR initialisation from a 3-channel HIMU state_dict.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imujax.bridges.torch import rules as R
from imujax.bridges.torch.registry import IOSpec, ModelFamily
from imujax.bridges.torch.rules import key_regex, layer_norm, linear, patch_embed, rule
from imujax.models.audio_mae import (AUDIO_MAE, HIMU_MAE, AudioMAE, AudioMAESizes, AudioMAEViT, position_table)
from imujax.objectives import mae

STRIP = ("module.", "_orig_mod.")


def vit_block(t: str) -> list[R.Rule]:
    """timm-0.3.2 ``Block``: norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2."""
    return (layer_norm(f"{t}.norm1") + linear(f"{t}.attn.qkv") + linear(f"{t}.attn.proj") + layer_norm(f"{t}.norm2")
            + linear(f"{t}.mlp.fc1") + linear(f"{t}.mlp.fc2"))


def swin_block(t: str) -> list[R.Rule]:
    """Swin-V2-Cr block (relative coordinates and shift masks are non-persistent buffers: nothing to load)."""
    return ([rule(f"{t}.attn.tau", f"{t}.attn.tau")] + linear(f"{t}.attn.qkv") + linear(f"{t}.attn.proj")
            + linear(f"{t}.attn.meta_mlp.fc1") + linear(f"{t}.attn.meta_mlp.fc2") + layer_norm(f"{t}.norm1")
            + linear(f"{t}.mlp.fc1") + linear(f"{t}.mlp.fc2") + layer_norm(f"{t}.norm2"))


def feature_batch_norm(t: str) -> list[R.Rule]:
    return [rule(f"{t}.running_mean", f"{t}.mean"), rule(f"{t}.running_var", f"{t}.var"),
            rule(f"{t}.num_batches_tracked", f"{t}.count", R.astype(np.int32, np.int64))]


def encoder_rules(cfg: Mapping[str, Any]) -> list[R.Rule]:
    out = [rule("cls_token", "cls_token"), rule("pos_embed", "pos_embed")]
    out += patch_embed("patch_embed", (cfg["in_chans"], cfg["patch"], cfg["patch"]))
    return out + vit_block("blocks.{i}")


def mae_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    out = encoder_rules(cfg) + layer_norm("norm") + linear("decoder_embed")
    out += [rule("mask_token", "mask_token"), rule("decoder_pos_embed", "decoder_pos_embed")]
    out += swin_block("decoder_blocks.{j}") if cfg["decoder_mode"] == 1 else vit_block("decoder_blocks.{j}")
    out += layer_norm("decoder_norm") + linear("decoder_pred")
    return R.RuleTable(cfg.get("family", "audio_mae"), out, strip_prefixes=STRIP)


def vit_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    out = encoder_rules(cfg) + layer_norm("fc_norm")
    if cfg["probe_bn"]:
        out += feature_batch_norm("head.0") + linear("head.1")
    else:
        out += linear("head")
    return R.RuleTable("audio_mae_vit", out, strip_prefixes=STRIP)


# -- size inference -----------------------------------------------------------------------------------------------------
SIZE_FIELDS = {f.name: f.type for f in dataclasses.fields(AudioMAESizes)}
EXTRA = {"num_classes": 0, "probe_bn": False, "family": ""}


def _overrides(overrides: Mapping[str, str], defaults: AudioMAESizes) -> dict[str, Any]:
    kinds = {**SIZE_FIELDS, **{k: type(v) for k, v in EXTRA.items()}}
    unknown = sorted(set(overrides) - set(kinds) - {"window", "shift"})
    if unknown:
        raise ValueError(f"unknown --set key(s) {unknown}; known keys: {sorted(set(kinds) - {'family'})}")
    cfg = {**dataclasses.asdict(defaults), **EXTRA}
    for key, value in overrides.items():
        if key in ("window", "shift"):
            cfg[key] = tuple(int(v) for v in value.strip("()").split(","))
        else:
            cfg[key] = R.coerce_override(key, value, kinds[key])
    return cfg


def _set(cfg: dict, overrides: Mapping[str, str], name: str, value: Any, source: str) -> None:
    if name in overrides and cfg[name] != value:
        raise ValueError(f"--set {name}={overrides[name]} contradicts the checkpoint: {source} gives {value}")
    cfg[name] = value


def _infer_encoder(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str], cfg: dict) -> None:
    dim, chans, kh, kw = R.shape_of(sd, "patch_embed.proj.weight")
    if kh != kw:
        raise ValueError(f"patch_embed.proj.weight has a non-square kernel {kh}x{kw}; expected square patches")
    _set(cfg, overrides, "embed_dim", dim, "patch_embed.proj.weight")
    _set(cfg, overrides, "in_chans", chans, "patch_embed.proj.weight")
    _set(cfg, overrides, "patch", kh, "patch_embed.proj.weight")
    _set(cfg, overrides, "depth", R.count_indices(sd, key_regex("blocks.{i}.")), "blocks.*")
    if cfg["depth"]:  # a depth-0 encoder stores no MLP: the ratio comes from the decoder, --set or the default
        hidden = R.shape_of(sd, "blocks.0.mlp.fc1.weight")[0]
        _set(cfg, overrides, "mlp_ratio", hidden / dim, "blocks.0.mlp.fc1.weight")
    if "num_heads" not in overrides:  # not stored; ViT-B and the HIMU models use 64-wide heads
        if dim % 64:
            raise ValueError(f"cannot infer num_heads: embed_dim={dim} is not a multiple of 64; pass --set num_heads=N")
        cfg["num_heads"] = dim // 64
    tokens = R.shape_of(sd, "pos_embed")[1] - 1
    sizes = _sizes(cfg)
    if sizes.num_tokens != tokens:
        raise ValueError(f"pos_embed holds {tokens} patch positions but img_h x img_w = {cfg['img_h']}x{cfg['img_w']} "
                         f"with patch {cfg['patch']} gives {sizes.num_tokens}; pass --set img_h=.. img_w=.. or give "
                         f"--inputs")
    stored = np.asarray(sd["pos_embed"], np.float32)
    for swapped in (False, True):  # recognise the grid the stored table was built on
        if np.allclose(stored, position_table(dataclasses.replace(sizes, pos_grid_swapped=swapped), dim), atol=1e-5):
            cfg["pos_grid_swapped"] = swapped
            break


def _sizes(cfg: Mapping[str, Any]) -> AudioMAESizes:
    return AudioMAESizes(**{k: (tuple(cfg[k]) if k in ("window", "shift") else cfg[k]) for k in SIZE_FIELDS})


def infer_mae(defaults: AudioMAESizes, family: str):
    def infer(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
        cfg = _overrides(overrides, defaults)
        cfg["family"] = family
        _infer_encoder(sd, overrides, cfg)
        d_dec, d_in = R.shape_of(sd, "decoder_embed.weight")
        _set(cfg, overrides, "decoder_dim", d_dec, "decoder_embed.weight")
        _set(cfg, overrides, "video_dim", d_in - cfg["embed_dim"], "decoder_embed.weight (minus embed_dim)")
        _set(cfg, overrides, "decoder_depth", R.count_indices(sd, key_regex("decoder_blocks.{j}.")), "decoder_blocks.*")
        swin = "decoder_blocks.0.attn.tau" in sd
        if cfg["decoder_depth"]:  # without decoder blocks the kind is unobservable and changes nothing
            _set(cfg, overrides, "decoder_mode", 1 if swin else 0, "decoder_blocks.0.attn.tau presence")
            if not cfg["depth"]:
                hidden = R.shape_of(sd, "decoder_blocks.0.mlp.fc1.weight")[0]
                _set(cfg, overrides, "mlp_ratio", hidden / d_dec, "decoder_blocks.0.mlp.fc1.weight")
        if swin:
            _set(cfg, overrides, "decoder_heads", R.shape_of(sd, "decoder_blocks.0.attn.tau")[0],
                 "decoder_blocks.0.attn.tau")
            _set(cfg, overrides, "meta_hidden", R.shape_of(sd, "decoder_blocks.0.attn.meta_mlp.fc1.weight")[0],
                 "decoder_blocks.0.attn.meta_mlp.fc1.weight")
        pred = R.shape_of(sd, "decoder_pred.weight")[0]
        if pred != cfg["patch"] ** 2 * cfg["in_chans"]:
            raise ValueError(f"decoder_pred.weight has {pred} outputs; expected patch^2 * in_chans = "
                             f"{cfg['patch'] ** 2 * cfg['in_chans']}")
        return cfg
    return infer


def infer_vit(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
    cfg = _overrides(overrides, AUDIO_MAE)
    cfg["family"] = "audio_mae_vit"
    _infer_encoder(sd, overrides, cfg)
    probe = "head.1.weight" in sd
    _set(cfg, overrides, "probe_bn", probe, "head.1.weight presence")
    head = "head.1.weight" if probe else "head.weight"
    _set(cfg, overrides, "num_classes", R.shape_of(sd, head)[0], head)
    return cfg


def sizes_from_inputs(key: str):
    def read(inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
        if key in inputs and np.ndim(inputs[key]) == 4:
            _, _, h, w = np.shape(inputs[key])
            return {"img_h": h, "img_w": w}
        return {}
    return read


# -- WEAR transfer ------------------------------------------------------------------------------------------------------
def wear_init_from_himu(sd: Mapping[str, np.ndarray], repeats: int = 4) -> dict[str, np.ndarray]:
    """HIMU 3-channel state_dict -> WEAR 3*repeats-channel initial state_dict (torch layout,
    amir-goudarzi/IMU_testing@9c52aa2 src/data/wear_dataset_ssl.py).

    ``patch_embed.proj.weight`` is tiled along input channels and divided by ``repeats``; ``decoder_pred`` is tiled
    along its outputs; ``decoder_embed`` is dropped (its input width changes; the caller re-initialises it).
    """
    out = {}
    for key, value in sd.items():
        value = np.asarray(value)
        if key == "patch_embed.proj.weight":
            out[key] = np.tile(value, (1, repeats, 1, 1)) / np.asarray(repeats, value.dtype)
        elif key == "decoder_pred.weight":
            out[key] = np.tile(value, (repeats, 1))
        elif key == "decoder_pred.bias":
            out[key] = np.tile(value, repeats)
        elif not key.startswith("decoder_embed."):
            out[key] = value
    if "patch_embed.proj.weight" not in sd:
        raise KeyError("wear_init_from_himu: the state_dict has no patch_embed.proj.weight")
    return out


# -- models and eval-mode forwards --------------------------------------------------------------------------------------
def build_mae(cfg: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return AudioMAE(_sizes(cfg), rngs=rngs)


def build_vit(cfg: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return AudioMAEViT(_sizes(cfg), cfg["num_classes"], probe_bn=cfg["probe_bn"], rngs=rngs)


@nnx.jit
def _encode(model, x):
    return model.encode_unmasked(x)


@nnx.jit(static_argnames=("mask_ratio",))
def _mae_loss(model, x, noise, video, mask_ratio: float):
    out = model(x, {"noise": noise}, video=video, mask_ratio=mask_ratio)
    return {"mae_loss": mae.masked_mse(out["pred"], out["target"], out["mask"], norm_pix=True),
            "pred": out["pred"], "mask": out["mask"], "latent": out["latent"]}


@nnx.jit
def _logits(model, x):
    return model(x)


def _mae_forward(input_key: str, default_mask_ratio: float):
    def run(model: nnx.Module, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        model.eval()
        x = jnp.asarray(inputs[input_key], jnp.float32)
        out = {"enc_tokens": _encode(model, x)}
        if "mask_noise" in inputs:
            video = jnp.asarray(inputs["video"], jnp.float32) if "video" in inputs else None
            if model.sizes.video_dim and video is None:
                raise ValueError(f"this checkpoint is video-conditioned: mae_loss needs 'video' "
                                 f"[B, {model.sizes.video_dim}] next to 'mask_noise'")
            out.update(_mae_loss(model, x, jnp.asarray(inputs["mask_noise"], jnp.float32), video,
                                 float(inputs.get("mask_ratio", default_mask_ratio))))
        return {k: np.asarray(jax.device_get(v)) for k, v in out.items()}
    return run


def _vit_forward(model: nnx.Module, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    model.eval()
    return {"logits": np.asarray(_logits(model, jnp.asarray(inputs["fbank"], jnp.float32)))}


MASK_INPUTS = (
    IOSpec("mask_noise", "[B,L]", "masking noise (torch.rand); runs the masked forward and its loss", True),
    IOSpec("mask_ratio", "[]", "with mask_noise; default 0.8 Audio-MAE, 0.9 HIMU", True))
MAE_OUTPUTS = (
    IOSpec("enc_tokens", "[B,L,D]", "unmasked encoder patch tokens after norm, natural order (no cls)"),
    IOSpec("mae_loss", "[]", "with mask_noise: norm-pix masked MSE", True),
    IOSpec("pred", "[B,L,p*p*C]", "with mask_noise: decoder predictions, natural token order", True),
    IOSpec("mask", "[B,L]", "with mask_noise: 1 = removed", True),
    IOSpec("latent", "[B,1+K,D]", "with mask_noise: cls + kept tokens in argsort(noise) order", True))

FAMILIES = (
    ModelFamily(
        name="audio_mae", summary="Audio-MAE pretraining model (pretrained.pth, weights under 'model')",
        rule_table=mae_table, infer_config=infer_mae(AUDIO_MAE, "audio_mae"), build=build_mae,
        forward=_mae_forward("fbank", 0.8),
        inputs=(IOSpec("fbank", "[B,1,1024,128]", "normalised Kaldi log-mel, (time, mel)"), *MASK_INPUTS),
        outputs=MAE_OUTPUTS, sizes_from_inputs=sizes_from_inputs("fbank")),
    ModelFamily(
        name="audio_mae_vit", summary="Audio-MAE fine-tuned ViT (finetuned.pth): mean-pool, fc_norm, head",
        rule_table=vit_table, infer_config=infer_vit, build=build_vit, forward=_vit_forward,
        inputs=(IOSpec("fbank", "[B,1,1024,128]", "normalised Kaldi log-mel, (time, mel)"),),
        outputs=(IOSpec("logits", "[B,n_class]", "head output (eval mode)"),),
        sizes_from_inputs=sizes_from_inputs("fbank")),
    ModelFamily(
        name="himu_mae", summary="HIMU-MAE pretraining model (accelerator_state/model.safetensors, flat keys)",
        rule_table=mae_table, infer_config=infer_mae(HIMU_MAE, "himu_mae"), build=build_mae,
        forward=_mae_forward("spec", 0.9),
        inputs=(IOSpec("spec", "[B,3,128,320]", "normalised accelerometer dB spectrograms, (freq, time)"),
                *MASK_INPUTS, IOSpec("video", "[B,1536]", "video feature a video-conditioned decoder needs with "
                                     "mask_noise", True)),
        outputs=MAE_OUTPUTS, sizes_from_inputs=sizes_from_inputs("spec")),
)
