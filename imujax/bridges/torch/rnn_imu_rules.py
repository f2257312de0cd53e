"""Torch bridge for the recurrent IMU encoders: PRIMUS, IMU2CLIP and RevalExo DeepConvLSTM.

Checkpoints (facebookresearch/imu2clip@6353031 lib/train_modules.py, Nokia-Bell-Labs/pretrained-imu-encoders@562e142
downstream_evaluation/classification_downstream_egoexo4d.py, revalexo/revalexo@6ca9000
pretrain/contrastive/src/models/deepconvlstm.py):
* ``primus``: Lightning ``best_model.ckpt`` -> ``state_dict``; the encoder is every ``imu_encoder.*`` key (the frozen
  CLIP towers ``text_encoder.*`` / ``video_encoder.*`` are dropped), the two learned temperatures are read from
  ``mmcl_loss.temperature`` / ``ssl_loss.temperature`` into the converted config. A bare encoder state_dict
  (``backbone.*``, ``ssl_head.*``, ``mmcl_head.*``) works too.
* ``imu2clip``: ``*_src_encoder.pt`` (bare ``net.*``) or the Lightning layout (``imu_encoder.net.*`` plus
  ``loss.temperature`` at HEAD). Block 3 max-pools (``--set pool_type=adaptive`` for PRIMUS's single-head variant,
  whose keys are identical).
* ``deepconvlstm``: ``imu_encoder_best.pt`` (bare module state_dict: ``conv1..4``, ``lstm``, ``classifier.*``,
  ``feature_projector``), or a Lightning ``.ckpt`` with ``imu_encoder.`` keys.

Sizes come from tensor shapes; the only size not stored is DeepConvLSTM's window, taken from ``--inputs`` or 120.
Layouts: conv1d [O, I, K] -> [K, I, O]; conv2d [O, I, k, 1] -> [k, 1, I, O]; Linear and RNN weights transposed
(RNN gate order and the separate ih / hh biases kept, see `models/rnn_imu.py`).
"""

from __future__ import annotations

import collections
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imujax.bridges.torch import reader
from imujax.bridges.torch import rules as R
from imujax.bridges.torch.registry import IOSpec, ModelFamily
from imujax.bridges.torch.rules import linear, rule
from imujax.models.rnn_imu import DeepConvLSTM, MW2StackRNNPooling, MW2StackRNNPoolingMultihead

STRIP = ("module.", "_orig_mod.")
PRIMUS_TEMPERATURES = {"mmcl_temperature": "mmcl_loss.temperature", "ssl_temperature": "ssl_loss.temperature"}
IMU2CLIP_TEMPERATURES = {"temperature": "loss.temperature"}


def _temperature_rules(keys: Mapping[str, str]) -> list[R.Rule]:
    """Consume the Lightning loss temperatures on purpose (their values go to the config, not the encoder)."""
    scalar = lambda x: np.ndim(x) == 0 or np.size(x) == 1  # noqa: E731
    return [R.Rule(re.escape(key), None, R.ignore(check=scalar, why="a temperature is one number"))
            for key in keys.values()]


def mw2_rules(root: str) -> list[R.Rule]:
    """The six-entry MW2 Sequential under ``root`` (``net`` or ``backbone``)."""
    out = [rule(f"{root}.0.weight", f"{root}.0.scale"), rule(f"{root}.0.bias", f"{root}.0.bias")]
    out += [rule(f"{root}.{{b}}.net.0.weight", f"{root}.{{b}}.net.0.kernel", R.conv1d)]
    out += [rule(f"{root}.4.weight", f"{root}.4.scale"), rule(f"{root}.4.bias", f"{root}.4.bias")]
    out += [rule(f"{root}.5.weight_ih_l0", f"{root}.5.weight_ih_l0", R.transpose),
            rule(f"{root}.5.weight_hh_l0", f"{root}.5.weight_hh_l0", R.transpose),
            rule(f"{root}.5.bias_ih_l0", f"{root}.5.bias_ih_l0"),
            rule(f"{root}.5.bias_hh_l0", f"{root}.5.bias_hh_l0")]
    return out


def primus_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    out = mw2_rules("backbone") + linear("ssl_head") + linear("mmcl_head") + _temperature_rules(PRIMUS_TEMPERATURES)
    return R.RuleTable("primus", out, strip_prefixes=STRIP)


def imu2clip_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    return R.RuleTable("imu2clip", mw2_rules("net") + _temperature_rules(IMU2CLIP_TEMPERATURES), strip_prefixes=STRIP)


def deepconvlstm_table(cfg: Mapping[str, Any]) -> R.RuleTable:
    out = [rule("conv{k}.weight", "conv{k}.kernel", R.conv2d), rule("conv{k}.bias", "conv{k}.bias")]
    for name in ("weight_ih", "weight_hh"):
        out.append(rule(f"lstm.{name}_l{{layer}}", f"lstm.{name}_l{{layer}}", R.transpose))
    for name in ("bias_ih", "bias_hh"):
        out.append(rule(f"lstm.{name}_l{{layer}}", f"lstm.{name}_l{{layer}}"))
    if cfg["num_horizons"] > 1 and cfg["shared_classifier_layers"]:
        out += linear("classifier.shared_net.0") + linear("classifier.heads.{h}")
    else:
        out += linear("classifier.heads.{h}.1")
    if cfg["feature_dim"] != cfg["lstm_units"]:
        out += linear("feature_projector")
    return R.RuleTable("deepconvlstm", out, strip_prefixes=STRIP)


# -- picking the encoder out of the checkpoint ----------------------------------------------------------------------
def encoder_state_dict(temperature_keys: Mapping[str, str]):
    """``select_state_dict``: the ``imu_encoder.*`` tensors (prefix removed) plus the temperature keys when the file
    is a system checkpoint; the state_dict unchanged when it is a bare encoder."""

    def select(obj: Any) -> "collections.OrderedDict[str, np.ndarray]":
        sd = reader.find_state_dict(obj)
        short = R.strip_prefixes(sd, STRIP)
        prefix = "imu_encoder."
        if not any(k.startswith(prefix) for k in short):
            return short
        out = collections.OrderedDict((k[len(prefix):], v) for k, v in short.items() if k.startswith(prefix))
        out.update((k, short[k]) for k in temperature_keys.values() if k in short)
        return out

    return select


# -- size inference ------------------------------------------------------------------------------------------------
class _Inference:
    def __init__(self, sd: Mapping[str, np.ndarray], overrides: Mapping[str, str], defaults: Mapping[str, Any]):
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise ValueError(f"unknown --set key(s) {unknown}; known keys: {sorted(defaults)}")
        self.sd, self.overrides = sd, dict(overrides)
        self.cfg = dict(defaults)
        kinds = {k: str if v is None else type(v) for k, v in defaults.items()}  # a None default takes any string
        self.cfg.update({k: R.coerce_override(k, v, kinds[k]) for k, v in overrides.items()})

    def shape(self, key: str) -> tuple[int, ...]:
        return R.shape_of(self.sd, key)

    def infer(self, name: str, value: Any, source: str) -> None:
        if name in self.overrides and self.cfg[name] != value:
            raise ValueError(f"--set {name}={self.overrides[name]} contradicts the checkpoint: {source} gives {value}")
        self.cfg[name] = value


def _temperatures(sd: Mapping[str, np.ndarray], keys: Mapping[str, str]) -> dict[str, float | None]:
    return {name: (float(np.asarray(sd[key], np.float64).reshape(-1)[0]) if key in sd else None)
            for name, key in keys.items()}


def _infer_mw2(inf: _Inference, root: str) -> None:
    out_ch, in_ch, k1 = inf.shape(f"{root}.1.net.0.weight")
    inf.infer("input_dim", out_ch, f"{root}.1.net.0.weight")
    inf.infer("in_channels", in_ch, f"{root}.1.net.0.weight")
    k2, k3 = inf.shape(f"{root}.2.net.0.weight")[2], inf.shape(f"{root}.3.net.0.weight")[2]
    inf.infer("kernel_sizes", [k1, k2, k3], f"{root}.{{1,2,3}}.net.0.weight")
    hidden = inf.shape(f"{root}.5.weight_hh_l0")[1]
    inf.infer("size_embeddings", hidden, f"{root}.5.weight_hh_l0")
    gru_in = inf.shape(f"{root}.5.weight_ih_l0")[1]
    if gru_in != out_ch:
        raise ValueError(f"{root}.5.weight_ih_l0 has input size {gru_in} but the conv blocks output {out_ch} channels; "
                         f"the MW2 GRU's input size equals the pooled length and the conv width (input_dim)")


MW2_DEFAULTS = dict(input_dim=32, size_embeddings=512, in_channels=6, kernel_sizes=[10, 5, 5], dilation=2, max_pool=3,
                    input_norm_groups=2, feature_norm_groups=4)


def infer_primus(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
    inf = _Inference(sd, overrides, {k: v for k, v in MW2_DEFAULTS.items() if k != "kernel_sizes"}
                     | {"kernel_sizes": None})
    _infer_mw2(inf, "backbone")
    return inf.cfg | _temperatures(sd, PRIMUS_TEMPERATURES)


def infer_imu2clip(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
    inf = _Inference(sd, overrides, {k: v for k, v in MW2_DEFAULTS.items() if k != "kernel_sizes"}
                     | {"kernel_sizes": None, "pool_type": "max"})
    _infer_mw2(inf, "net")
    if inf.cfg["pool_type"] not in ("max", "adaptive"):
        raise ValueError(f"--set pool_type={inf.cfg['pool_type']}: expected max or adaptive")
    return inf.cfg | _temperatures(sd, IMU2CLIP_TEMPERATURES)


def infer_deepconvlstm(sd: Mapping[str, np.ndarray], overrides: Mapping[str, str]) -> dict[str, Any]:
    defaults = dict(channels=42, num_classes=11, window_size=120, conv_kernels=64, conv_kernel_size=11,
                    lstm_units=1024, lstm_layers=1, feature_dim=256, num_horizons=1, shared_classifier_layers=True)
    inf = _Inference(sd, overrides, defaults)
    kernels, _, k, _ = inf.shape("conv1.weight")
    inf.infer("conv_kernels", kernels, "conv1.weight")
    inf.infer("conv_kernel_size", k, "conv1.weight")
    four_h, lstm_in = inf.shape("lstm.weight_ih_l0")
    if lstm_in % kernels:
        raise ValueError(f"lstm.weight_ih_l0 input size {lstm_in} is not a multiple of the {kernels} conv kernels")
    inf.infer("channels", lstm_in // kernels, "lstm.weight_ih_l0 / conv1.weight")
    inf.infer("lstm_units", four_h // 4, "lstm.weight_ih_l0")
    inf.infer("lstm_layers", R.count_indices(sd, r"lstm\.weight_ih_l{i}$"), "lstm.weight_ih_l*")
    shared = "classifier.shared_net.0.weight" in sd
    horizons = R.count_indices(sd, r"classifier\.heads\.{i}\.")
    inf.infer("num_horizons", horizons, "classifier.heads.*")
    if horizons > 1:
        inf.infer("shared_classifier_layers", shared, "classifier.shared_net.0.weight presence")
    head = "classifier.heads.0.weight" if shared else "classifier.heads.0.1.weight"
    inf.infer("num_classes", inf.shape(head)[0], head)
    projector = "feature_projector.weight" in sd
    inf.infer("feature_dim", inf.shape("feature_projector.weight")[0] if projector else inf.cfg["lstm_units"],
              "feature_projector.weight" if projector else "no feature_projector (Identity)")
    return inf.cfg


# -- models and eval-mode forwards ----------------------------------------------------------------------------------
def _mw2_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("in_channels", "dilation", "max_pool", "input_norm_groups", "feature_norm_groups")
    return {k: cfg[k] for k in keys} | {"kernel_sizes": tuple(cfg["kernel_sizes"])}


def build_primus(cfg: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return MW2StackRNNPoolingMultihead(cfg["input_dim"], cfg["size_embeddings"], **_mw2_kwargs(cfg), rngs=rngs)


def build_imu2clip(cfg: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return MW2StackRNNPooling(cfg["input_dim"], cfg["size_embeddings"], pool_type=cfg["pool_type"],
                              **_mw2_kwargs(cfg), rngs=rngs)


def build_deepconvlstm(cfg: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    keys = ("channels", "num_classes", "window_size", "conv_kernels", "conv_kernel_size", "lstm_units", "lstm_layers",
            "feature_dim", "num_horizons", "shared_classifier_layers")
    return DeepConvLSTM(**{k: cfg[k] for k in keys}, rngs=rngs)


@nnx.jit
def _forward_primus(model, imu):
    return model(imu)


@nnx.jit
def _forward_imu2clip(model, imu):
    return {"emb": model(imu)}


@nnx.jit
def _forward_deepconvlstm(model, imu):
    return {"features": model.encode_features(imu)}


def _eval_forward(fn):
    def run(model: nnx.Module, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        model.eval()
        out = fn(model, jnp.asarray(inputs["imu"], jnp.float32))
        return {k: np.asarray(jax.device_get(v)) for k, v in out.items()}
    return run


def _window_from_inputs(inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
    imu = inputs.get("imu")
    return {"window_size": int(np.shape(imu)[1])} if imu is not None and np.ndim(imu) == 3 else {}


FAMILIES = (
    ModelFamily(
        name="primus",
        summary="PRIMUS MW2StackRNNPoolingMultihead (Lightning best_model.ckpt: imu_encoder.* + the two temperatures)",
        rule_table=primus_table, infer_config=infer_primus, build=build_primus, forward=_eval_forward(_forward_primus),
        inputs=(IOSpec("imu", "[N,6,T]", "raw acc xyz + gyro xyz, T >= 123 (250 = 5 s at 50 Hz upstream)"),),
        outputs=(IOSpec("emb", "[N,512]", "final GRU hidden state"),
                 IOSpec("ssl", "[N,512]", "ssl_head(emb)"),
                 IOSpec("mmcl", "[N,512]", "mmcl_head(emb), the multimodal (CLIP-space) embedding")),
        select_state_dict=encoder_state_dict(PRIMUS_TEMPERATURES)),
    ModelFamily(
        name="imu2clip",
        summary="IMU2CLIP MW2StackRNNPooling (*_src_encoder.pt, or Lightning .ckpt with imu_encoder.* keys)",
        rule_table=imu2clip_table, infer_config=infer_imu2clip, build=build_imu2clip,
        forward=_eval_forward(_forward_imu2clip),
        inputs=(IOSpec("imu", "[N,6,1000]", "raw acc xyz + gyro xyz, 5 s at 200 Hz (978 <= T <= 1004)"),),
        outputs=(IOSpec("emb", "[N,512]", "final GRU hidden state, compared with CLIP embeddings"),),
        select_state_dict=encoder_state_dict(IMU2CLIP_TEMPERATURES)),
    ModelFamily(
        name="deepconvlstm",
        summary="RevalExo DeepConvLSTM (imu_encoder_best.pt, plain module state_dict)",
        rule_table=deepconvlstm_table, infer_config=infer_deepconvlstm, build=build_deepconvlstm,
        forward=_eval_forward(_forward_deepconvlstm),
        inputs=(IOSpec("imu", "[B,T,42]", "raw windows (time, channel): 7 sensors acc xyz then gyro xyz, T=120"),),
        outputs=(IOSpec("features", "[B,256]", "encode_features: last LSTM output through feature_projector"),),
        sizes_from_inputs=_window_from_inputs, select_state_dict=encoder_state_dict({})),
)
