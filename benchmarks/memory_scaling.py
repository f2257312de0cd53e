"""Per-device memory of the full-size EVI-MAE train step on 1, 8, 64 and 256 devices, from the compiled program.

Ahead-of-time: the step is lowered and compiled on fake CPU devices against abstract inputs, so nothing is allocated
and no hardware is needed. Parameters and optimizer state are FSDP-sharded (mesh data=1, fsdp=N); the per-device
batch is fixed (global batch = N x per_device_batch), so per-device state should fall as 1/N while activations stay.

  python benchmarks/memory_scaling.py [--devices 1 8 64 256] [--per_device_batch 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shard_bytes(tree) -> int:
    import jax
    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(shape) * leaf.dtype.itemsize
    return total


def measure(num_devices: int, per_device_batch: int) -> dict:
    import jax
    import numpy as np

    from configs import evi_mae as evi_mae_config
    from imujax import sharding, systems, train

    config = evi_mae_config.get_config()
    config.batch_size = num_devices * per_device_batch
    mesh = sharding.make_mesh(data=1, fsdp=num_devices)
    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 100, 1000))
    m = config.model
    with jax.set_mesh(mesh):
        graphdef, state, shardings = train.abstract_state(system, config, tx, mesh)
        batch = {
            "imu": jax.ShapeDtypeStruct((config.batch_size, m.imu_channels, m.imu_time, m.imu_freq), np.float32,
                                        sharding=sharding.batch_sharding(mesh, 4)),
            "video": jax.ShapeDtypeStruct((config.batch_size, 3, m.num_frames, m.img_size, m.img_size), np.float32,
                                          sharding=sharding.batch_sharding(mesh, 5)),
            "label": jax.ShapeDtypeStruct((config.batch_size,), np.int32, sharding=sharding.batch_sharding(mesh, 1)),
        }
        step = jax.jit(train.make_train_step(system, graphdef, tx, config.seed), donate_argnums=0,
                       out_shardings=(shardings, None))
        start = time.time()
        compiled = step.lower(state, batch).compile()
        compile_s = time.time() - start
    analysis = compiled.memory_analysis()
    return {"devices": num_devices, "global_batch": config.batch_size,
            "params_bytes": shard_bytes(state["params"]), "opt_state_bytes": shard_bytes(state["opt_state"]),
            "argument_bytes": analysis.argument_size_in_bytes, "output_bytes": analysis.output_size_in_bytes,
            "temp_bytes": analysis.temp_size_in_bytes, "compile_s": compile_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--per_device_batch", type=int, default=1)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.per_device_batch)))
        return
    rows = []
    for n in args.devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        out = subprocess.run([sys.executable, __file__, "--worker", str(n), "--per_device_batch",
                              str(args.per_device_batch)], env=env, cwd=REPO, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{n} devices failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mib = lambda b: f"{b / 2**20:,.1f}"
    base = rows[0]["params_bytes"] + rows[0]["opt_state_bytes"]
    print("| devices | global batch | params MiB/dev | optimizer MiB/dev | state x N / state(1) | temp (activations) "
          "MiB/dev | compile s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        state = r["params_bytes"] + r["opt_state_bytes"]
        print(f"| {r['devices']} | {r['global_batch']} | {mib(r['params_bytes'])} | {mib(r['opt_state_bytes'])} | "
              f"{state * r['devices'] / base:.3f} | {mib(r['temp_bytes'])} | {r['compile_s']:.0f} |")


if __name__ == "__main__":
    main()
