"""One-GPU check (the Python half of benchmarks/gpu_check.sh): a system's train step in bf16, then the original
upstream EVI-MAE step under torch AMP on the same card.

  python benchmarks/gpu_check.py jax --system evi_mae [--dry-run]   # batch 16 and the largest batch that fits
  python benchmarks/gpu_check.py torch_upstream --harness DIR       # bench_upstream's EVI-MAE model, CUDA, bf16 AMP

Each prints JSON lines. JAX: the loop's own `train.make_train_step` (loss, grad, optimizer, state donated) at the
released sizes with bf16 compute and fp32 master weights; inputs are random arrays in the training batch layout
(benchmarks/tpu_aot.example_shapes). The largest batch is found without running anything: batch doubles from 16 while
XLA's memory analysis of the compiled step (arguments + temporaries + outputs - donated) stays under 90% of the
device's memory limit. MFU = FLOPs of one step (cost analysis with scans unrolled) / step time / the card's bf16 dense
peak. `--dry-run`: the demo config, tiny batches, 2 steps, on whatever device JAX has (CPU in the test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# bf16 dense tensor-core peak per card, TFLOP/s (vendor data sheets, SXM parts).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "B200": 2250.0}
SYSTEMS = {"evi_mae": "configs/evi_mae.py", "audio_mae": "configs/audio_mae.py", "primus": "configs/primus.py"}
DRY_RUN = {"evi_mae": "configs/evi_mae.py:demo", "audio_mae": "configs/himu_mae.py:demo", "primus": "configs/primus.py:demo"}
# --dry-run: the demo configs cut to one block per stack, so the CPU test compiles quickly. EVI-MAE keeps 64 px
# frames: at 32 px the clip has 8 video tokens and the 0.9 mask ratio keeps none (a NaN contrastive mean).
DRY_RUN_MODEL = {"evi_mae": dict(imu_dim=32, imu_depth=1, imu_heads=2, imu_time=64, imu_freq=32, video_dim=32,
                             video_depth=1, video_heads=2, num_frames=4, img_size=64, decoder_dim=32, decoder_depth=1,
                             graph_hidden=16),
                 "audio_mae": dict(img_h=32, img_w=32, embed_dim=32, depth=1, num_heads=2, decoder_dim=16,
                                   decoder_depth=2, decoder_heads=2, meta_hidden=16),
                 "primus": {}}


def peak_tflops(device) -> float:
    kind = device.device_kind.upper()
    return next((v for k, v in PEAK_TFLOPS.items() if k in kind), float("nan"))


def setup(system_name: str, dry_run: bool):
    from benchmarks import tpu_aot
    from imujax import systems, train
    config = tpu_aot.load_config((DRY_RUN if dry_run else SYSTEMS)[system_name])
    if dry_run:
        config.model.update(DRY_RUN_MODEL[system_name])
        if system_name == "primus":
            config.model.video.update(dict(dim=16, depth=1, heads=2, img_size=32))
            config.data.imu_length = 128  # the encoder's minimum is 123; the FLOP count unrolls its scan over time
    if "dtype" in config.model:
        config.model.dtype = "bfloat16"
    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 100, 1000))
    return config, system, tx


def abstract_batch(system_name, config, system, batch: int, mesh):
    import jax
    import numpy as np
    from benchmarks import tpu_aot
    from imujax import sharding
    shapes = tpu_aot.example_shapes(system_name, config, system)
    return {k: jax.ShapeDtypeStruct((batch, *shape), np.dtype(dt), sharding=sharding.batch_sharding(mesh, 1 + len(shape)))
            for k, (shape, dt) in shapes.items()}


def random_batch(abstract, seed: int = 0):
    import jax
    import numpy as np
    rng = np.random.default_rng(seed)
    out = {}
    for k, a in abstract.items():
        if a.dtype == np.uint8:
            x = rng.integers(0, 256, a.shape, dtype=np.uint8)
        elif a.dtype == np.bool_:
            x = np.ones(a.shape, bool)
        elif np.issubdtype(a.dtype, np.integer):
            x = np.zeros(a.shape, a.dtype)
        else:
            x = rng.normal(size=a.shape).astype(a.dtype)
        out[k] = jax.device_put(x, a.sharding)
    return out


def compile_step(system, config, tx, mesh, batch_spec):
    import jax
    from imujax import train
    graphdef, state, shardings = train.abstract_state(system, config, tx, mesh)
    step = jax.jit(train.make_train_step(system, graphdef, tx, config.seed), donate_argnums=0,
                   out_shardings=(shardings, None))
    with jax.set_mesh(mesh):
        return step.lower(state, batch_spec).compile(), graphdef, shardings


def live_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes


def run_jax(args) -> None:
    import jax
    from benchmarks.train_step import model_flops
    from imujax import sharding, train
    device = jax.devices()[0]
    config, system, tx = setup(args.system, args.dry_run)
    mesh = sharding.make_mesh(data=1, devices=[device])
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit")
    batches = [2] if args.dry_run else [16]
    if not args.dry_run and limit:  # the largest batch that fits, from the compiled program's memory analysis
        b = 32
        while b <= args.max_batch:
            compiled, _, _ = compile_step(system, config, tx, mesh, abstract_batch(args.system, config, system, b,
                                                                                     mesh))
            if live_bytes(compiled) > 0.9 * limit:
                break
            batches.append(b)
            b *= 2
    for b in sorted(set(batches)):
        spec = abstract_batch(args.system, config, system, b, mesh)
        start = time.perf_counter()
        compiled, graphdef, shardings = compile_step(system, config, tx, mesh, spec)
        compile_s = time.perf_counter() - start
        with jax.set_mesh(mesh):
            _, state, _ = train.create_state(system, config, tx, mesh)
            batch = random_batch(spec)
            times = []
            for i in range(args.warmup + args.steps):
                t0 = time.perf_counter()
                state, metrics = compiled(state, batch)
                jax.block_until_ready((state, metrics))
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
            step_s = sorted(times)[len(times) // 2]
            flops_step = train.make_train_step(system, graphdef, tx, config.seed)
            flops = model_flops(lambda: flops_step, state, batch)
        peak_mem = (device.memory_stats() or {}).get("peak_bytes_in_use")
        print(json.dumps({
            "system": args.system, "device": device.device_kind, "batch": b, "dtype": config.model.get("dtype", "fp32"),
            "compile_s": round(compile_s, 1), "step_s": step_s, "samples_per_s": b / step_s,
            "tflops_per_step": flops / 1e12, "mfu": flops / step_s / (peak_tflops(device) * 1e12),
            "peak_memory_gib": peak_mem / 2 ** 30 if peak_mem else None,
            "predicted_live_gib": live_bytes(compiled) / 2 ** 30, "loss": float(metrics["loss"])}), flush=True)
        del state, batch


def run_torch_upstream(args) -> None:
    """The original EVI-MAE model (bench_upstream's builder config), one Adam step per iteration under bf16 autocast."""
    import torch
    sys.path.insert(0, args.harness)
    os.environ.setdefault("PERF_SRC", os.path.join(args.harness, "src"))
    import bench_torch as bt
    bt.SRC = os.environ["PERF_SRC"]
    evi = bt.import_evimae()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    v = dict(bt.EVI_VIDEO, masking_ratio=0.9, pretrain_modality="both")
    i = dict(bt.EVI_IMU, masking_ratio=0.75, mask_mode="unstructured", imu_graph_masking_ratio=0.5)
    torch.manual_seed(0)
    model = bt.quiet(evi.EVIMAE, norm_pix_loss=True, tr_pos=False, video_model_dict=v, imu_model_dict=i)
    model = model.to(device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 5e-5, weight_decay=5e-7,
                           betas=(0.95, 0.999))
    b = args.batch
    imu = torch.randn((b, 12, 320, 128), device=device)
    video = torch.randn((b, 3, 16, 224, 224), device=device)
    times = []
    for k in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(imu, video, None, mae_loss_weight=1.0, contrast_loss_weight=0.01,
                         mask_mode="unstructured")[0]
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= args.warmup:
            times.append(time.perf_counter() - t0)
    step_s = sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None
    print(json.dumps({"system": "evi_mae upstream (torch AMP bf16)", "device": str(device), "batch": b,
                      "step_s": step_s, "samples_per_s": b / step_s, "peak_memory_gib": peak,
                      "loss": float(loss)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["jax", "torch_upstream"])
    parser.add_argument("--system", default="evi_mae", choices=list(SYSTEMS))
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max_batch", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--harness", default=os.path.join(REPO, "benchmarks", ".gpu_check", "bench_upstream"))
    args = parser.parse_args()
    if args.dry_run:
        args.steps, args.warmup = 2, 1
    (run_jax if args.what == "jax" else run_torch_upstream)(args)


if __name__ == "__main__":
    main()
