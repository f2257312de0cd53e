"""Torch bridge for TSFM Stage 2 (``best.pt`` + ``hyperparameters.json``): rule table, size inference, convert entry.

The checkpoint dict (alxdofficial/tsfm@308eea1 val_scripts/human_activity_recognition/model_loading.py) holds
``model_state_dict`` (encoder / channel_fusion / semantic_head),
``label_bank_state_dict`` (``pooling.*``) and ``criterion_state_dict`` (``loss_fn.logit_scale``). They are merged into
one flat dict under the prefixes ``""``, ``label_bank.`` and ``criterion.`` before the rules run; a legacy fused gate
``channel_fusion.gate.0.*`` is split into ``gate_sensor`` / ``gate_channel`` first.

Widths, depths, query and prototype counts, the feature-extractor variant and the presence of optional modules come
from tensor shapes. Head counts and ``per_patch_prediction`` are not stored in tensors: they come from
``hyperparameters.json`` next to the checkpoint (or the checkpoint's ``hyperparameters`` entry), or ``--set``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imujax.bridges.torch import reader
from imujax.bridges.torch import rules as R
from imujax.bridges.torch.registry import IOSpec, ModelFamily
from imujax.bridges.torch.rules import key_regex, layer_norm, linear, rule
from imujax.models.tsfm import TSFM, TSFMSizes
from imujax.transforms import tsfm_patches

STRIP = ("module.", "_orig_mod.")
SIZE_FIELDS = {f.name: f.type for f in dataclasses.fields(TSFMSizes)}
NOT_IN_TENSORS = ("num_heads", "channel_text_num_heads", "label_bank_num_heads", "per_patch_prediction")
DEFAULT_HEADS = {192: 4, 384: 8, 512: 8}  # d_model -> encoder heads, upstream model/config.py


# -- rule tables (builders in rules.py: a dotted torch key gives both the key regex and the NNX path) ------------
def mha(t: str) -> list[R.Rule]:
    """nn.MultiheadAttention: in_proj_weight [3d, d] (rows q|k|v) -> in_proj.kernel [d, 3d]."""
    return ([rule(f"{t}.in_proj_weight", f"{t}.in_proj.kernel", R.transpose),
             rule(f"{t}.in_proj_bias", f"{t}.in_proj.bias")] + linear(f"{t}.out_proj"))


def sequential(t: str, n: str, indices: tuple[int, ...]) -> list[R.Rule]:
    """nn.Sequential Linears at torch indices (0, 2, ...) -> MLPStack ``layers.{0, 1, ...}``."""
    return [r for j, i in enumerate(indices) for r in linear(f"{t}.{i}", f"{n}.layers.{j}")]


def conv_branch(t: str, n: str) -> list[R.Rule]:
    return [rule(f"{t}.branches.0.0.weight", f"{n}.conv.kernel", R.conv1d),
            rule(f"{t}.branches.0.1.weight", f"{n}.norm_scale"), rule(f"{t}.branches.0.1.bias", f"{n}.norm_bias")]


def mqa(t: str, self_attention: bool) -> list[R.Rule]:
    out = [rule(f"{t}.queries")] + mha(f"{t}.cross_attn") + layer_norm(f"{t}.norm1")
    if self_attention:
        out += mha(f"{t}.self_attn") + layer_norm(f"{t}.norm2")
    return out + sequential(f"{t}.out_proj", f"{t}.out_proj", (0, 2))


def encoder_rules(cfg: Mapping[str, Any]) -> list[R.Rule]:
    e = "encoder"
    out = [rule(f"{e}.mask_token"), rule(f"{e}.pad_token"),
           rule(f"{e}.positional_encoding.temporal_encoding.pe"),
           rule(f"{e}.positional_encoding.temporal_encoding.scale")]
    f = f"{e}.feature_extractor"
    if cfg["feature_extractor"] == "cnn":
        out += conv_branch(f"{f}.cnn.layers.{{i}}", f"{f}.cnn.layers.{{i}}")
        out += linear(f"{f}.cnn.projection.0", f"{f}.cnn.projection")
    else:
        n = f"{f}.spectral_temporal"
        out += conv_branch(f"{f}.temporal_layers.{{i}}", f"{n}.temporal_layers.{{i}}")
        out += linear(f"{f}.temporal_proj", f"{n}.temporal_proj") + layer_norm(f"{f}.temporal_norm", f"{n}.temporal_norm")
        out += linear(f"{f}.spectral_mlp.0", f"{n}.spectral_mlp.0") + linear(f"{f}.spectral_mlp.3", f"{n}.spectral_mlp.1")
        out += layer_norm(f"{f}.spectral_norm", f"{n}.spectral_norm")
    layer = f"{e}.transformer.transformer.layers.{{i}}"
    for attn in ("temporal_attn", "cross_channel_attn"):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out += linear(f"{layer}.{attn}.{proj}")
    out += linear(f"{layer}.feed_forward.fc1") + linear(f"{layer}.feed_forward.fc2")
    for norm in ("norm1", "norm2", "norm3"):
        out += layer_norm(f"{layer}.{norm}")
    return out


def tsfm_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    out = encoder_rules(cfg)
    if cfg["channel_text_fusion"]:
        c = "channel_fusion"
        out += [rule(f"{c}.queries")] + mha(f"{c}.cross_attn") + layer_norm(f"{c}.norm1")
        out += sequential(f"{c}.out_proj", f"{c}.out_proj", (0, 2))
        out += linear(f"{c}.gate_sensor", bias=False) + linear(f"{c}.gate_channel")
        if cfg["text_dim"] != cfg["d_model"]:
            out += linear(f"{c}.text_proj")
    h = "semantic_head"
    out += linear(f"{h}.cross_channel_fusion.input_proj")
    out += mqa(f"{h}.cross_channel_fusion.attention", cfg["fusion_self_attention"])
    t = f"{h}.temporal_attention.transformer.layers.{{i}}"
    out += mha(f"{t}.self_attn") + linear(f"{t}.linear1") + linear(f"{t}.linear2")
    out += layer_norm(f"{t}.norm1") + layer_norm(f"{t}.norm2")
    out += mqa(f"{h}.attention_pooling.attention", cfg["pool_self_attention"])
    out += sequential(f"{h}.projection_head.mlp", f"{h}.projection_head.mlp", (0, 2, 4))
    if cfg["learnable_label_bank"]:
        b = "label_bank.pooling"
        out += [rule(f"{b}.queries")] + mha(f"{b}.cross_attn") + layer_norm(f"{b}.norm")
        if cfg["num_prototypes"] == 1:
            out += sequential(f"{b}.out_proj", f"{b}.out_proj", (0, 2))
        else:
            out += sequential(f"{b}.out_projs.{{k}}", f"{b}.out_projs.{{k}}", (0, 2))
    out += [rule("criterion.loss_fn.logit_scale", "logit_scale")]
    if cfg["siglip"]:
        out += [rule("criterion.loss_fn.logit_bias", "logit_bias")]
    return R.RuleTable("tsfm", out, strip_prefixes=STRIP)


# -- checkpoint selection ---------------------------------------------------------------------------------------------
def upgrade_legacy_gate(sd: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``channel_fusion.gate.0.weight [d, 2d]`` -> gate_sensor (first d input columns) + gate_channel (+ bias)."""
    out = dict(sd)
    for prefix in ("", "module.", "_orig_mod."):
        key = f"{prefix}channel_fusion.gate.0.weight"
        if key in out:
            w = np.asarray(out.pop(key))
            d = w.shape[0]
            if w.shape != (d, 2 * d):
                raise ValueError(f"{key} has shape {w.shape}; a legacy fused gate is [d, 2d]")
            out[f"{prefix}channel_fusion.gate_sensor.weight"] = w[:, :d]
            out[f"{prefix}channel_fusion.gate_channel.weight"] = w[:, d:]
            out[f"{prefix}channel_fusion.gate_channel.bias"] = out.pop(f"{prefix}channel_fusion.gate.0.bias")
    return out


def merge_checkpoint(ckpt: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """best.pt dict -> one flat state dict (model keys, ``label_bank.*``, ``criterion.*``)."""
    if not isinstance(ckpt, Mapping) or "model_state_dict" not in ckpt:
        raise ValueError("a TSFM checkpoint is a dict with 'model_state_dict' (and 'label_bank_state_dict', "
                         f"'criterion_state_dict'); got keys {sorted(ckpt)[:10] if isinstance(ckpt, Mapping) else ckpt}")
    out = dict(reader.flatten_state_dict(ckpt["model_state_dict"]))
    for name, prefix in (("label_bank_state_dict", "label_bank."), ("criterion_state_dict", "criterion.")):
        for k, v in reader.flatten_state_dict(ckpt.get(name) or {}).items():
            out[prefix + k] = v
    return upgrade_legacy_gate({k: np.asarray(v) for k, v in out.items()})


def _leaves(tree: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            if isinstance(v, Mapping):
                out.update({kk: vv for kk, vv in _leaves(v).items() if kk not in out})
            else:
                out.setdefault(str(k), v)
    return out


def overrides_from_hyperparameters(hp: Mapping[str, Any], source: str) -> dict[str, str]:
    """The fields tensors cannot tell (head counts, per_patch_prediction) from a hyperparameters.json dict."""
    if "config" not in hp:
        raise ValueError(f"{source}: field 'config' is missing (expected {{'config': {{...}}, 'ablation': {{...}}}})")
    leaves = _leaves(hp["config"])
    return {k: str(leaves[k]) for k in NOT_IN_TENSORS if k in leaves}


def overrides_from_source(src: str) -> dict[str, str]:
    path = os.path.join(os.path.dirname(os.path.abspath(src)), "hyperparameters.json")
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        try:
            hp = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    return overrides_from_hyperparameters(hp, path)


# -- size inference -----------------------------------------------------------------------------------------------------
def infer_tsfm(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(SIZE_FIELDS))
    if unknown:
        raise ValueError(f"unknown --set key(s) {unknown}; known keys: {sorted(SIZE_FIELDS)}")
    shape = lambda k: R.shape_of(sd, k)
    cfg: dict[str, Any] = dataclasses.asdict(TSFMSizes())
    d = shape("encoder.mask_token")[-1]
    cfg["d_model"] = d
    cnn = "encoder.feature_extractor.cnn.projection.0.weight" in sd
    cfg["feature_extractor"] = "cnn" if cnn else "spectral_temporal"
    conv = "encoder.feature_extractor." + ("cnn.layers" if cnn else "temporal_layers")
    n_conv = R.count_indices(sd, key_regex(conv + ".{i}."))
    kernels = [shape(f"{conv}.{i}.branches.0.0.weight") for i in range(n_conv)]
    cfg["cnn_channels"] = tuple(k[0] for k in kernels)
    cfg["cnn_kernel_sizes"] = (kernels[0][2],)
    if not cnn:
        d_spec = shape("encoder.feature_extractor.spectral_norm.weight")[0]
        ratio = d_spec / d
        cfg["spectral_ratio"] = ratio if int(ratio * d) == d_spec else (d_spec + 0.5) / d
    cfg["num_temporal_layers"] = R.count_indices(sd, key_regex("encoder.transformer.transformer.layers.{i}."))
    if cfg["num_temporal_layers"]:  # with no layers the width is unused: --set or the default
        cfg["dim_feedforward"] = shape("encoder.transformer.transformer.layers.0.feed_forward.fc1.weight")[0]
    cfg["max_positions"] = shape("encoder.positional_encoding.temporal_encoding.pe")[0]
    cfg["use_channel_encoding"] = False
    cfg["channel_text_fusion"] = "channel_fusion.queries" in sd
    if cfg["channel_text_fusion"]:
        cfg["channel_text_queries"] = shape("channel_fusion.queries")[0]
        cfg["text_dim"] = shape("channel_fusion.text_proj.weight")[1] if "channel_fusion.text_proj.weight" in sd else d
    h = "semantic_head"
    cfg["d_model_fused"] = shape(f"{h}.cross_channel_fusion.input_proj.weight")[0]
    cfg["semantic_dim"] = shape(f"{h}.projection_head.mlp.4.weight")[0]
    cfg["num_semantic_temporal_layers"] = R.count_indices(sd, key_regex(f"{h}.temporal_attention.transformer.layers.{{i}}."))
    cfg["num_fusion_queries"] = shape(f"{h}.cross_channel_fusion.attention.queries")[0]
    cfg["num_pool_queries"] = shape(f"{h}.attention_pooling.attention.queries")[0]
    cfg["fusion_self_attention"] = f"{h}.cross_channel_fusion.attention.self_attn.in_proj_weight" in sd
    cfg["pool_self_attention"] = f"{h}.attention_pooling.attention.self_attn.in_proj_weight" in sd
    cfg["learnable_label_bank"] = "label_bank.pooling.queries" in sd
    if cfg["learnable_label_bank"]:
        q = shape("label_bank.pooling.queries")
        cfg["num_prototypes"] = q[0] if len(q) == 3 else 1
        cfg["label_bank_num_queries"] = q[-2]
        if q[-1] != cfg["semantic_dim"]:
            raise ValueError(f"label_bank.pooling.queries width {q[-1]} != semantic_dim {cfg['semantic_dim']}")
    cfg["siglip"] = "criterion.loss_fn.logit_bias" in sd
    cfg["num_heads"] = DEFAULT_HEADS.get(d, 0)
    for key, value in overrides.items():
        parsed = R.coerce_override(key, value, SIZE_FIELDS[key])
        unstored = key in NOT_IN_TENSORS or (key == "dim_feedforward" and not cfg["num_temporal_layers"])
        if not unstored and key in cfg and cfg[key] != parsed and key != "spectral_ratio":
            raise ValueError(f"--set {key}={value} contradicts the checkpoint, which gives {cfg[key]}")
        cfg[key] = parsed
    if "per_patch_prediction" not in overrides:
        raise ValueError("per_patch_prediction is not stored in the weights: put hyperparameters.json next to the "
                         "checkpoint or pass --set per_patch_prediction=true|false")
    if not cfg["num_heads"]:
        raise ValueError(f"cannot infer num_heads for d_model={d}; pass --set num_heads=N")
    return cfg


def sizes_of(cfg: Mapping[str, Any]) -> TSFMSizes:
    values = {k: cfg[k] for k in SIZE_FIELDS if k in cfg}
    values["cnn_channels"] = tuple(values["cnn_channels"])
    values["cnn_kernel_sizes"] = tuple(values["cnn_kernel_sizes"])
    return TSFMSizes(**values)


def build_tsfm(cfg: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return TSFM(sizes_of(cfg), rngs=rngs)


# -- eval-mode forward --------------------------------------------------------------------------------------------------
@nnx.jit
def _embed_and_score(model, patches, patch_mask, channel_mask, tokens, token_mask, label_tokens, label_mask):
    emb = model.embed_session(patches, patch_mask, channel_mask, tokens, token_mask)
    return emb, model.zero_shot_scores(emb, label_tokens, label_mask)


def forward_tsfm(model: TSFM, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw IMU -> patches (numpy, per-sample rate and patch seconds) -> session embedding and zero-shot scores."""
    model.eval()
    imu = np.asarray(inputs["imu"], np.float32)
    channel_mask = np.asarray(inputs["channel_mask"]).astype(bool)
    if channel_mask.shape != (imu.shape[0], imu.shape[2]):
        raise ValueError(f"channel_mask shape {channel_mask.shape} does not match imu [B, C] {(imu.shape[0], imu.shape[2])}")
    patches, patch_mask = tsfm_patches.preprocess_raw_batch(imu, inputs["attention_mask"], inputs["sampling_rate"],
                                                            inputs["patch_seconds"])
    f32 = lambda k: jnp.asarray(inputs[k], jnp.float32)
    emb, scores = _embed_and_score(model, jnp.asarray(patches), jnp.asarray(patch_mask), jnp.asarray(channel_mask),
                                   f32("channel_text_tokens"), jnp.asarray(inputs["channel_text_mask"], bool),
                                   f32("label_text_tokens"), jnp.asarray(inputs["label_text_mask"], bool))
    return {"emb_session": np.asarray(jax.device_get(emb)), "zs_scores": np.asarray(jax.device_get(scores))}


FAMILIES = (
    ModelFamily(
        name="tsfm",
        summary="TSFM Stage-2 SemanticAlignmentModel + label bank (best.pt; head counts from hyperparameters.json)",
        rule_table=tsfm_table, infer_config=infer_tsfm, build=build_tsfm, forward=forward_tsfm,
        inputs=(IOSpec("imu", "[B,T,C]", "raw IMU, zero-padded in time and channels"),
                IOSpec("attention_mask", "[B,T]", "valid time steps (a prefix)"),
                IOSpec("channel_mask", "[B,C]", "valid channels"),
                IOSpec("sampling_rate", "[B]", "Hz per sample"),
                IOSpec("patch_seconds", "[B]", "patch length in seconds per sample"),
                IOSpec("channel_text_tokens", "[B,C,S,text_dim]", "text-model token states of each channel description"),
                IOSpec("channel_text_mask", "[B,C,S]", "valid tokens of each channel description"),
                IOSpec("label_text_tokens", "[L,S,semantic_dim]", "text-model token states of each candidate label"),
                IOSpec("label_text_mask", "[L,S]", "valid label tokens")),
        outputs=(IOSpec("emb_session", "[B,D]", "L2-normalised session embedding (mean-pooled for per-patch models)"),
                 IOSpec("zs_scores", "[B,L]", "cosine scores against the label bank, max over prototypes")),
        select_state_dict=merge_checkpoint,
        overrides_from_source=overrides_from_source),
)
