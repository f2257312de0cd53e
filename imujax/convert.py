"""Convert PyTorch checkpoints to Orbax NNX checkpoints, run them on upstream-layout inputs, export them back.

    python -m imujax.convert --model=evi_mae_ft --src=best_evi_model.pth --out=/tmp/ft \\
        [--set video_heads=6 ...] [--inputs=in.npz --outputs=out.npz] [--nostrict]
    python -m imujax.convert --describe --model=revalexo_evi_mae_fusion
    python -m imujax.convert --export --src=/tmp/ft --out=/tmp/ft.pth

The command line only: the conversion itself (and ``load_converted(dir)``, which reads an output directory back) is
`imujax.bridges.torch.conversion`; the model families are registered in `imujax.bridges.torch.registry`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

from imujax.bridges.torch import conversion
from imujax.bridges.torch import registry
from imujax.bridges.torch import reader


# -- command line ------------------------------------------------------------------------------------------------------
def _define_flags():
    from absl import flags
    flags.DEFINE_string("model", None, "model family: " + ", ".join(sorted(registry.families())))
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
        names = [flags.model] if flags.model else sorted(registry.families())
        print("\n\n".join(registry.describe(n) for n in names))
        return 0
    if not flags.src or not flags.out:
        raise ValueError("--src and --out are required")
    if flags.export:
        name = conversion.read_meta(os.path.abspath(flags.src))["model"]
        if flags.model and flags.model != name:
            raise ValueError(f"--model={flags.model} but {flags.src} holds a {name} checkpoint")
        state_dict = conversion.export_converted(flags.src, flags.out)
        print(f"wrote {len(state_dict)} tensors ({name}) to {flags.out}")
        return 0
    if not flags.model:
        raise ValueError("--model is required; known models: " + ", ".join(sorted(registry.families())))
    if bool(flags.inputs) != bool(flags.outputs):
        raise ValueError("--inputs and --outputs go together")
    converted = conversion.convert_file(flags.model, flags.src, flags.out, conversion.parse_overrides(flags.set),
                                         flags.strict, flags.inputs, flags.outputs)
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
    main()
