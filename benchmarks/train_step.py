"""Train-step throughput of a system in JAX and, in the same run, of the PyTorch reference with the same shapes.

  python benchmarks/train_step.py --config=configs/evi_mae.py --batch=2 [--steps=5] [--torch] [--torch_compile]
  python benchmarks/train_step.py --config=configs/evi_mae.py:demo --batch=32

Prints one markdown row per implementation: samples/s (median over --steps timed steps after warm-up), compile time,
model FLOPs per step from XLA's cost analysis, achieved GFLOP/s, MFU against a measured fp32 matmul peak on this
machine, and the process's peak RSS. Each implementation runs in its own subprocess so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def load_config(spec: str):
    import importlib.util
    path, _, variant = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("bench_config", os.path.join(REPO, path))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant or None)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    import jax
    import jax.numpy as jnp
    x = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(x).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(x).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times) / 1e9


def random_batch(config, batch: int):
    import numpy as np
    rng = np.random.default_rng(0)
    m = config.model
    return {"imu": rng.normal(size=(batch, m.imu_channels, m.imu_time, m.imu_freq)).astype(np.float32),
            "video": rng.normal(size=(batch, 3, m.num_frames, m.img_size, m.img_size)).astype(np.float32),
            "label": np.zeros(batch, np.int32)}


def bench_jax(config, batch_size: int, steps: int) -> dict:
    import jax
    from imujax import sharding, systems, train

    config.batch_size = batch_size
    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 100, 1000))
    mesh = sharding.make_mesh(**config.mesh)
    with jax.set_mesh(mesh):
        graphdef, state, shardings = train.create_state(system, config, tx, mesh)
        batch = sharding.global_batch(random_batch(config, batch_size), mesh)
        step = jax.jit(train.make_train_step(system, graphdef, tx, config.seed), donate_argnums=0,
                       out_shardings=(shardings, None))
        start = time.perf_counter()
        compiled = step.lower(state, batch).compile()
        compile_s = time.perf_counter() - start
        flops = (compiled.cost_analysis() or {}).get("flops", float("nan"))
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            state, metrics = compiled(state, batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
    return {"impl": f"jax ({config.model.dtype})", "step_s": statistics.median(times), "compile_s": compile_s,
            "flops": flops, "peak_gflops": matmul_peak_gflops(), "rss_mib": peak_rss_mib()}


def bench_torch(config, batch_size: int, steps: int, compile_model: bool) -> dict:
    import torch
    from tests.torch_reference.evi_mae import EVIMAE, RefSizes

    torch.set_num_threads(os.cpu_count() or 1)
    m = config.model
    sizes = RefSizes(**{k: v for k, v in m.items() if k in RefSizes.__dataclass_fields__})
    model = EVIMAE(sizes).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.optimizer.learning_rate,
                           betas=(config.optimizer.b1, config.optimizer.b2), weight_decay=config.optimizer.weight_decay)
    data = {k: torch.from_numpy(v) for k, v in random_batch(config, batch_size).items()}
    c = config.loss

    def loss_fn(a, v):
        perm = torch.randperm(batch_size * m.imu_parts)
        out = model(a, v, perm, torch.rand(batch_size, sizes.imu_tokens), torch.rand(batch_size, sizes.video_tokens),
                    c.imu_mask_ratio, c.video_mask_ratio)
        return c.mae_weight * (out["mae_imu"] + out["mae_video"]) + c.contrast_weight * out["c_loss"] \
            + c.graph_weight * out["g_loss"]

    fn = torch.compile(loss_fn) if compile_model else loss_fn

    def step():
        opt.zero_grad(set_to_none=True)
        fn(data["imu"], data["video"]).backward()
        opt.step()

    start = time.perf_counter()
    step()
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"impl": "torch.compile" if compile_model else "torch eager", "step_s": statistics.median(times),
            "compile_s": warmup_s if compile_model else 0.0, "flops": float("nan"), "peak_gflops": float("nan"),
            "rss_mib": peak_rss_mib(), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/evi_mae.py")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch reference (eager)")
    parser.add_argument("--torch_compile", action="store_true", help="also time torch.compile of the reference")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        config = load_config(args.config)
        if args.dtype:
            config.model.dtype = args.dtype
        if args.worker == "jax":
            result = bench_jax(config, args.batch, args.steps)
        else:
            result = bench_torch(config, args.batch, args.steps, compile_model=args.worker == "torch_compile")
        print(json.dumps(result))
        return

    workers = ["jax"] + ["torch"] * args.torch + ["torch_compile"] * args.torch_compile
    rows = []
    for worker in workers:
        cmd = [sys.executable, __file__, f"--worker={worker}", f"--config={args.config}", f"--batch={args.batch}",
               f"--steps={args.steps}"] + ([f"--dtype={args.dtype}"] if args.dtype else [])
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{worker} failed:\n{out.stderr[-4000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    flops = rows[0]["flops"]
    peak = rows[0]["peak_gflops"]
    print(f"{args.config}, batch {args.batch}, {os.cpu_count()} CPU cores, fp32 matmul peak {peak:.0f} GFLOP/s, "
          f"XLA cost analysis {flops / 1e9:.1f} GFLOP/step")
    print("| implementation | samples/s | step s | compile s | GFLOP/s | MFU | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        gflops = flops / r["step_s"] / 1e9
        print(f"| {r['impl']} | {args.batch / r['step_s']:.3f} | {r['step_s']:.3f} | {r['compile_s']:.1f} | "
              f"{gflops:.1f} | {gflops / peak:.1%} | {r['rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
