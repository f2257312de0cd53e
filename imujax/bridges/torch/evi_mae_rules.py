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
from typing import Any, Mapping

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imujax.bridges.torch import rules as R
from imujax.bridges.torch.registry import IOSpec, ModelFamily
from imujax.bridges.torch.rules import batch_norm, key_regex, layer_norm, linear, patch_embed, rule
from imujax.models.evi_mae import EVIMAE, EVIMAEFT, EVIMAESizes
from imujax.models.evi_mae_fusion import EVIMAEFusion
from imujax.objectives import graph, infonce, mae

STRIP = ("module.", "_orig_mod.")
BLOCK_NORMS = ("norm1", "norm1_a", "norm1_v", "norm2", "norm2_a", "norm2_v")


def vit_block(t: str) -> list[R.Rule]:
    """timm-0.4.5 ``Block`` with the three LayerNorm pairs."""
    out = [r for n in BLOCK_NORMS for r in layer_norm(f"{t}.{n}")]
    return out + linear(f"{t}.attn.qkv") + linear(f"{t}.attn.proj") + linear(f"{t}.mlp.fc1") + linear(f"{t}.mlp.fc2")


def video_block(t: str) -> list[R.Rule]:
    """VideoMAE block: bias-free qkv plus separate q_bias / v_bias."""
    return (layer_norm(f"{t}.norm1") + layer_norm(f"{t}.norm2") + linear(f"{t}.attn.qkv", bias=False)
            + [rule(f"{t}.attn.q_bias", f"{t}.attn.q_bias"), rule(f"{t}.attn.v_bias", f"{t}.attn.v_bias")]
            + linear(f"{t}.attn.proj") + linear(f"{t}.mlp.fc1") + linear(f"{t}.mlp.fc2"))


def gin_mlp(t: str) -> list[R.Rule]:
    return linear(f"{t}.linears.{{j}}") + batch_norm(f"{t}.norms.{{j}}") + [
        rule(f"{t}.activations.{{j}}.weight", f"{t}.activations.{{j}}.weight")]


def gin_eps(t: str) -> R.Rule:
    """GINConv ``eps`` buffer: the closed-form GIN assumes 0, so anything else is refused; written back on export."""
    return R.Rule(key_regex(f"{t}.layers.{{i}}.eps"), None,
                  R.ignore(expect=np.zeros(1, np.float32), why="GIN eps must be 0 for the closed-form aggregation"))


def encoder_rules(cfg: Mapping[str, Any], p: str = "") -> list[R.Rule]:
    """``EVIMAEFT`` / ``EVI_MAE_Encoder`` encoder keys under torch/NNX prefix ``p`` (``""`` or ``"encoder."``)."""
    part_channels = cfg["imu_channels"] // cfg["imu_parts"]
    out = [rule(f"{p}modality_a", f"{p}modality_a"), rule(f"{p}modality_video", f"{p}modality_video")]
    out += patch_embed(f"{p}patch_embed_a", (part_channels, cfg["patch"], cfg["patch"]))
    out += patch_embed(f"{p}patch_embed_video", (3, cfg["tubelet"], cfg["patch"], cfg["patch"]))
    out += vit_block(f"{p}blocks_a.{{i}}") + video_block(f"{p}blocks_video.{{i}}") + vit_block(f"{p}blocks_u.{{i}}")
    out += layer_norm(f"{p}norm_a") + layer_norm(f"{p}norm_video") + layer_norm(f"{p}norm")
    if cfg.get("use_graph", True):
        g = f"{p}graph_encoder"
        out += [gin_eps(g)] + gin_mlp(f"{g}.layers.{{i}}.apply_func.mlp") + batch_norm(f"{g}.layers.{{i}}.apply_func.norm")
        out += [rule(f"{g}.layers.{{i}}.apply_func.act.weight", f"{g}.layers.{{i}}.apply_func.act.weight")]
    return out


def evi_mae_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    out = encoder_rules(cfg)
    out += [rule(k, k) for k in ("mask_token", "decoder_modality_a", "decoder_modality_video", "graph_enc_mask_token")]
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


class SizeInference:
    """Collects inferred values with the key they came from, so a contradicting ``--set`` names both."""

    def __init__(self, sd: Mapping[str, np.ndarray], overrides: Mapping[str, str], extra: Mapping[str, Any]):
        self.sd, self.overrides = sd, dict(overrides)
        self.kinds = {**SIZE_FIELDS, **{k: type(v) for k, v in extra.items()}}
        unknown = sorted(set(self.overrides) - set(self.kinds))
        if unknown:
            raise ValueError(f"unknown --set key(s) {unknown}; known keys: {sorted(self.kinds)}")
        self.cfg: dict[str, Any] = {**dataclasses.asdict(EVIMAESizes()), **extra}
        self.cfg.update({k: R.coerce_override(k, v, self.kinds[k]) for k, v in self.overrides.items()})
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
    inf.infer("imu_depth", R.count_indices(sd, key_regex(f"{p}blocks_a.{{i}}.")), f"{p}blocks_a.*")
    inf.infer("video_depth", R.count_indices(sd, key_regex(f"{p}blocks_video.{{i}}.")), f"{p}blocks_video.*")
    hidden = inf.shape(f"{p}blocks_u.0.mlp.fc1.weight")[0]
    inf.infer("mlp_ratio", hidden / d_v, f"{p}blocks_u.0.mlp.fc1.weight")
    inf.infer("qkv_bias", f"{p}blocks_u.0.attn.qkv.bias" in sd, f"{p}blocks_u.0.attn.qkv.bias presence")
    use_graph = any(k.startswith(f"{p}graph_encoder.") for k in sd)
    inf.infer("use_graph", use_graph, f"{p}graph_encoder.* presence")
    if use_graph:
        key = f"{p}graph_encoder.layers.0.apply_func.mlp.linears.0.weight"
        inf.infer("graph_hidden", inf.shape(key)[0], key)
        inf.infer("graph_layers", R.count_indices(sd, key_regex(f"{p}graph_encoder.layers.{{i}}.")),
                  f"{p}graph_encoder.layers.*")
    inf.infer("imu_channels", c * inf.cfg["imu_parts"], f"{p}patch_embed_a.proj.weight (x{inf.cfg['imu_parts']} parts)")


def infer_evi_mae(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
    inf = SizeInference(sd, overrides, {"use_graph": True})
    _infer_encoder(inf, "")
    d_dec = inf.shape("decoder_embed.weight")[0]
    inf.infer("decoder_dim", d_dec, "decoder_embed.weight")
    inf.infer("decoder_depth", R.count_indices(sd, key_regex("decoder_blocks.{i}.")), "decoder_blocks.*")
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
    inf.infer("num_horizons", R.count_indices(sd, key_regex("classifier.heads.{i}.")), "classifier.heads.*")
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


# -- evi_mae: unmasked latents always; the released pretraining forward given its recorded random draws ------------
# Upstream: mf-zhang/IMU-Video-MAE@78e7666dbb53059d0b8ba6fc2a91bad8078ef84b src/models/evi_mae.py, EVIMAE.forward:
# loss = mae_w * (mae_a + mae_v) + contrast_w * nce + 10 * g_loss, returned as (loss, loss_mae, loss_mae_a,
# loss_mae_v, loss_c, mask_a, mask_v, c_acc, loss_g); forward_encoder draws randperm(4B), then rand(B, L_a), rand(B, L_v).
PRETRAIN_DRAWS = ("node_perm", "imu_noise", "video_noise")
PRETRAIN_SCALARS = {"imu_mask_ratio": 0.75, "video_mask_ratio": 0.9, "mae_loss_weight": 1.0,
                    "contrast_loss_weight": 0.01, "norm_pix_loss": 1.0}
GRAPH_LOSS_WEIGHT = 10.0  # hard-coded upstream
CONTRAST_TEMPERATURE = 0.05  # hard-coded upstream (forward_contrastive)


@nnx.jit
def _forward_evi_mae(model, imu, video, node_perm):
    out = model.encode_unmasked_joint(imu, video, node_perm)
    result = {"latent_imu": out["latent_imu"], "latent_video": out["latent_video"],
              "joint_latent_unmasked": out["joint"]}
    if node_perm is not None:
        result["loss_g_unmasked"] = graph.sce_loss(out["graph_recon"], out["graph_nodes"], out["graph_masked"])
    return result


@nnx.jit(static_argnames=("imu_mask_ratio", "video_mask_ratio", "norm_pix"))
def _pretrain_evi_mae(model, imu, video, masks, imu_mask_ratio: float, video_mask_ratio: float, norm_pix: bool):
    out = model(imu, video, masks=masks, imu_mask_ratio=imu_mask_ratio, video_mask_ratio=video_mask_ratio)
    nce, c_acc = infonce.evi_mae_info_nce(out["contrast_imu"], out["contrast_video"], CONTRAST_TEMPERATURE)
    # imujax predicts IMU patch vectors in (channel, y, x) order; upstream's decoder_pred_a emits (y, x, channel)
    pred_imu = einops.rearrange(out["pred_imu"], "... (c k) -> ... (k c)", c=model.sizes.imu_channels)
    return {"loss_mae_imu": mae.masked_mse(out["pred_imu"], out["target_imu"], out["mask_imu"], norm_pix=norm_pix),
            "loss_mae_video": mae.masked_mse(out["pred_video"], out["target_video"], out["mask_video"],
                                             norm_pix=norm_pix),
            "nce": nce, "c_acc": c_acc,
            "loss_g": graph.sce_loss(out["graph_recon"], out["graph_nodes"], out["graph_masked"]),
            "mask_imu": out["mask_imu"], "mask_video": out["mask_video"], "joint_latent": out["joint"],
            "contrast_imu": out["contrast_tokens_imu"], "contrast_video": out["contrast_tokens_video"],
            "pred_imu": pred_imu, "pred_video": out["pred_video"]}


def _scalar(inputs: Mapping[str, np.ndarray], key: str) -> float:
    value = np.asarray(inputs.get(key, PRETRAIN_SCALARS[key]))
    if value.size != 1 or not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
        raise ValueError(f"{key} must be one number, got an array of shape {value.shape} and dtype {value.dtype}")
    return float(value.reshape(()))


def _node_perm(inputs: Mapping[str, np.ndarray], key: str, num_nodes: int) -> jax.Array:
    perm = np.asarray(inputs[key])
    if (perm.shape != (num_nodes,) or not np.issubdtype(perm.dtype, np.integer)
            or not np.array_equal(np.sort(perm), np.arange(num_nodes))):
        raise ValueError(f"{key} must be a permutation of range(4*B) = range({num_nodes}) (upstream's "
                         f"torch.randperm over the batch's graph nodes, node = 4*b + part), got shape {perm.shape} "
                         f"dtype {perm.dtype}")
    return jnp.asarray(perm, jnp.int32)


def _noise(inputs: Mapping[str, np.ndarray], key: str, shape: tuple[int, int]) -> jax.Array:
    noise = np.asarray(inputs[key])
    if noise.shape != shape or not np.issubdtype(noise.dtype, np.floating):
        raise ValueError(f"{key} must be float noise of shape [B, L] = {list(shape)} (upstream's torch.rand draw), "
                         f"got shape {noise.shape} dtype {noise.dtype}")
    return jnp.asarray(noise, jnp.float32)


def forward_evi_mae(model: nnx.Module, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Eval mode. Always: unmasked latents. With ``node_perm`` (or ``node_perm_unmasked``): the graph loss of the
    unmasked call. With all three draws: the released ``forward``'s outputs (losses, masks, latents, predictions)."""
    model.eval()
    imu, video = jnp.asarray(inputs["imu"], jnp.float32), jnp.asarray(inputs["video"], jnp.float32)
    batch, s = imu.shape[0], model.sizes
    num_nodes = batch * s.imu_parts
    perm_key = next((k for k in ("node_perm_unmasked", "node_perm") if k in inputs), None)
    unmasked_perm = None if perm_key is None else _node_perm(inputs, perm_key, num_nodes)
    given = [k for k in PRETRAIN_DRAWS if k in inputs]
    if given and len(given) < len(PRETRAIN_DRAWS):
        raise ValueError(f"the pretraining forward needs all of {list(PRETRAIN_DRAWS)}; got only {given}")
    if given:  # everything is checked before anything runs
        masks = {"node_perm": _node_perm(inputs, "node_perm", num_nodes),
                 "imu_noise": _noise(inputs, "imu_noise", (batch, s.imu_tokens)),
                 "video_noise": _noise(inputs, "video_noise", (batch, s.video_tokens))}
        c = {k: _scalar(inputs, k) for k in PRETRAIN_SCALARS}
        for key in ("imu_mask_ratio", "video_mask_ratio"):
            tokens = s.imu_tokens if key == "imu_mask_ratio" else s.video_tokens
            if not 0 <= c[key] < 1 or int(tokens * (1 - c[key])) < 1:
                raise ValueError(f"{key}={c[key]} keeps no token of {tokens}; it must leave at least one visible")
    out = _forward_evi_mae(model, imu, video, unmasked_perm)
    if given:
        terms = jax.device_get(_pretrain_evi_mae(model, imu, video, masks, c["imu_mask_ratio"], c["video_mask_ratio"],
                                                 bool(c["norm_pix_loss"])))
        f32 = np.float32
        nce, c_acc, loss_g = f32(terms.pop("nce")), f32(terms.pop("c_acc")), f32(terms["loss_g"])
        if c["mae_loss_weight"] == 0:  # upstream skips the decoder and reports zeros
            terms["loss_mae_imu"] = terms["loss_mae_video"] = f32(0)
        if c["contrast_loss_weight"] == 0:
            nce = c_acc = f32(0)
        loss_mae = f32(c["mae_loss_weight"]) * (f32(terms["loss_mae_imu"]) + f32(terms["loss_mae_video"]))
        loss_c = f32(c["contrast_loss_weight"]) * nce
        out.update(terms, loss=loss_mae + loss_c + loss_g * f32(GRAPH_LOSS_WEIGHT), loss_mae=loss_mae, loss_c=loss_c,
                   c_acc=c_acc)
    return {k: np.asarray(jax.device_get(v)) for k, v in out.items()}


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
        forward=forward_evi_mae,
        inputs=(IOSpec("imu", "[B,12,320,128]", "4 parts x 3 axes dB spectrograms, (time, freq)"), VIDEO,
                IOSpec("node_perm", "[4B] int", "graph node permutation (torch.randperm, node = 4*b + part)", True),
                IOSpec("imu_noise", "[B,L_a]", "IMU masking noise (torch.rand); with node_perm and video_noise "
                       "runs the released pretraining forward", True),
                IOSpec("video_noise", "[B,L_v]", "video masking noise (torch.rand)", True),
                IOSpec("imu_mask_ratio", "[]", "default 0.75", True),
                IOSpec("video_mask_ratio", "[]", "default 0.9", True),
                IOSpec("mae_loss_weight", "[]", "default 1.0 (the release scripts)", True),
                IOSpec("contrast_loss_weight", "[]", "default 0.01", True),
                IOSpec("norm_pix_loss", "[]", "default 1 (true)", True),
                IOSpec("node_perm_unmasked", "[4B] int", "node permutation of the unmasked call (default node_perm)",
                       True)),
        outputs=(IOSpec("latent_imu", "[B,L_a,D_v]", "unmasked IMU encoder output after 768->384, natural order"),
                 IOSpec("latent_video", "[B,L_v,D_v]", "unmasked video encoder output, natural (t,h,w) order"),
                 IOSpec("joint_latent_unmasked", "[B,L_a+L_v,D_v]", "forward_encoder with ratios 0, 0: blocks_u + "
                        "norm over all tokens, natural order (IMU then video)"),
                 IOSpec("loss_g_unmasked", "[]", "with node_perm(_unmasked): that call's graph SCE loss", True),
                 IOSpec("loss", "[]", "with the three draws: total = loss_mae + loss_c + 10 * loss_g", True),
                 IOSpec("loss_mae", "[]", "mae_loss_weight * (loss_mae_imu + loss_mae_video)", True),
                 IOSpec("loss_mae_imu", "[]", "norm-pix MSE over masked IMU tokens (loss_mae_a)", True),
                 IOSpec("loss_mae_video", "[]", "norm-pix MSE over masked video tokens (loss_mae_v)", True),
                 IOSpec("loss_c", "[]", "contrast_loss_weight * InfoNCE (video -> IMU, tau 0.05)", True),
                 IOSpec("c_acc", "[]", "contrastive accuracy", True),
                 IOSpec("loss_g", "[]", "graph MAE SCE loss (unweighted)", True),
                 IOSpec("mask_imu", "[B,L_a]", "1 = removed (mask_a)", True),
                 IOSpec("mask_video", "[B,L_v]", "1 = removed (mask_v)", True),
                 IOSpec("joint_latent", "[B,K_a+K_v,D_v]", "forward_encoder's x: visible tokens after blocks_u + "
                        "norm, ids_shuffle order", True),
                 IOSpec("contrast_imu", "[B,K_a,D_v]", "forward_encoder's ca (blocks_u 'a' + norm_a)", True),
                 IOSpec("contrast_video", "[B,K_v,D_v]", "forward_encoder's cv (blocks_u 'v' + norm_video)", True),
                 IOSpec("pred_imu", "[B,L_a,p*p*12]", "forward_decoder's pred_a, upstream (y, x, channel) vectors",
                        True),
                 IOSpec("pred_video", "[B,L_v,2*p*p*3]", "forward_decoder's pred_v", True)),
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
