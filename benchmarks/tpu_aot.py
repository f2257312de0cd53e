"""Every system's train step compiled ahead of time for real TPU topologies, on this CPU machine (no TPU needed).

`libtpu` (`pip install "jax[tpu]==<jax version>"`) provides a compile-only TPU backend: `jax.experimental.topologies`
describes a pod of any size and XLA:TPU compiles for it, so memory per chip, collectives and XLA's cost model come
from the program that would run there (as MaxText's train_compile.py and T5X's precompile.py do).

  python benchmarks/tpu_aot.py                                   # the whole grid -> benchmarks/tpu_aot.json, resumable
  python benchmarks/tpu_aot.py --systems evi_mae --topologies v5p-8  # one cell
  python benchmarks/tpu_aot.py --table                           # the README table from the JSON

Each cell (system x topology) is one subprocess: the loop's own `train.make_train_step` (loss, grad, the config's optax
optimizer, state donated) at the full released sizes, bf16 compute with fp32 master weights where the model has a
`dtype` setting (EVI-MAE family, Audio-MAE/HIMU-MAE; the others compute in fp32), `--per_chip_batch` examples per
chip. Mesh: FSDP over the chips of a slice, 'data' over slices (DCN), i.e. `config.mesh = dict(data=slices, fsdp=-1)`
(see `pod_mesh`). Figures per chip:
  params / opt / args / temp / out  bytes of the parameter and optimizer shards, and XLA's memory analysis
  fits          args + temp + out - aliased (donated) <= 80% of HBM (20% headroom)
  compile s     wall seconds of lower + compile, and the CPU seconds of the process over the same span (all threads;
                on a shared machine the wall time grows with the load, the CPU time much less)
  all-gather / reduce-scatter / all-reduce  bytes per step in the compiled HLO, loop bodies times their trip count
  flops         of one step per chip: XLA's cost analysis of the step lowered with every `lax.scan` unrolled (the
                analysis counts a loop body once), divided by the chips
  cost s        XLA:TPU's cost-model step time (`optimal_seconds`), scaled by unrolled / compiled FLOPs when the
                compiled program has rolled loops (the model counts a loop body once too); MFU = flops / (cost s x peak)
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
OUT = os.path.join(REPO, "benchmarks", "tpu_aot.json")
HLO_DIR = os.path.join(REPO, "benchmarks", "tpu_aot_hlo")  # each cell's compiled HLO (git-ignored), for --reparse
GIB = 1024 ** 3

# chip: (HBM GiB, bf16 peak TFLOP/s per chip, topology name per chip count)
CHIPS = {
    "v5p": (95, 459.0, {8: "v5p:2x2x2", 64: "v5p:4x4x4", 256: "v5p:4x8x8"}),
    "v5e": (16, 197.0, {8: "v5e:2x4", 64: "v5e:8x8", 256: "v5e:16x16"}),
    "v6e": (32, 918.0, {8: "v6e:2x4", 64: "v6e:8x8", 256: "v6e:16x16"}),
}
# name -> (chip, chips per slice, slices)
# In the order the grid runs them: the pod sizes first.
TOPOLOGIES = {"v5p-256": ("v5p", 256, 1), "v5p-256x2": ("v5p", 256, 2), "v5e-256": ("v5e", 256, 1),
              "v6e-256": ("v6e", 256, 1), "v5p-8": ("v5p", 8, 1), "v5p-64": ("v5p", 64, 1), "v5e-8": ("v5e", 8, 1),
              "v6e-8": ("v6e", 8, 1), "v5e-64": ("v5e", 64, 1), "v6e-64": ("v6e", 64, 1)}

# name -> (config, per-chip batch): the released config; per-chip batch = released global batch / 8 (at least 1), so
# 8 chips train at the released batch.
SYSTEMS = {
    "evi_mae": ("configs/evi_mae.py", 2),
    "revalexo_fusion": ("configs/revalexo_loso.py", 1),
    "primus": ("configs/primus.py", 8),
    "imu2clip": ("configs/imu2clip.py", 16),
    "deepconvlstm": ("configs/revalexo_contrastive.py", 8),
    "audio_mae": ("configs/audio_mae.py", 64),
    "tsfm_stage1": ("configs/tsfm_stage1.py", 4),
    "tsfm_stage2": ("configs/tsfm_stage2.py", 64),
    "himu_mae": ("configs/himu_mae.py", 32),
    "evimaeft": ("configs/evi_mae_finetune.py", 2),
}
COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")


def pod_mesh(config, slices: int) -> None:
    """The mesh for a pod: FSDP over the chips of a slice (ICI), data parallel over slices (DCN)."""
    config.mesh.update(dict(data=slices, fsdp=-1, tensor=1))


# -- per-example input shapes of each system's training batch ------------------------------------------------------
def example_shapes(name: str, config, system) -> dict[str, tuple[tuple[int, ...], str]]:
    """{key: (per-example shape, dtype)} of the batch the system's `preprocess` produces for training."""
    m = config.model
    if name in ("evi_mae", "evimaeft"):
        s = system.sizes
        out = {"imu": ((s.imu_tokens, s.imu_channels * s.patch ** 2), "float32"),
               "video": ((s.video_tokens, 3 * s.tubelet * s.patch ** 2), "uint8"), "label": ((), "int32")}
        if name == "evimaeft":
            out["targets"] = ((config.finetune.num_classes,), "float32")
        return out
    if name == "revalexo_fusion":
        s, h = system.sizes, len(config.finetune.horizons)
        return {"imu": ((s.imu_channels, s.imu_freq, s.imu_time), "float32"),
                "video": ((3, s.num_frames, s.img_size, s.img_size), "float32"), "label": ((), "int32"),
                "labels": ((h,), "int32"), "transitions": ((h,), "bool")}
    if name in ("primus", "imu2clip"):
        d, e = config.data, m.imu_encoder.size_embeddings
        out = {"imu": ((len(d.imu_channels), d.imu_length), "float32"), "label": ((), "int32")}
        if name == "primus":
            out["imu_aug"] = out["imu"]
        if "video" in system.targets:
            out["video"] = (((m.video.num_frames, m.video.img_size, m.video.img_size, 3), "float32")
                            if m.video_tower == "vit" else ((e,), "float32"))
        if "text" in system.targets:
            out["text"] = ((e,), "float32")
        return out
    if name == "deepconvlstm":
        d = config.data
        video = (((m.video.num_frames, m.video.img_size, m.video.img_size, 3), "float32") if m.video_tower == "vit"
                 else ((m.video_feature_dim,), "float32"))
        return {"imu": ((d.imu_length, len(d.imu_channels)), "float32"), "video": video, "label": ((), "int32")}
    if name in ("audio_mae", "himu_mae"):
        out = {"spec": ((m.in_chans, m.img_h, m.img_w), "float32"), "label": ((), "int32")}
        if m.video_dim:
            out["video"] = ((m.video_dim,), "float32")
        return out
    if name in ("tsfm_stage1", "tsfm_stage2"):
        import numpy as np
        d = config.data
        record = {"imu": np.zeros((int(d.max_patches * d.patch_seconds * d.sampling_rate_hz), len(d.channel_names)),
                                  np.float32) + np.linspace(0, 1, len(d.channel_names), dtype=np.float32),
                  "imu_rate_hz": np.float32(d.sampling_rate_hz), "channels": list(d.channel_names), "label": 0}
        row = system.preprocess(record, np.random.default_rng(0))
        return {k: (np.shape(v), np.asarray(v).dtype.name) for k, v in row.items()}
    raise ValueError(f"unknown system {name!r}")


# -- HLO collectives -----------------------------------------------------------------------------------------------
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f32": 4,
                "s64": 8, "u64": 8, "f64": 8, "c64": 8}
_SHAPE_TEXT = re.compile(r"\b(?:pred|[su](?:8|16|32|64)|bf16|f16|f32|f64|c64)\[[0-9,]*\]")
_SHAPE = re.compile(r"\b(pred|[su](?:8|16|32|64)|bf16|f16|f32|f64|c64)\[([0-9,]*)\]")


def _shape_bytes(text: str) -> int:
    return sum(_DTYPE_BYTES[t] * math.prod(int(x) for x in dims.split(",") if x) for t, dims in _SHAPE.findall(text))


def collective_bytes(hlo: str) -> dict[str, int]:
    """Bytes per step of each collective kind on one chip: the gathered (all-gather) or reduced (all-reduce,
    reduce-scatter) array, a while body counted times its trip count (the bound its condition compares against).
    XLA:TPU writes a reduce-scatter as a fusion calling '%all-reduce-scatter...' around an all-reduce."""
    computations: dict[str, list[str]] = {}
    entry, current = None, None
    for line in hlo.splitlines():
        header = re.match(r"^(ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if header and not line.startswith(" "):
            current = header.group(2)
            computations[current] = []
            if header.group(1):
                entry = current
        elif current is not None and line.startswith(" "):
            computations[current].append(line)

    def trip_count(condition: str) -> int:
        bounds = [int(c) for line in computations.get(condition, ())
                  for c in re.findall(r"s32\[\][^=]*constant\((\d+)\)", line)]
        return max(bounds, default=1)

    memo: dict[str, dict[str, int]] = {}

    def total(name: str, stack=()) -> dict[str, int]:
        if name in memo:
            return memo[name]
        out = dict.fromkeys(COLLECTIVES, 0)
        for line in computations.get(name, ()):
            _, _, rhs = line.partition(" = ")
            op = re.search(r"\s([a-z][\w\-]*)\(", rhs)  # the result type, then ' opname('
            opname = op.group(1) if op else ""
            kind = next((k for k in COLLECTIVES if opname in (k, f"{k}-start")), None)
            if kind:  # an async '-start' returns (operand, result): count the result
                out[kind] += _shape_bytes(rhs[:op.start()] if not opname.endswith("-start") else
                                          " ".join(_SHAPE_TEXT.findall(rhs[:op.start()])[-1:]))
            condition = re.search(r"condition=%?([\w.\-]+)", line)
            trips = trip_count(condition.group(1)) if opname == "while" and condition else 1
            for callees in re.findall(r"(?:body|to_apply|calls|branch_computations|true_computation|"
                                      r"false_computation)=\{?(%?[\w.\-]+(?:,\s*%?[\w.\-]+)*)", line):
                for c in re.split(r",\s*", callees):
                    c = c.lstrip("%")
                    if c not in computations or c in stack:
                        continue
                    inner = total(c, stack + (name,))
                    if c.startswith("all-reduce-scatter"):
                        inner = dict(inner, **{"reduce-scatter": inner["reduce-scatter"] + inner["all-reduce"],
                                               "all-reduce": 0})
                    for k, v in inner.items():
                        out[k] += trips * v
        memo[name] = out
        return out

    return total(entry) if entry else dict.fromkeys(COLLECTIVES, 0)


# -- one cell ------------------------------------------------------------------------------------------------------
def shard_bytes(tree) -> int:
    import jax
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def unrolled_flops(make_step, state, batch) -> float:
    """FLOPs of one step on these (unsharded, abstract) inputs, lowered for this host's CPU with every `lax.scan`
    unrolled (benchmarks/train_step.py; the lowered TPU program has no cost analysis)."""
    import jax
    from benchmarks.train_step import model_flops
    plain = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)  # noqa: E731
    return model_flops(make_step, plain(state), plain(batch))


def load_config(spec: str):
    from benchmarks.train_step import load_config as load
    return load(spec)


def measure(system_name: str, topology: str, per_chip_batch: int | None, dtype: str, remat: str | None,
            flops_per_chip: float = 0.0) -> dict:
    """One cell. ``flops_per_chip``: the unrolled count from another topology at the same per-chip batch (it does not
    depend on the mesh), to skip the unrolled lowering."""
    import jax
    import numpy as np
    from jax.experimental import topologies
    from imujax import sharding, systems, train

    chip, chips, slices = TOPOLOGIES[topology]
    hbm_gib, peak_tflops, names = CHIPS[chip]
    spec, default_batch = SYSTEMS[system_name]
    per_chip_batch = per_chip_batch or default_batch
    config = load_config(spec)
    has_dtype = "dtype" in config.model
    if has_dtype and dtype:
        config.model.dtype = dtype
    if remat is not None:
        config.model.remat = remat.lower() in ("1", "true")  # EVI-MAE family: layers.LayerStack's policy
    pod_mesh(config, slices)
    config.batch_size = per_chip_batch * chips * slices
    kwargs = {"num_slices": slices} if slices > 1 else {}
    devices = list(topologies.get_topology_desc(topology_name=names[chips], platform="tpu", **kwargs).devices)
    if slices > 1:  # slice-major device order: the 'data' axis (outermost) runs over slices
        devices.sort(key=lambda d: d.slice_index)
    mesh = sharding.make_mesh(**config.mesh, devices=devices)
    if slices > 1:
        rows = np.vectorize(lambda d: d.slice_index)(mesh.devices)
        assert all(len(set(rows[i].ravel())) == 1 for i in range(slices)), "data axis does not follow slices"

    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 100, 1000))
    graphdef, state, shardings = train.abstract_state(system, config, tx, mesh)
    shapes = example_shapes(system_name, config, system)
    batch = {k: jax.ShapeDtypeStruct((config.batch_size, *shape), np.dtype(dt),
                                     sharding=sharding.batch_sharding(mesh, 1 + len(shape)))
             for k, (shape, dt) in shapes.items()}
    # Outside the mesh: the step's jax.random.key(seed) is concrete, and compile-only devices cannot hold it.
    step = jax.jit(train.make_train_step(system, graphdef, tx, config.seed), donate_argnums=0,
                   out_shardings=(shardings, None))
    with jax.set_mesh(mesh):
        start, cpu_start = time.time(), time.process_time()
        lowered = step.lower(state, batch)
        lower_s = time.time() - start
        compiled = lowered.compile()
        compile_s, compile_cpu_s = time.time() - start, time.process_time() - cpu_start
    hlo = compiled.as_text()
    os.makedirs(HLO_DIR, exist_ok=True)
    with gzip.open(os.path.join(HLO_DIR, f"{system_name}@{topology}.hlo.gz"), "wt") as f:
        f.write(hlo)
    if not flops_per_chip:  # one chip's share: the step at the per-chip batch (FLOPs do not depend on the mesh)
        one_chip = {k: jax.ShapeDtypeStruct((per_chip_batch, *v.shape[1:]), v.dtype) for k, v in batch.items()}
        flops_step = train.make_train_step(system, graphdef, tx, config.seed)  # a second one: no cached trace reused
        flops_per_chip = unrolled_flops(lambda: flops_step, state, one_chip)
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, list) else cost) or {}
    compiled_flops = float(cost.get("flops", 0.0))
    per_chip_flops = flops_per_chip
    seconds = float(cost.get("optimal_seconds", float("nan")))
    seconds = seconds if seconds > 0 else float("nan")  # XLA:TPU answers a negative number when it has no estimate
    scale = per_chip_flops / compiled_flops if compiled_flops else float("nan")
    step_s = seconds * max(scale, 1.0)
    live = mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
    collectives = collective_bytes(hlo)
    unsharded = [jax.tree_util.keystr(p, simple=True, separator=".")
                 for p, x in jax.tree_util.tree_leaves_with_path(state["params"])
                 if x.size >= 1 << 16 and x.sharding.shard_shape(x.shape) == x.shape]
    return {
        "system": system_name, "topology": topology, "chip": chip, "chips": chips * slices, "slices": slices,
        "mesh": dict(mesh.shape), "per_chip_batch": per_chip_batch, "global_batch": config.batch_size,
        "compute_dtype": config.model.dtype if has_dtype else "float32",
        "remat": config.model.get("remat"),
        "params": int(sum(x.size for x in jax.tree.leaves(state["params"]))),
        "params_bytes": shard_bytes(state["params"]), "opt_bytes": shard_bytes(state["opt_state"]),
        "argument_bytes": mem.argument_size_in_bytes, "temp_bytes": mem.temp_size_in_bytes,
        "output_bytes": mem.output_size_in_bytes, "alias_bytes": mem.alias_size_in_bytes, "live_bytes": live,
        "hbm_gib": hbm_gib, "fits": live <= 0.8 * hbm_gib * GIB, "compile_s": compile_s,
        "compile_cpu_s": compile_cpu_s, "lower_s": lower_s,
        "collective_bytes": collectives, "flops_per_chip": per_chip_flops, "compiled_flops": compiled_flops,
        "cost_model_s": step_s, "cost_model_raw_s": seconds,
        "mfu": per_chip_flops / (step_s * peak_tflops * 1e12) if step_s == step_s and step_s > 0 else float("nan"),
        "replicated_large_params": unsharded[:20],
    }


# -- driver --------------------------------------------------------------------------------------------------------
def worker_env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TPU_ACCELERATOR_TYPE="v5p-8", TPU_WORKER_HOSTNAMES="localhost",
               TPU_SKIP_MDS_QUERY="1", ALLOW_MULTIPLE_LIBTPU_LOAD="1", PYTHONPATH=REPO)
    env.pop("XLA_FLAGS", None)
    return env


def key(row: dict) -> str:
    """system@topology; a row with a note (e.g. measured before a fix) is kept beside the current one."""
    return f"{row['system']}@{row['topology']}" + (f"#{row['note']}" if row.get("note") else "")


def load_results(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {key(r): r for r in json.load(f)}


def save_results(path: str, results: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(list(results.values()), f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _gib(x: float) -> str:
    return "n/c" if x != x else f"{x / GIB:.2f}"


def _ms(seconds: float) -> str:
    return "n/a" if not seconds > 0 else f"{seconds * 1e3:.2f}"


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.0%}"


def print_table(results: dict) -> None:
    print("| system | topology | mesh (data x fsdp) | batch/chip | dtype | params GiB | opt GiB | args GiB | temp GiB "
          "| fits (80% HBM) | compile s wall (CPU) | all-gather GiB | reduce-scatter GiB | all-reduce GiB | GFLOP/chip "
          "| cost-model ms | MFU |")
    print("|" + "---|" * 17)
    order = {t: i for i, t in enumerate(TOPOLOGIES)}
    for r in sorted(results.values(), key=lambda r: (order[r["topology"]], list(SYSTEMS).index(r["system"]))):
        name = r["system"] + (f" ({r['note']})" if r.get("note") else "")
        if "error" in r:
            print(f"| {name} | {r['topology']} | | | | | | | | error: {r['error'][:80]} | | | | | | | |")
            continue
        c = r["collective_bytes"] or dict.fromkeys(COLLECTIVES, float("nan"))
        mesh = f"{r['mesh']['data']} x {r['mesh']['fsdp'] * r['mesh']['fsdp_inner']}"
        dtype = {"bfloat16": "bf16", "float32": "fp32"}[r["compute_dtype"]]
        cpu = f" ({r['compile_cpu_s']:.0f})" if "compile_cpu_s" in r else ""
        print(f"| {name} | {r['topology']} | {mesh} | {r['per_chip_batch']} | {dtype} "
              f"| {_gib(r['params_bytes'])} | {_gib(r['opt_bytes'])} | {_gib(r['argument_bytes'])} "
              f"| {_gib(r['temp_bytes'])} | {'yes' if r['fits'] else 'NO'} ({r['live_bytes'] / GIB:.1f}/"
              f"{r['hbm_gib']}) | {r['compile_s']:.0f}{cpu} | {_gib(c['all-gather'])} | {_gib(c['reduce-scatter'])} "
              f"| {_gib(c['all-reduce'])} | {r['flops_per_chip'] / 1e9:.0f} | {_ms(r['cost_model_s'])} "
              f"| {_pct(r['mfu'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--topologies", nargs="+", default=list(TOPOLOGIES), choices=list(TOPOLOGIES))
    parser.add_argument("--per_chip_batch", type=int, default=0, help="0: the system's default (SYSTEMS)")
    parser.add_argument("--dtype", default="bfloat16", help="compute dtype where the model has one")
    parser.add_argument("--remat", default=None)
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--redo", action="store_true", help="recompile cells already in --out")
    parser.add_argument("--note", default="", help="a row kept beside the grid's own, e.g. 'per-chip batch 8' for a "
                        "batch that fits where the grid's does not")
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--flops_per_chip", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(measure(*args.worker, args.per_chip_batch, args.dtype, args.remat,
                                                     args.flops_per_chip)), flush=True)
        return
    results = load_results(args.out)
    if not args.table:
        for topology in args.topologies:
            for system in args.systems:
                cell = key({"system": system, "topology": topology, "note": args.note})
                if cell in results and "error" not in results[cell] and not args.redo:
                    continue
                batch = args.per_chip_batch or SYSTEMS[system][1]
                known = [r["flops_per_chip"] for r in results.values() if r["system"] == system and "error" not in r
                         and r["per_chip_batch"] == batch and r["remat"] == args.remat]  # the count needs no mesh
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", system, topology, "--dtype", args.dtype,
                       "--per_chip_batch", str(batch), "--flops_per_chip", str(known[0] if known else 0.0)]
                cmd += ["--remat", args.remat] if args.remat else []
                start = time.time()
                try:
                    out = subprocess.run(cmd, env=worker_env(), cwd=REPO, capture_output=True, text=True,
                                         timeout=args.timeout)
                    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
                    row = (json.loads(lines[-1][7:]) if lines and out.returncode == 0 else
                           {"system": system, "topology": topology, "error": out.stderr.strip().splitlines()[-1][:500]
                            if out.stderr.strip() else f"exit {out.returncode}"})
                except subprocess.TimeoutExpired:
                    row = {"system": system, "topology": topology, "error": f"timeout after {args.timeout} s"}
                row["wall_s"] = time.time() - start
                if args.note:
                    row["note"] = args.note
                results[cell] = row
                save_results(args.out, results)
                print(f"{cell}: {row.get('error') or 'ok'} ({row['wall_s']:.0f} s)", flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
