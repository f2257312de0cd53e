"""Convert PyTorch checkpoints to Orbax NNX checkpoints, run them on upstream-layout inputs, export them back.

    python -m imujax.convert --model=evi_mae_ft --src=best_evi_model.pth --out=/tmp/ft \\
        [--set video_heads=6 ...] [--inputs=in.npz --outputs=out.npz] [--nostrict]
    python -m imujax.convert --describe --model=revalexo_evi_mae_fusion
    python -m imujax.convert --export --src=/tmp/ft --out=/tmp/ft.pth

The output directory holds ``params/`` (Orbax StandardCheckpointer, the nnx state as a pure dict: params and
BatchNorm statistics) and ``imujax_convert.json`` (model name + the architecture config). ``load_converted(dir)``
reads both back.

Model families register here through ``ModelFamily``: a rule table builder, size inference from the checkpoint, a
model factory, an eval-mode forward and the input/output description. A family module (e.g.
``imujax/bridges/torch/evi_mae_rules.py``) defines ``FAMILIES`` and is listed in ``FAMILY_MODULES``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from imujax.bridges.torch import export as torch_export
from imujax.bridges.torch import reader
from imujax.bridges.torch import rules
from imujax.models.layers import LayerStack

FAMILY_MODULES = ("imujax.bridges.torch.evi_mae_rules", "imujax.bridges.torch.tsfm_rules",
                  "imujax.bridges.torch.audio_mae_rules", "imujax.bridges.torch.rnn_imu_rules")
CONFIG_FILE = "imujax_convert.json"
PARAMS_DIR = "params"
FORMAT_VERSION = 2  # 2: LayerStack params stored stacked ([depth, ...] under <stack>/block)


@dataclasses.dataclass(frozen=True)
class IOSpec:
    """One named array of the convert API, in the upstream PyTorch layout."""
    name: str
    shape: str
    description: str
    optional: bool = False  # an input that may be left out (e.g. recorded masking draws); outputs: produced only then


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """Everything ``imujax.convert`` needs to handle one upstream checkpoint kind.

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


def _read_meta(ckpt_dir: str) -> dict:
    meta_path = os.path.join(ckpt_dir, CONFIG_FILE)
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{ckpt_dir} is not an imujax.convert output: {CONFIG_FILE} is missing")
    with open(meta_path) as fh:
        meta = json.load(fh)
    for field in ("model", "config"):
        if field not in meta:
            raise ValueError(f"{meta_path}: field {field!r} is missing")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: format_version {meta.get('format_version')!r}, this imujax reads "
                         f"{FORMAT_VERSION} (the parameter layout changed); convert the torch checkpoint again")
    return meta


def load_converted(ckpt_dir: str) -> tuple[str, dict, nnx.State]:
    """(model name, config dict, nnx state with params and BatchNorm statistics) of a convert output directory."""
    import orbax.checkpoint as ocp
    ckpt_dir = os.path.abspath(ckpt_dir)
    meta = _read_meta(ckpt_dir)
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


def _read_npz(path: str) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"inputs file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _parse_overrides(items: Sequence[str]) -> dict[str, str]:
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
    inputs = _read_npz(inputs_path) if inputs_path else None
    converted = convert_for_inputs(name, src, overrides, strict, inputs)
    save_converted(out_dir, converted, source=os.path.abspath(src))
    if inputs is not None:
        outputs = run_forward(name, converted.model, inputs)
        np.savez(outputs_path, **outputs)
    return converted


# -- command line ------------------------------------------------------------------------------------------------------
def _define_flags():
    from absl import flags
    flags.DEFINE_string("model", None, "model family: " + ", ".join(sorted(families())))
    flags.DEFINE_string("src", None, "torch checkpoint (convert) or convert output directory (--export)")
    flags.DEFINE_string("out", None, "output directory (convert) or .pth file (--export)")
    flags.DEFINE_multi_string("set", [], "architecture override key=value (sizes the checkpoint cannot tell)")
    flags.DEFINE_string("inputs", None, ".npz with the model's inputs in upstream PyTorch layouts")
    flags.DEFINE_string("outputs", None, ".npz to write the eval-mode outputs to (with --inputs)")
    flags.DEFINE_bool("describe", False, "print the input/output table of --model (all models without --model)")
    flags.DEFINE_bool("strict", True, "fail unless every torch key is consumed and every NNX param is set")
    flags.DEFINE_bool("export", False, "write a convert output directory back to a torch state_dict")
    return flags.FLAGS


def _main(argv: Sequence[str], flags) -> int:
    if len(argv) > 1:
        raise ValueError(f"unexpected positional arguments {list(argv[1:])}")
    if flags.describe:
        names = [flags.model] if flags.model else sorted(families())
        print("\n\n".join(describe(n) for n in names))
        return 0
    if not flags.src or not flags.out:
        raise ValueError("--src and --out are required")
    if flags.export:
        name = _read_meta(os.path.abspath(flags.src))["model"]
        if flags.model and flags.model != name:
            raise ValueError(f"--model={flags.model} but {flags.src} holds a {name} checkpoint")
        state_dict = export_converted(flags.src, flags.out)
        print(f"wrote {len(state_dict)} tensors ({name}) to {flags.out}")
        return 0
    if not flags.model:
        raise ValueError("--model is required; known models: " + ", ".join(sorted(families())))
    if bool(flags.inputs) != bool(flags.outputs):
        raise ValueError("--inputs and --outputs go together")
    converted = convert_file(flags.model, flags.src, flags.out, _parse_overrides(flags.set), flags.strict,
                             flags.inputs, flags.outputs)
    report = converted.report
    print(f"{converted.name}: {len(report.loaded)} params loaded, {len(report.ignored)} constant buffers checked")
    if not report.ok:
        print(report.format())
    print("config: " + json.dumps(converted.config, sort_keys=True))
    print(f"wrote {os.path.abspath(flags.out)}" + (f" and {flags.outputs}" if flags.outputs else ""))
    return 0


def main() -> None:
    from absl import app
    flags = _define_flags()

    def run(argv):
        try:
            sys.exit(_main(argv, flags))
        except (ValueError, KeyError, FileNotFoundError, FileExistsError, reader.CheckpointFormatError,
                reader.UnsafeCheckpointError) as err:
            print(f"error: {err}", file=sys.stderr)  # one line per reader error: they carry no newlines
            sys.exit(1)

    app.run(run)


if __name__ == "__main__":
    # `python -m` runs a copy of this file as __main__; the importable module owns the registry.
    from imujax import convert as _convert
    _convert.main()
