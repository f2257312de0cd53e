"""Input-pipeline throughput: the grain loader with a system's real record transform, as the training loop uses it.

  python benchmarks/input_pipeline.py --config=configs/evi_mae.py --batch=2 --workers 0 2
  python benchmarks/input_pipeline.py --config=configs/evi_mae.py:demo --batch=32

Builds the embedded synthetic dataset into --data_dir if needed, then times batches after a warm-up (worker start-up
excluded) and prints samples/s per worker count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/evi_mae.py")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--data_dir", default="/tmp/imujax_bench_data")
    args = parser.parse_args()

    from absl import flags
    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    from benchmarks.train_step import load_config
    from imujax import input_pipeline, systems

    config = load_config(args.config)
    config.data.data_dir = args.data_dir
    config.data.auto_build = True
    input_pipeline.ensure_built(config, args.data_dir)
    source = input_pipeline.open_source(config, args.data_dir, config.data.train_split)
    system = systems.make_system(config)
    print(f"{args.config}, batch {args.batch}, {os.cpu_count()} CPU cores")
    print("| grain workers | samples/s | batches timed |")
    print("|---|---|---|")
    for workers in args.workers:
        it = iter(input_pipeline.train_dataset(source, system.preprocess, global_batch=args.batch, seed=0,
                                               worker_count=workers, read_threads=config.data.read_threads,
                                               prefetch_batches=config.data.prefetch_batches))
        for _ in range(3):
            next(it)
        start = time.perf_counter()
        for _ in range(args.batches):
            next(it)
        rate = args.batches * args.batch / (time.perf_counter() - start)
        print(f"| {workers} | {rate:.1f} | {args.batches} |")


if __name__ == "__main__":
    main()
