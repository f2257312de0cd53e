"""Torch bridge for the EVI-MAE family: rule tables, size inference from checkpoint shapes, convert registrations.

Three upstream checkpoints (mf-zhang/IMU-Video-MAE@78e7666 src/models/evi_mae.py, revalexo/revalexo@6ca9000
train/models/evi_mae_fusion.py):
* ``evi_mae``: pretraining ``best_evi_model.pth``, a DataParallel state_dict (every key ``module.``), 626 keys.
* ``evi_mae_ft``: ``EVIMAEFT`` fine-tune state_dict (``module.``), multimodal mode, ``mlp_head.{0,1}``.
* ``revalexo_evi_mae_fusion``: RevalExo ``best_model.pt`` -> ``model_state_dict`` with ``encoder.`` / ``classifier.``.

Widths, depths, MLP ratio, qkv bias, graph sizes, class / horizon counts come from tensor shapes. Head counts,
spectrogram size, frame count and image size are not stored (position tables are rebuilt, not saved), so they come
from ``--set`` overrides, the shapes of ``--inputs`` arrays, or the released defaults (head_dim 64, 320x128, 16x224).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imujax.bridges.torch import rules as R
from imujax.convert import IOSpec, ModelFamily
from imujax.models.evi_mae import EVIMAE, EVIMAEFT, EVIMAESizes
from imujax.models.evi_mae_fusion import EVIMAEFusion

STRIP = ("module.", "_orig_mod.")
BLOCK_NORMS = ("norm1", "norm1_a", "norm1_v", "norm2", "norm2_a", "norm2_v")


# -- rule builders: a dotted torch template (``blocks_a.{i}.attn``) gives both the key regex and the NNX path -------
def _regex(template: str) -> str:
    return re.escape(template).replace(r"\{", "{").replace(r"\}", "}")


def _path(template: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in template.split("."))


def _rule(torch_key: str, nnx_key: str, transform: R.Transform = R.identity) -> R.Rule:
    return R.Rule(_regex(torch_key), _path(nnx_key), transform)


def linear(t: str, bias: bool = True) -> list[R.Rule]:
    out = [_rule(f"{t}.weight", f"{t}.kernel", R.transpose)]
    return out + ([_rule(f"{t}.bias", f"{t}.bias")] if bias else [])


def layer_norm(t: str) -> list[R.Rule]:
    return [_rule(f"{t}.weight", f"{t}.scale"), _rule(f"{t}.bias", f"{t}.bias")]


def batch_norm(t: str) -> list[R.Rule]:
    names = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
    return ([_rule(f"{t}.{k}", f"{t}.{v}") for k, v in names.items()]
            + [_rule(f"{t}.num_batches_tracked", f"{t}.count", R.astype(np.int32, np.int64))])


def patch_embed(t: str, patch_shape: tuple[int, ...]) -> list[R.Rule]:
    """Conv weight [O, C, k...] -> dense kernel [C*prod(k), O] (the model flattens patches in (c, k...) order)."""
    return [_rule(f"{t}.proj.weight", f"{t}.proj.kernel", R.flatten_patch(patch_shape)),
            _rule(f"{t}.proj.bias", f"{t}.proj.bias")]


def vit_block(t: str) -> list[R.Rule]:
    """timm-0.4.5 ``Block`` with the three LayerNorm pairs."""
    out = [r for n in BLOCK_NORMS for r in layer_norm(f"{t}.{n}")]
    return out + linear(f"{t}.attn.qkv") + linear(f"{t}.attn.proj") + linear(f"{t}.mlp.fc1") + linear(f"{t}.mlp.fc2")


def video_block(t: str) -> list[R.Rule]:
    """VideoMAE block: bias-free qkv plus separate q_bias / v_bias."""
    return (layer_norm(f"{t}.norm1") + layer_norm(f"{t}.norm2") + linear(f"{t}.attn.qkv", bias=False)
            + [_rule(f"{t}.attn.q_bias", f"{t}.attn.q_bias"), _rule(f"{t}.attn.v_bias", f"{t}.attn.v_bias")]
            + linear(f"{t}.attn.proj") + linear(f"{t}.mlp.fc1") + linear(f"{t}.mlp.fc2"))


def gin_mlp(t: str) -> list[R.Rule]:
    return linear(f"{t}.linears.{{j}}") + batch_norm(f"{t}.norms.{{j}}") + [
        _rule(f"{t}.activations.{{j}}.weight", f"{t}.activations.{{j}}.weight")]


def gin_eps(t: str) -> R.Rule:
    """GINConv ``eps`` buffer: the closed-form GIN assumes 0, so anything else is refused; written back on export."""
    return R.Rule(_regex(f"{t}.layers.{{i}}.eps"), None,
                  R.ignore(expect=np.zeros(1, np.float32), why="GIN eps must be 0 for the closed-form aggregation"))


def encoder_rules(cfg: Mapping[str, Any], p: str = "") -> list[R.Rule]:
    """``EVIMAEFT`` / ``EVI_MAE_Encoder`` encoder keys under torch/NNX prefix ``p`` (``""`` or ``"encoder."``)."""
    part_channels = cfg["imu_channels"] // cfg["imu_parts"]
    out = [_rule(f"{p}modality_a", f"{p}modality_a"), _rule(f"{p}modality_video", f"{p}modality_video")]
    out += patch_embed(f"{p}patch_embed_a", (part_channels, cfg["patch"], cfg["patch"]))
    out += patch_embed(f"{p}patch_embed_video", (3, cfg["tubelet"], cfg["patch"], cfg["patch"]))
    out += vit_block(f"{p}blocks_a.{{i}}") + video_block(f"{p}blocks_video.{{i}}") + vit_block(f"{p}blocks_u.{{i}}")
    out += layer_norm(f"{p}norm_a") + layer_norm(f"{p}norm_video") + layer_norm(f"{p}norm")
    if cfg.get("use_graph", True):
        g = f"{p}graph_encoder"
        out += [gin_eps(g)] + gin_mlp(f"{g}.layers.{{i}}.apply_func.mlp") + batch_norm(f"{g}.layers.{{i}}.apply_func.norm")
        out += [_rule(f"{g}.layers.{{i}}.apply_func.act.weight", f"{g}.layers.{{i}}.apply_func.act.weight")]
    return out


def evi_mae_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    out = encoder_rules(cfg)
    out += [_rule(k, k) for k in ("mask_token", "decoder_modality_a", "decoder_modality_video", "graph_enc_mask_token")]
    out += linear("decoder_embed") + vit_block("decoder_blocks.{i}") + layer_norm("decoder_norm")
    out += linear("decoder_pred_a") + linear("decoder_pred_video")
    out += [gin_eps("graph_decoder")] + gin_mlp("graph_decoder.layers.{i}.apply_func")
    out += linear("graph_encoder_to_decoder", bias=False)
    return R.RuleTable("evi_mae", out, strip_prefixes=STRIP, export_prefix="module.")


def evi_mae_ft_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    out = encoder_rules(cfg) + layer_norm("mlp_head.0") + linear("mlp_head.1")
    return R.RuleTable("evi_mae_ft", out, strip_prefixes=STRIP, export_prefix="module.")


def fusion_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    out = encoder_rules(cfg, "encoder.") + layer_norm("encoder.mlp_head.0") + linear("encoder.mlp_head.1")
    if cfg["shared_layers"]:
        out += linear("classifier.shared_net.0") + linear("classifier.heads.{i}")
    else:
        out += linear("classifier.heads.{i}.1")
    return R.RuleTable("revalexo_evi_mae_fusion", out, strip_prefixes=STRIP, export_prefix="")


# -- size inference -------------------------------------------------------------------------------------------------
SIZE_FIELDS = {f.name: f.type for f in dataclasses.fields(EVIMAESizes)}
POSITION_SIZES = ("imu_time", "imu_freq", "num_frames", "img_size")  # not stored: position tables are rebuilt


def _coerce(key: str, value: str, kind: Any) -> Any:
    kind = {"int": int, "float": float, "bool": bool}.get(kind, kind) if isinstance(kind, str) else kind
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--set {key}={value}: expected true/false")
        return value.lower() in ("true", "1")
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"--set {key}={value}: expected a {kind.__name__}") from None


class SizeInference:
    """Collects inferred values with the key they came from, so a contradicting ``--set`` names both."""

    def __init__(self, sd: Mapping[str, np.ndarray], overrides: Mapping[str, str], extra: Mapping[str, Any]):
        self.sd, self.overrides = sd, dict(overrides)
        self.kinds = {**SIZE_FIELDS, **{k: type(v) for k, v in extra.items()}}
        unknown = sorted(set(self.overrides) - set(self.kinds))
        if unknown:
            raise ValueError(f"unknown --set key(s) {unknown}; known keys: {sorted(self.kinds)}")
        self.cfg: dict[str, Any] = {**dataclasses.asdict(EVIMAESizes()), **extra}
        self.cfg.update({k: _coerce(k, v, self.kinds[k]) for k, v in self.overrides.items()})
        self.inferred: dict[str, str] = {}

    def shape(self, key: str) -> tuple[int, ...]:
        return R.shape_of(self.sd, key)

    def infer(self, name: str, value: Any, source: str) -> None:
        if name in self.overrides and self.cfg[name] != value:
            raise ValueError(f"--set {name}={self.overrides[name]} contradicts the checkpoint: {source} gives {value}")
        if name in self.inferred and self.cfg[name] != value:
            raise ValueError(f"inconsistent checkpoint: {self.inferred[name]} gives {name}={self.cfg[name]} but {source} "
                             f"gives {value}")
        self.cfg[name], self.inferred[name] = value, source

    def finish(self) -> dict[str, Any]:
        for dim, heads in (("imu_dim", "imu_heads"), ("video_dim", "video_heads"), ("decoder_dim", "decoder_heads")):
            if heads not in self.overrides and heads not in self.inferred:  # not stored: the released models use 64-d heads
                if self.cfg[dim] % 64:
                    raise ValueError(f"cannot infer {heads}: {dim}={self.cfg[dim]} is not a multiple of the released head "
                                     f"width 64; pass --set {heads}=N")
                self.cfg[heads] = self.cfg[dim] // 64
        return self.cfg


def _infer_encoder(inf: SizeInference, p: str) -> None:
    sd = inf.sd
    d_a, c, kh, kw = inf.shape(f"{p}patch_embed_a.proj.weight")
    if kh != kw:
        raise ValueError(f"{p}patch_embed_a.proj.weight has a non-square kernel {kh}x{kw}; EVI-MAE uses square patches")
    inf.infer("imu_dim", d_a, f"{p}patch_embed_a.proj.weight")
    inf.infer("patch", kh, f"{p}patch_embed_a.proj.weight")
    d_v, _, tubelet, _, _ = inf.shape(f"{p}patch_embed_video.proj.weight")
    inf.infer("video_dim", d_v, f"{p}patch_embed_video.proj.weight")
    inf.infer("tubelet", tubelet, f"{p}patch_embed_video.proj.weight")
    inf.infer("imu_depth", R.count_indices(sd, _regex(f"{p}blocks_a.{{i}}.")), f"{p}blocks_a.*")
    inf.infer("video_depth", R.count_indices(sd, _regex(f"{p}blocks_video.{{i}}.")), f"{p}blocks_video.*")
    hidden = inf.shape(f"{p}blocks_u.0.mlp.fc1.weight")[0]
    inf.infer("mlp_ratio", hidden / d_v, f"{p}blocks_u.0.mlp.fc1.weight")
    inf.infer("qkv_bias", f"{p}blocks_u.0.attn.qkv.bias" in sd, f"{p}blocks_u.0.attn.qkv.bias presence")
    use_graph = any(k.startswith(f"{p}graph_encoder.") for k in sd)
    inf.infer("use_graph", use_graph, f"{p}graph_encoder.* presence")
    if use_graph:
        key = f"{p}graph_encoder.layers.0.apply_func.mlp.linears.0.weight"
        inf.infer("graph_hidden", inf.shape(key)[0], key)
        inf.infer("graph_layers", R.count_indices(sd, _regex(f"{p}graph_encoder.layers.{{i}}.")),
                  f"{p}graph_encoder.layers.*")
    inf.infer("imu_channels", c * inf.cfg["imu_parts"], f"{p}patch_embed_a.proj.weight (x{inf.cfg['imu_parts']} parts)")


def infer_evi_mae(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
    inf = SizeInference(sd, overrides, {"use_graph": True})
    _infer_encoder(inf, "")
    d_dec = inf.shape("decoder_embed.weight")[0]
    inf.infer("decoder_dim", d_dec, "decoder_embed.weight")
    inf.infer("decoder_depth", R.count_indices(sd, _regex("decoder_blocks.{i}.")), "decoder_blocks.*")
    pred = inf.shape("decoder_pred_a.weight")[0]
    inf.infer("imu_channels", pred // inf.cfg["patch"] ** 2, "decoder_pred_a.weight")
    return inf.finish()


def infer_evi_mae_ft(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
    inf = SizeInference(sd, overrides, {"use_graph": True, "num_classes": 0})
    _infer_encoder(inf, "")
    if "mlp_head.1.weight" in sd:
        inf.infer("num_classes", inf.shape("mlp_head.1.weight")[0], "mlp_head.1.weight")
    cfg = inf.finish()
    if cfg["num_classes"] <= 0:
        raise ValueError("the checkpoint has no mlp_head.1.weight (a pretraining checkpoint?); pass --set num_classes=N")
    return cfg


def infer_fusion(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
    inf = SizeInference(sd, overrides, {"use_graph": True, "num_classes": 0, "num_horizons": 6, "feature_dim": 768,
                                        "shared_layers": True})
    _infer_encoder(inf, "encoder.")
    inf.infer("feature_dim", inf.shape("encoder.mlp_head.1.weight")[0], "encoder.mlp_head.1.weight")
    shared = "classifier.shared_net.0.weight" in sd
    inf.infer("shared_layers", shared, "classifier.shared_net.0.weight presence")
    inf.infer("num_horizons", R.count_indices(sd, _regex("classifier.heads.{i}.")), "classifier.heads.*")
    head = "classifier.heads.0.weight" if shared else "classifier.heads.0.1.weight"
    inf.infer("num_classes", inf.shape(head)[0], head)
    return inf.finish()


def sizes_of(cfg: Mapping[str, Any]) -> EVIMAESizes:
    return EVIMAESizes(**{k: cfg[k] for k in SIZE_FIELDS})


def sizes_from_inputs(inputs: Mapping[str, np.ndarray], imu_layout: str) -> dict[str, int]:
    """Position-table sizes read off input arrays: imu [B,12,T,F] ('time_freq') or [B,12,F,T] ('freq_time')."""
    out: dict[str, int] = {}
    if "imu" in inputs and np.ndim(inputs["imu"]) == 4:
        x, y = np.shape(inputs["imu"])[2:]
        out.update(imu_time=x, imu_freq=y) if imu_layout == "time_freq" else out.update(imu_time=y, imu_freq=x)
    if "video" in inputs and np.ndim(inputs["video"]) == 5:
        _, _, frames, h, w = np.shape(inputs["video"])
        out["num_frames"] = frames
        if h == w:
            out["img_size"] = h
    return out


# -- models and eval-mode forwards for imujax.convert ----------------------------------------------------------------
def build_evi_mae(cfg: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return EVIMAE(sizes_of(cfg), rngs=rngs)


def build_evi_mae_ft(cfg: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return EVIMAEFT(sizes_of(cfg), cfg["num_classes"], use_graph=cfg["use_graph"], rngs=rngs)


def build_fusion(cfg: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return EVIMAEFusion(sizes_of(cfg), cfg["num_classes"], num_horizons=cfg["num_horizons"],
                        feature_dim=cfg["feature_dim"], shared_layers=cfg["shared_layers"], use_graph=cfg["use_graph"],
                        rngs=rngs)


@nnx.jit
def _forward_evi_mae(model, imu, video):
    a, v = model.encode_unmasked(imu, video)
    return {"latent_imu": a, "latent_video": v}


@nnx.jit
def _forward_evi_mae_ft(model, imu, video):
    return {"logits": model(imu, video)}


@nnx.jit
def _forward_fusion(model, imu, video):
    logits, features = model(imu, video)
    return {"logits_per_horizon": logits, "encoder_features": features}


def _eval_forward(fn):
    def run(model: nnx.Module, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        model.eval()
        out = fn(model, jnp.asarray(inputs["imu"], jnp.float32), jnp.asarray(inputs["video"], jnp.float32))
        return {k: np.asarray(jax.device_get(v)) for k, v in out.items()}
    return run


VIDEO = IOSpec("video", "[B,3,16,H,W]", "ImageNet-normalised clip (C, T, H, W), H = W = img_size")
FAMILIES = (
    ModelFamily(
        name="evi_mae", summary="EVI-MAE pretraining model (best_evi_model.pth, DataParallel 'module.' keys)",
        rule_table=evi_mae_table, infer_config=infer_evi_mae, build=build_evi_mae,
        forward=_eval_forward(_forward_evi_mae),
        inputs=(IOSpec("imu", "[B,12,320,128]", "4 parts x 3 axes dB spectrograms, (time, freq)"), VIDEO),
        outputs=(IOSpec("latent_imu", "[B,L_a,D_v]", "unmasked IMU encoder output after 768->384, natural order"),
                 IOSpec("latent_video", "[B,L_v,D_v]", "unmasked video encoder output, natural (t,h,w) order")),
        sizes_from_inputs=lambda x: sizes_from_inputs(x, "time_freq")),
    ModelFamily(
        name="evi_mae_ft", summary="EVIMAEFT fine-tune model, multimodal mode (DataParallel 'module.' keys)",
        rule_table=evi_mae_ft_table, infer_config=infer_evi_mae_ft, build=build_evi_mae_ft,
        forward=_eval_forward(_forward_evi_mae_ft),
        inputs=(IOSpec("imu", "[B,12,320,128]", "4 parts x 3 axes dB spectrograms, (time, freq)"), VIDEO),
        outputs=(IOSpec("logits", "[B,n_class]", "mlp_head output (eval mode)"),),
        sizes_from_inputs=lambda x: sizes_from_inputs(x, "time_freq")),
    ModelFamily(
        name="revalexo_evi_mae_fusion",
        summary="RevalExo EVI_MAE_Fusion (best_model.pt -> model_state_dict, 'encoder.'/'classifier.' keys)",
        rule_table=fusion_table, infer_config=infer_fusion, build=build_fusion,
        forward=_eval_forward(_forward_fusion),
        inputs=(IOSpec("imu", "[B,12,128,320]", "natural-log spectrograms in RevalExo's (freq, time) layout"), VIDEO),
        outputs=(IOSpec("logits_per_horizon", "[H,B,C]", "one logit set per prediction horizon (eval mode)"),
                 IOSpec("encoder_features", "[B,feature_dim]", "encoder mlp_head output fed to the classifier")),
        sizes_from_inputs=lambda x: sizes_from_inputs(x, "freq_time")),
)
