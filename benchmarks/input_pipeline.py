"""Input-pipeline throughput: the grain loader with a system's real record transform, as the training loop uses it.

  python benchmarks/input_pipeline.py --config=configs/evi_mae.py --batch=2 --workers 0 2     # one config
  python benchmarks/input_pipeline.py --config=configs/evi_mae.py:demo --batch=32
  python benchmarks/input_pipeline.py --all --workers 0 1 2                                   # every system
  python benchmarks/input_pipeline.py --config=configs/evi_mae.py --profile=50                # where the time goes

Builds the embedded synthetic dataset into --data_dir if needed, then times batches after a warm-up (worker start-up
excluded) and prints samples/s per worker count. Per host core: samples per CPU-second of the whole process tree
(this process and its grain workers) over the timed batches, so the figure holds on a loaded machine too.

--all runs every system of benchmarks/tpu_aot.py at its released config where its dataset builds here (embedded, or
config.data.manual_dirs present); otherwise its `:demo` variant (synthetic records, the demo's transform settings:
NOT the released transform), or a stated skip. Where benchmarks/tpu_aot.json has an XLA:TPU cost-model step time for
the system (v5p), it prints the host cores each chip needs to keep up: (per-chip batch / step time) / samples per
core-second. A v5p host has 4 chips, so a host needs 4x that.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

V5P_CHIPS_PER_HOST = 4


def cpu_seconds(process) -> float:
    """User + system CPU seconds of a process and its live children (the grain workers)."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # a worker that exited between listing and reading
            pass
    return total


def time_loader(config, source, preprocess, *, batch: int, workers: int, batches: int, warmup: int,
                min_seconds: float) -> dict:
    import psutil
    from imujax import input_pipeline
    it = iter(input_pipeline.train_dataset(source, preprocess, global_batch=batch, seed=0, worker_count=workers,
                                           read_threads=config.data.read_threads,
                                           prefetch_batches=config.data.prefetch_batches))
    for _ in range(warmup):
        next(it)
    me = psutil.Process()
    # Workers keep transforming into their prefetch buffers between next() calls; CPU is read over the same window.
    cpu0, start = cpu_seconds(me), time.perf_counter()
    timed = 0
    while timed < batches or time.perf_counter() - start < min_seconds:  # fast transforms: long enough to measure
        next(it)
        timed += 1
    wall, cpu = time.perf_counter() - start, cpu_seconds(me) - cpu0
    del it
    gc.collect()
    samples = timed * batch
    return dict(workers=workers, samples_per_s=samples / wall, cores_busy=cpu / wall,
                samples_per_core_s=samples / cpu if cpu > 0 else math.nan, batches=timed)


def cost_model_rates(path: str = os.path.join(REPO, "benchmarks", "tpu_aot.json")) -> dict[str, tuple[str, int, float]]:
    """{system: (topology, per-chip batch, cost-model step s)} from v5p rows with a positive XLA:TPU estimate."""
    if not os.path.exists(path):
        return {}
    best: dict[str, tuple[str, int, float, int]] = {}
    for row in json.load(open(path)):
        step = row.get("cost_model_s")
        if row.get("chip") != "v5p" or not isinstance(step, (int, float)) or not step > 0:
            continue
        if row["system"] not in best or row["chips"] > best[row["system"]][3]:
            best[row["system"]] = (row["topology"], int(row["per_chip_batch"]), float(step), int(row["chips"]))
    return {k: v[:3] for k, v in best.items()}


def buildable_here(config) -> str | None:
    """None when every dataset of the config builds on this machine, else why not."""
    from imujax import input_pipeline, mixture
    manual = dict(config.data.get("manual_dirs") or {})
    for name in mixture.dataset_names(config):
        dataset = name.partition("/")[0]
        if dataset not in input_pipeline.EMBEDDED_BUILDERS and not os.path.isdir(manual.get(dataset, "") or "/-"):
            return f"{name} needs its raw download"
    return None


def resolve(system: str, path: str):
    """(config, label) for --all: the released config if its data builds here, else the :demo variant."""
    from benchmarks.train_step import load_config
    config = load_config(path)
    why = buildable_here(config)
    if why is None:
        return config, "released"
    try:
        demo = load_config(f"{path}:demo")
    except ValueError:
        return None, f"skipped: {why}; no :demo variant"
    if buildable_here(demo) is not None:
        return None, f"skipped: {why}; demo data not buildable either"
    return demo, f"demo ({why})"


def run_one(config, *, data_dir: str, batch: int, workers: list[int], batches: int, warmup: int,
            min_seconds: float) -> list[dict]:
    from imujax import input_pipeline, systems
    os.chdir(REPO)  # manual_dirs in configs are relative to the repository
    config.data.data_dir = data_dir
    config.data.auto_build = True
    input_pipeline.ensure_built(config, data_dir)
    source = input_pipeline.open_train_source(config, data_dir)
    system = systems.make_system(config)
    return [time_loader(config, source, system.preprocess, batch=batch, workers=w, batches=batches, warmup=warmup,
                        min_seconds=min_seconds) for w in workers]


def profile_transform(config, *, data_dir: str, records: int) -> None:
    """The system's transform alone, in this thread, over `records` records: cProfile's top functions by own time."""
    import cProfile
    import pstats

    import numpy as np

    from imujax import input_pipeline, systems
    config.data.data_dir, config.data.auto_build = data_dir, True
    input_pipeline.ensure_built(config, data_dir)
    source = input_pipeline.open_train_source(config, data_dir)
    transform = input_pipeline.CheckedTransform(systems.make_system(config).preprocess)
    rng = np.random.default_rng(0)
    transform(source[0], rng)  # warm-up: imports, caches
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for i in range(records):
        transform(source[i % len(source)], rng)
    profiler.disable()
    print(f"{records} records read + transformed in one thread: {(time.perf_counter() - start) / records * 1e3:.2f} "
          f"ms each (under cProfile)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/evi_mae.py")
    parser.add_argument("--all", action="store_true", help="every system of benchmarks/tpu_aot.py")
    parser.add_argument("--systems", nargs="*", default=None, help="with --all: only these")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min_seconds", type=float, default=0.0, help="time at least this long per worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--data_dir", default="/tmp/imujax_bench_data")
    parser.add_argument("--profile", type=int, default=0, help="profile the --config transform over this many records")
    args = parser.parse_args()

    from absl import flags
    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    from benchmarks.train_step import load_config
    common = dict(data_dir=args.data_dir, batch=args.batch, workers=args.workers, batches=args.batches,
                  warmup=args.warmup, min_seconds=args.min_seconds)
    print(f"batch {args.batch}, >= {args.batches} batches and >= {args.min_seconds:g} s timed after {args.warmup} "
          f"warm-up batches, {os.cpu_count()} CPU cores")
    if args.profile:
        profile_transform(load_config(args.config), data_dir=args.data_dir, records=args.profile)
        return
    if not args.all:
        print(args.config)
        print("| grain workers | samples/s | cores busy | samples/s per core | batches timed |")
        print("|---|---|---|---|---|")
        for r in run_one(load_config(args.config), **common):
            print(f"| {r['workers']} | {r['samples_per_s']:.1f} | {r['cores_busy']:.2f} | {r['samples_per_core_s']:.1f} "
                  f"| {r['batches']} |")
        return

    from benchmarks.tpu_aot import SYSTEMS
    rates = cost_model_rates()
    print("| system | transform | grain workers | samples/s | cores busy | samples/s per core "
          "| v5p step (cost model) | host cores per chip |")
    print("|---|---|---|---|---|---|---|---|")
    for system, (path, _) in SYSTEMS.items():
        if args.systems and system not in args.systems:
            continue
        config, label = resolve(system, path)
        if config is None:
            print(f"| {system} | {label} | | | | | | |", flush=True)
            continue
        try:
            results = run_one(config, **common)
        except Exception as e:  # one system's failure must not hide the others' figures
            print(f"| {system} | {label}: failed ({type(e).__name__}: {str(e)[:160]}) | | | | | | |", flush=True)
            continue
        for r in results:
            if label == "released" and system in rates:
                topology, per_chip, step = rates[system]
                chip_rate = per_chip / step
                need = f"{chip_rate / r['samples_per_core_s']:.2f} ({chip_rate:.0f} samples/s/chip)"
                step_text = f"{step * 1e3:.1f} ms at {per_chip}/chip ({topology})"
            else:
                need, step_text = "n/a (no cost-model figure)", "n/a"
            print(f"| {system} | {label} | {r['workers']} | {r['samples_per_s']:.1f} | {r['cores_busy']:.2f} "
                  f"| {r['samples_per_core_s']:.1f} | {step_text} | {need} |", flush=True)


if __name__ == "__main__":
    main()
