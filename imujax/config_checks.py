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


# key -> (test, what it must be); keys absent from a config are not checked.
RULES = {
    "batch_size": (lambda v: v > 0, "> 0"),
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
    if mode == "train" and not problems and not _get(config, "total_steps") and not _get(config, "num_epochs"):
        problems.append("config.total_steps=0 and config.num_epochs=0: nothing to train")
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
