"""CPU cost of the articulated synthetic motion corpus: milliseconds of process CPU per second of generated IMU.

    nice -n 10 python -m benchmarks.synthetic_motion_speed [--config=motion_small] [--chunks=8]

Times `corpus.generate` (programs, skeleton, sensors with the realistic error model, records; no TFDS writing) on
whole chunks of the config, and reports the goal of issue 26: under 1 ms of CPU per second of IMU at default
settings. CPU time (not wall) is measured, so a busy shared machine inflates it less.
"""
from __future__ import annotations

import argparse
import resource
import time

from data_builders.synthetic_egomotion import Builder, corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="motion_small")
    parser.add_argument("--chunks", type=int, default=8)
    args = parser.parse_args(argv)
    config = next(c for c in Builder.BUILDER_CONFIGS if c.name == args.config)
    corpus.generate(config, "train", 0)  # warm-up (imports, first-call allocations)
    clips = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for chunk in range(1, args.chunks + 1):
        clips += len(corpus.generate(config, "train", chunk))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    imu_seconds = clips * config.clip_seconds
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.config}: {clips} clips x {config.clip_seconds:g} s at {config.imu_rate_hz:g} Hz, "
          f"{len(config.placements)} IMUs, chunk {config.chunk_size}, errors {config.sensor_errors}")
    print(f"  CPU {cpu:.2f} s, wall {wall:.2f} s -> {1e3 * cpu / imu_seconds:.3f} ms CPU per IMU second "
          f"({imu_seconds / cpu:.0f} s of IMU per CPU second); "
          f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
