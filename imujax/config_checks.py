"""Config values that cannot work, refused before anything is built or compiled (one error naming every bad key)."""

from __future__ import annotations

import math

import ml_collections


class ConfigError(ValueError):
    """A config value that cannot work."""


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return None
        node = node[part]
    return node


# jax.default_matmul_precision values a run may ask for (config.matmul_precision)
MATMUL_PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")

# key -> (test, what it must be); keys absent from a config are not checked.
RULES = {
    "batch_size": (lambda v: v > 0, "> 0"),
    "matmul_precision": (lambda v: v in MATMUL_PRECISIONS, f"one of {', '.join(MATMUL_PRECISIONS)}"),
    "total_steps": (lambda v: v >= 0, ">= 0 (0: num_epochs epochs)"),
    "num_epochs": (lambda v: v >= 0, ">= 0"),
    "log_every_steps": (lambda v: v > 0, "> 0"),
    "eval_every_steps": (lambda v: v >= 0, ">= 0 (0: off)"),
    "eval_every_epochs": (lambda v: v >= 0, ">= 0 (0: off)"),
    "checkpoint.every_steps": (lambda v: v > 0, "> 0"),
    "checkpoint.keep": (lambda v: v > 0, "> 0"),
    "optimizer.learning_rate": (lambda v: math.isfinite(v) and v >= 0, "finite and >= 0"),
    "optimizer.warmup_steps": (lambda v: v >= 0, ">= 0"),
    "optimizer.grad_clip_norm": (lambda v: math.isfinite(v) and v >= 0, "finite and >= 0 (0: off)"),
    "data.worker_count": (lambda v: v >= 0, ">= 0"),
    "data.read_threads": (lambda v: v > 0, "> 0"),
    "data.prefetch_batches": (lambda v: v >= 0, ">= 0"),
    "mesh.data": (lambda v: v == -1 or v > 0, "-1 (the rest of the devices) or > 0"),
    "mesh.fsdp": (lambda v: v == -1 or v > 0, "-1 or > 0"),
    "mesh.tensor": (lambda v: v == -1 or v > 0, "-1 or > 0"),
}


def _keeps(tokens: int, ratio, key: str, tokens_from: str) -> list[str]:
    """The problem if MAE masking at `ratio` keeps no token of `tokens` (none visible makes the loss NaN)."""
    from imujax.models.masking import num_kept
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        return [f"config.{key}={ratio!r}: must be in [0, 1)"]
    if num_kept(tokens, ratio) >= 1:
        return []
    most = 1 - 1 / tokens
    return [f"config.{key}={ratio!r} keeps no token of the {tokens} that {tokens_from} give; lower it to at most "
            f"{math.floor(most * 1e4) / 1e4} or make the input larger"]


def _mask_problems(config) -> list[str]:
    """Masked-autoencoder ratios that keep no visible token (checked against the config's own token counts)."""
    system, model, loss = _get(config, "system"), _get(config, "model"), _get(config, "loss")
    if model is None or loss is None:
        return []
    sizes = {k: v for k, v in model.items() if k != "dtype"}
    try:
        if system == "evi_mae":
            from imujax.models.evi_mae import EVIMAESizes
            s = EVIMAESizes(**sizes)
            return (_keeps(s.imu_tokens, loss.get("imu_mask_ratio"), "loss.imu_mask_ratio",
                           "model.imu_time x model.imu_freq / model.patch**2")
                    + _keeps(s.video_tokens, loss.get("video_mask_ratio"), "loss.video_mask_ratio",
                             "model.num_frames / model.tubelet x (model.img_size / model.patch)**2"))
        if system == "himu_mae":  # Audio-MAE and HIMU-MAE
            from imujax.models.audio_mae import AudioMAESizes
            s = AudioMAESizes(**{k: tuple(v) if k in ("window", "shift") else v for k, v in sizes.items()})
            rows, cols = s.grid
            if loss.get("mask_2d"):
                return (_keeps(rows, loss.get("mask_row_ratio"), "loss.mask_row_ratio",
                               "the rows model.img_h / model.patch")
                        + _keeps(cols, loss.get("mask_col_ratio"), "loss.mask_col_ratio",
                                 "the columns model.img_w / model.patch"))
            return _keeps(rows * cols, loss.get("mask_ratio"), "loss.mask_ratio",
                          "model.img_h x model.img_w / model.patch**2")
    except (TypeError, ValueError):  # sizes the model refuses: building it names the problem
        return []
    if system == "tsfm_stage1":  # masked patches are replaced, not removed: the ratio is a probability
        ratio = loss.get("mask_ratio")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            return [f"config.loss.mask_ratio={ratio!r}: must be in [0, 1]"]
    return []


def check(config: ml_collections.ConfigDict, mode: str = "train") -> None:
    problems = []
    for key, (ok, must) in RULES.items():
        value = _get(config, key)
        if value is None:
            continue
        try:
            good = not isinstance(value, bool) and bool(ok(value))
        except TypeError:
            good = False
        if not good:
            problems.append(f"config.{key}={value!r}: must be {must}")
    if mode == "train":
        problems += _mask_problems(config)
    if mode == "train" and not problems and not _get(config, "total_steps") and not _get(config, "num_epochs"):
        problems.append("config.total_steps=0 and config.num_epochs=0: nothing to train")
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
