"""Convert PyTorch checkpoints to Orbax NNX checkpoints, run them on upstream-layout inputs, export them back.

The library behind ``python -m imujax.convert`` and ``python -m imujax.compare``. An output directory holds
``params/`` (Orbax StandardCheckpointer, the nnx state as a pure dict: params and BatchNorm statistics) and
``imujax_convert.json`` (model name + the architecture config). ``load_converted(dir)`` reads both back. Models are
described by the `registry.ModelFamily` registry.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from imujax.bridges.torch import export as torch_export
from imujax.bridges.torch import reader
from imujax.bridges.torch import rules
from imujax.bridges.torch.registry import ModelFamily, get_family
from imujax.models.layers import LayerStack

CONFIG_FILE = "imujax_convert.json"
PARAMS_DIR = "params"
# 2: LayerStack params stored stacked ([depth, ...] under <stack>/block); 3: Audio-MAE too; 4: TSFM's encoder too
FORMAT_VERSION = 4
# The oldest format_version whose parameter layout a family still has (families not named: 2).
LAYOUT_SINCE = {"audio_mae": 3, "audio_mae_vit": 3, "himu_mae": 3, "tsfm": 4}


# -- NNX state <-> flat numpy ------------------------------------------------------------------------------------------
def abstract_model(family: ModelFamily, config: Mapping[str, Any]) -> nnx.Module:
    return nnx.eval_shape(lambda: family.build(config, nnx.Rngs(0)))


def flat_arrays(state: nnx.State) -> dict[tuple, Any]:
    """nnx state -> {path: array or ShapeDtypeStruct} (nnx.List indices are ints in the paths)."""
    return {tuple(path): var.get_value() for path, var in nnx.to_flat_state(state)}


def layer_stacks(model: nnx.Module) -> dict[tuple, int]:
    """Path -> depth of every `layers.LayerStack` in ``model`` (their params carry a leading layer axis)."""
    return {tuple(path): m.depth for path, m in nnx.iter_modules(model) if isinstance(m, LayerStack)}


def _stack_member(path: tuple, stacks: Mapping[tuple, int]) -> tuple | None:
    for prefix in stacks:
        n = len(prefix)
        if path[:n] == prefix and len(path) > n and path[n] == "block":
            return prefix
    return None


def per_layer_view(flat: Mapping[tuple, Any], stacks: Mapping[tuple, int]) -> dict[tuple, Any]:
    """Stacked params ``<stack>/block/rest`` [depth, ...] -> one ``<stack>/<i>/rest`` entry per layer: the layout of
    the upstream state_dicts (``blocks_a.3.attn.qkv.weight``), so bridge rules and reports name single layers."""
    out: dict[tuple, Any] = {}
    for path, value in flat.items():
        prefix = _stack_member(path, stacks)
        if prefix is None:
            out[path] = value
            continue
        rest = path[len(prefix) + 1:]
        for i in range(stacks[prefix]):
            out[prefix + (i,) + rest] = (jax.ShapeDtypeStruct(value.shape[1:], value.dtype)
                                         if isinstance(value, jax.ShapeDtypeStruct) else value[i])
    return out


def stacked_view(per_layer: Mapping[tuple, Any], template: Mapping[tuple, Any], stacks: Mapping[tuple, int]
                 ) -> dict[tuple, np.ndarray]:
    """Inverse of `per_layer_view` for the stacked paths of ``template`` (a model's `flat_arrays`)."""
    out: dict[tuple, np.ndarray] = {}
    for path in template:
        prefix = _stack_member(path, stacks)
        if prefix is None:
            out[path] = per_layer[path]
            continue
        rest = path[len(prefix) + 1:]
        if stacks[prefix] == 0:  # a depth-0 tower (legal upstream: the tokens pass through unchanged)
            out[path] = np.zeros(template[path].shape, template[path].dtype)
            continue
        out[path] = np.stack([np.asarray(per_layer[prefix + (i,) + rest]) for i in range(stacks[prefix])])
    return out


def bridge_arrays(model: nnx.Module) -> dict[tuple, Any]:
    """The model's state as the bridge sees it: `flat_arrays` in the per-layer view."""
    return per_layer_view(flat_arrays(nnx.state(model)), layer_stacks(model))


def _nested(flat: Mapping[tuple, Any]) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def model_with_params(family: ModelFamily, config: Mapping[str, Any], params: Mapping[tuple, np.ndarray]
                      ) -> nnx.Module:
    """Build the model and set ``params`` (per-layer view); anything not in ``params`` keeps its fresh
    initialisation."""
    model = abstract_model(family, config)
    if not set(bridge_arrays(model)) <= set(params):  # --nostrict: start from a real init so unset params make sense
        model = family.build(config, nnx.Rngs(0))
        params = {**{p: np.asarray(v) for p, v in bridge_arrays(model).items()}, **params}
    graphdef, state = nnx.split(model)
    stacked = stacked_view(params, flat_arrays(state), layer_stacks(model))
    nnx.replace_by_pure_dict(state, _nested({p: jax.numpy.asarray(a) for p, a in stacked.items()}))
    return nnx.merge(graphdef, state)


# -- convert / load / export -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Converted:
    name: str
    config: dict
    model: nnx.Module
    report: rules.LoadReport


def convert_state_dict(name: str, state_dict: Mapping[str, np.ndarray], overrides: Mapping[str, str] | None = None,
                       strict: bool = True) -> Converted:
    """torch state_dict (numpy arrays, upstream key names) -> NNX model of family ``name``."""
    family = get_family(name)
    stripped = rules.strip_prefixes(state_dict, family.strip_prefixes)
    config = family.infer_config(stripped, dict(overrides or {}))
    table = family.rule_table(config)
    target = bridge_arrays(abstract_model(family, config))
    params, report = rules.load_into(target, state_dict, table, strict=strict)
    return Converted(name, config, model_with_params(family, config, params), report)


def read_state_dict(name: str, path: str) -> Mapping[str, np.ndarray]:
    """Load a torch checkpoint without torch and pick the model weights out of it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return get_family(name).select_state_dict(reader.load_checkpoint(path))


def save_converted(out_dir: str, converted: Converted, source: str = "") -> None:
    out_dir = os.path.abspath(out_dir)
    params_dir = os.path.join(out_dir, PARAMS_DIR)
    if os.path.exists(params_dir):
        raise FileExistsError(f"{params_dir} already exists; remove it or choose another --out")
    os.makedirs(out_dir, exist_ok=True)
    import orbax.checkpoint as ocp  # heavy import, only needed when writing or reading checkpoints
    pure = nnx.state(converted.model).to_pure_dict()
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(params_dir, pure)
        checkpointer.wait_until_finished()
    meta = {"format_version": FORMAT_VERSION, "model": converted.name, "config": converted.config, "source": source}
    with open(os.path.join(out_dir, CONFIG_FILE), "w") as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)


def read_meta(ckpt_dir: str) -> dict:
    meta_path = os.path.join(ckpt_dir, CONFIG_FILE)
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{ckpt_dir} is not an imujax.convert output: {CONFIG_FILE} is missing")
    with open(meta_path) as fh:
        meta = json.load(fh)
    for field in ("model", "config"):
        if field not in meta:
            raise ValueError(f"{meta_path}: field {field!r} is missing")
    oldest = LAYOUT_SINCE.get(meta["model"], 2)
    if meta.get("format_version") not in range(oldest, FORMAT_VERSION + 1):
        versions = [str(v) for v in range(oldest, FORMAT_VERSION + 1)]
        readable = " or ".join(filter(None, (", ".join(versions[:-1]), versions[-1])))
        raise ValueError(f"{meta_path}: format_version {meta.get('format_version')!r}, this imujax reads "
                         f"{readable} for {meta['model']} (the parameter layout changed); convert the torch "
                         f"checkpoint again")
    return meta


def load_converted(ckpt_dir: str) -> tuple[str, dict, nnx.State]:
    """(model name, config dict, nnx state with params and BatchNorm statistics) of a convert output directory."""
    import orbax.checkpoint as ocp
    ckpt_dir = os.path.abspath(ckpt_dir)
    meta = read_meta(ckpt_dir)
    family = get_family(meta["model"])
    state = nnx.state(abstract_model(family, meta["config"]))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state.to_pure_dict())
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(os.path.join(ckpt_dir, PARAMS_DIR), target)
    nnx.replace_by_pure_dict(state, restored)
    return meta["model"], meta["config"], state


def load_converted_model(ckpt_dir: str) -> tuple[str, dict, nnx.Module]:
    name, config, state = load_converted(ckpt_dir)
    graphdef, _ = nnx.split(abstract_model(get_family(name), config))
    return name, config, nnx.merge(graphdef, state)


def export_state_dict(name: str, config: Mapping[str, Any], state: nnx.State) -> dict[str, np.ndarray]:
    """NNX state -> torch state_dict with upstream key names (exact inverse of the load)."""
    family = get_family(name)
    stacks = layer_stacks(abstract_model(family, config))
    flat = per_layer_view({p: np.asarray(v) for p, v in flat_arrays(state).items()}, stacks)
    return rules.export(flat, family.rule_table(config))


def export_converted(ckpt_dir: str, out_path: str) -> dict[str, np.ndarray]:
    name, config, state = load_converted(ckpt_dir)
    state_dict = export_state_dict(name, config, state)
    torch_export.write_torch_state_dict(out_path, state_dict)
    return state_dict


def run_forward(name: str, model: nnx.Module, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    family = get_family(name)
    missing = [s.name for s in family.inputs if s.name not in inputs and not s.optional]
    if missing:
        raise ValueError(f"inputs for {name} lack {missing}; expected: "
                         + ", ".join(f"{s.name} {s.shape}" for s in family.inputs if not s.optional))
    return family.forward(model, inputs)


def read_npz(path: str) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"inputs file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``--set key=value`` strings -> the overrides mapping the family size inference reads."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def convert_for_inputs(name: str, src: str, overrides: Mapping[str, str] | None = None, strict: bool = True,
                       inputs: Mapping[str, np.ndarray] | None = None) -> Converted:
    """Read and convert ``src`` in memory; sizes the checkpoint does not hold come from ``overrides``, files next to
    the checkpoint, then the ``inputs`` arrays' shapes."""
    family = get_family(name)
    overrides = dict(overrides or {})
    if family.overrides_from_source is not None:  # explicit --set wins over files next to the checkpoint
        overrides = {**family.overrides_from_source(src), **overrides}
    if inputs is not None and family.sizes_from_inputs is not None:
        # Position-table sizes are not in the checkpoint; unless given with --set they follow the inputs.
        overrides = {**{k: str(v) for k, v in family.sizes_from_inputs(inputs).items()}, **overrides}
    return convert_state_dict(name, read_state_dict(name, src), overrides, strict=strict)


def convert_file(name: str, src: str, out_dir: str, overrides: Mapping[str, str] | None = None, strict: bool = True,
                 inputs_path: str | None = None, outputs_path: str | None = None) -> Converted:
    """The CLI's convert path as a function: read, infer, load, save, and optionally run on ``inputs_path``."""
    inputs = read_npz(inputs_path) if inputs_path else None
    converted = convert_for_inputs(name, src, overrides, strict, inputs)
    save_converted(out_dir, converted, source=os.path.abspath(src))
    if inputs is not None:
        outputs = run_forward(name, converted.model, inputs)
        np.savez(outputs_path, **outputs)
    return converted
