"""Command-line build without TensorFlow: `python -m data_builders.synthetic_egomotion --data_dir=DIR`.

(`tfds build` cannot be used in a TensorFlow-free environment: the tfds 4.9.10 CLI imports TensorFlow
at start-up for its format-conversion command.)
"""
from __future__ import annotations

import argparse
import shutil
import time

from .synthetic_egomotion_dataset_builder import Builder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_builders.synthetic_egomotion", description=__doc__)
    parser.add_argument("--data_dir", required=True, help="TFDS data directory to write into")
    parser.add_argument("--config", default="default", choices=[c.name for c in Builder.BUILDER_CONFIGS])
    parser.add_argument("--overwrite", action="store_true", help="delete an existing build first")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes generating motion_* chunks (the records do not depend on it)")
    args = parser.parse_args(argv)
    if args.workers > 1 and not args.config.startswith("motion_"):
        parser.error(f"--workers applies to the motion_* configs, not {args.config!r}")
    builder = Builder(data_dir=args.data_dir, config=args.config, workers=args.workers)
    if args.overwrite and builder.data_path.exists():
        shutil.rmtree(builder.data_path)
    start = time.perf_counter()
    if not builder.is_prepared():
        builder.download_and_prepare()
    builder = Builder(data_dir=args.data_dir, config=args.config)
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    print(f"{builder.data_path}: {counts} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
