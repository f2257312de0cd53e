"""`tfds build` without TensorFlow.

The tfds 4.9 command-line entry point imports TensorFlow at start-up (for its format-conversion sub-command), even
though building array_record datasets does not need it. This runs the same `build` sub-command with the same flags:

  python -m imujax.build_dataset data_builders/synthetic_egomotion --data_dir=DIR [--config=tiny] [--manual_dir=M]
"""

import sys


def main(argv: list[str]) -> None:
    import simple_parsing
    from tensorflow_datasets.scripts.cli import build

    args = list(argv)
    if not any(a.startswith("--file_format") for a in args):
        args.append("--file_format=array_record")
    simple_parsing.parse(build.Args, args=args).execute()


if __name__ == "__main__":
    main(sys.argv[1:])
