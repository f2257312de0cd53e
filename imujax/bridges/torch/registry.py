"""The model families the torch bridge converts: one `ModelFamily` per upstream checkpoint kind.

A family module (e.g. ``imujax/bridges/torch/evi_mae_rules.py``) defines ``FAMILIES``, a tuple of `ModelFamily`: a rule
table builder, size inference from the checkpoint, a model factory, an eval-mode forward and the input/output
description (`IOSpec`, the stable convert API). It is listed in ``FAMILY_MODULES`` and imported on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from flax import nnx

from imujax.bridges.torch import reader
from imujax.bridges.torch import rules

FAMILY_MODULES = ("imujax.bridges.torch.evi_mae_rules", "imujax.bridges.torch.tsfm_rules",
                  "imujax.bridges.torch.audio_mae_rules", "imujax.bridges.torch.rnn_imu_rules")


@dataclasses.dataclass(frozen=True)
class IOSpec:
    """One named array of the convert API, in the upstream PyTorch layout."""
    name: str
    shape: str
    description: str
    optional: bool = False  # an input that may be left out (e.g. recorded masking draws); outputs: produced only then


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """Everything the bridge needs to handle one upstream checkpoint kind.

    rule_table(config) -> RuleTable; infer_config(stripped state_dict, overrides as strings) -> JSON-able config;
    build(config, rngs) -> nnx.Module; forward(model, inputs) -> outputs (numpy, eval mode).
    ``sizes_from_inputs`` reads sizes that the checkpoint cannot hold (position-table sizes) off the input arrays;
    ``select_state_dict`` picks the weights out of the loaded checkpoint object.
    """
    name: str
    summary: str
    rule_table: Callable[[Mapping[str, Any]], rules.RuleTable]
    infer_config: Callable[[Mapping[str, np.ndarray], Mapping[str, str]], dict]
    build: Callable[[Mapping[str, Any], nnx.Rngs], nnx.Module]
    forward: Callable[[nnx.Module, Mapping[str, np.ndarray]], dict]
    inputs: Sequence[IOSpec]
    outputs: Sequence[IOSpec]
    strip_prefixes: Sequence[str] = ("module.", "_orig_mod.")
    sizes_from_inputs: Callable[[Mapping[str, np.ndarray]], dict] | None = None
    select_state_dict: Callable[[Any], Mapping[str, np.ndarray]] = reader.find_state_dict
    # Architecture fields stored next to the checkpoint (e.g. TSFM's hyperparameters.json): src path -> overrides.
    overrides_from_source: Callable[[str], dict] | None = None


_REGISTRY: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> None:
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise ValueError(f"model family {family.name!r} is registered twice")
    _REGISTRY[family.name] = family


def families() -> dict[str, ModelFamily]:
    """All registered families (imports the family modules on first use)."""
    for module in FAMILY_MODULES:
        for family in importlib.import_module(module).FAMILIES:
            if family.name not in _REGISTRY:
                register(family)
    return dict(_REGISTRY)


def get_family(name: str) -> ModelFamily:
    known = families()
    if name not in known:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(known)}")
    return known[name]


def describe(name: str) -> str:
    """The input/output table of one model (the stable convert API)."""
    family = get_family(name)
    rows = [("inputs", s) for s in family.inputs] + [("outputs", s) for s in family.outputs]
    width = max(len(s.name) for _, s in rows)
    shape_width = max(len(s.shape) for _, s in rows)
    lines = [f"{family.name}: {family.summary}"]
    for kind, spec in rows:
        note = "(optional) " if spec.optional and kind == "inputs" else ""
        lines.append(f"  {kind:<8} {spec.name:<{width}}  {spec.shape:<{shape_width}}  {note}{spec.description}")
    return "\n".join(lines)
