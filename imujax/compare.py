"""Check a converted model against outputs exported from the original PyTorch code, in one command.

    python -m imujax.compare --model=evi_mae --src=best_evi_model.pth --inputs=in.npz --reference=out.npz \\
        [--atol=1e-4] [--rtol=1e-3] [--set key=value ...] [--nostrict]

``--src`` is a torch checkpoint (converted in memory, as ``imujax.convert`` would) or an ``imujax.convert`` output
directory. The model runs on ``--inputs`` (the family's inputs in the upstream layouts, see ``python -m
imujax.convert --describe``), and every array of ``--reference`` is compared with the output of the same name:
shape, max abs difference, max relative difference (over finite non-zero reference elements) and pass/fail, where an
output passes when every element has |ours - reference| <= atol + rtol * |reference| (NaN only where the reference
has NaN). Exit status: 0 all pass, 1 some output fails or is missing, 2 bad arguments or files.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Mapping, Sequence

import numpy as np

from imujax.bridges.torch import conversion
from imujax.bridges.torch import reader

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclasses.dataclass(frozen=True)
class Comparison:
    name: str
    shape: tuple | None           # ours; None when the model did not produce this output
    reference_shape: tuple
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""


def compare_arrays(name: str, ours: np.ndarray | None, reference: np.ndarray, atol: float, rtol: float
                   ) -> Comparison:
    reference = np.asarray(reference)
    if ours is None:
        return Comparison(name, None, reference.shape, np.nan, np.nan, False, "not produced by the model")
    ours = np.asarray(ours)
    if ours.shape != reference.shape:
        return Comparison(name, ours.shape, reference.shape, np.nan, np.nan, False,
                          f"shape differs: reference {reference.shape}")
    if ours.size == 0:
        return Comparison(name, ours.shape, reference.shape, 0.0, 0.0, True)
    ours64, ref64 = ours.astype(np.float64), reference.astype(np.float64)
    both_nan = np.isnan(ours64) & np.isnan(ref64)
    diff = np.where(both_nan, 0.0, np.abs(ours64 - ref64))  # NaN where only one side is NaN
    nonzero = (ref64 != 0) & np.isfinite(ref64)
    max_abs = float(np.max(diff))
    max_rel = float(np.max(diff[nonzero] / np.abs(ref64[nonzero]))) if nonzero.any() else 0.0
    ok = bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(ref64))))  # a NaN diff is never <=
    return Comparison(name, ours.shape, reference.shape, max_abs, max_rel, ok,
                      "" if ok or not np.isnan(diff).any() else "NaN on one side only")


def compare_outputs(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], atol: float = DEFAULT_ATOL,
                    rtol: float = DEFAULT_RTOL) -> list[Comparison]:
    """One `Comparison` per reference array, in the reference's order."""
    return [compare_arrays(name, outputs.get(name), value, atol, rtol) for name, value in reference.items()]


def format_table(comparisons: Sequence[Comparison], extra_outputs: Sequence[str] = ()) -> str:
    rows = [("output", "shape", "max abs", "max rel", "result")]
    for c in comparisons:
        shape = "-" if c.shape is None else str(tuple(c.shape))
        result = "pass" if c.ok else "FAIL" + (f" ({c.note})" if c.note else "")
        rows.append((c.name, shape, f"{c.max_abs:.3g}", f"{c.max_rel:.3g}", result))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    failed = sum(not c.ok for c in comparisons)
    lines.append(f"{len(comparisons) - failed} of {len(comparisons)} outputs pass"
                 + (f"; not in the reference: {', '.join(extra_outputs)}" if extra_outputs else ""))
    return "\n".join(lines)


def _read_npz(path: str, what: str) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def run_model(name: str, src: str, inputs: Mapping[str, np.ndarray], overrides: Mapping[str, str] | None = None,
              strict: bool = True) -> dict[str, np.ndarray]:
    """The converted model's outputs on ``inputs``; ``src`` is a torch checkpoint or an imujax.convert directory."""
    if os.path.isdir(src):
        stored, _, model = conversion.load_converted_model(src)
        if stored != name:
            raise ValueError(f"--model={name} but {src} holds a {stored} conversion")
        if overrides:
            raise ValueError("--set applies to torch checkpoints; a convert output directory has its sizes fixed")
    else:
        model = conversion.convert_for_inputs(name, src, overrides, strict, inputs).model
    return conversion.run_forward(name, model, inputs)


def compare(name: str, src: str, inputs_path: str, reference_path: str, atol: float = DEFAULT_ATOL,
            rtol: float = DEFAULT_RTOL, overrides: Mapping[str, str] | None = None, strict: bool = True
            ) -> tuple[list[Comparison], list[str]]:
    """(comparisons, names of outputs the reference does not hold)."""
    inputs = _read_npz(inputs_path, "inputs")
    reference = _read_npz(reference_path, "reference")
    if not reference:
        raise ValueError(f"reference file {reference_path} holds no arrays")
    outputs = run_model(name, src, inputs, overrides, strict)
    return compare_outputs(outputs, reference, atol, rtol), sorted(set(outputs) - set(reference))


# -- command line ------------------------------------------------------------------------------------------------------
def _define_flags():
    from absl import flags
    flags.DEFINE_string("model", None, "model family (python -m imujax.convert --describe lists them)")
    flags.DEFINE_string("src", None, "torch checkpoint, or an imujax.convert output directory")
    flags.DEFINE_string("inputs", None, ".npz with the model's inputs in the upstream PyTorch layouts")
    flags.DEFINE_string("reference", None, ".npz with the original code's outputs, named as the family's outputs")
    flags.DEFINE_float("atol", DEFAULT_ATOL, "absolute tolerance")
    flags.DEFINE_float("rtol", DEFAULT_RTOL, "relative tolerance (of |reference|)")
    flags.DEFINE_multi_string("set", [], "architecture override key=value (sizes the checkpoint cannot tell)")
    flags.DEFINE_bool("strict", True, "fail unless every torch key is consumed and every parameter set")
    return flags.FLAGS


def _main(argv: Sequence[str], flags) -> int:
    if len(argv) > 1:
        raise ValueError(f"unexpected positional arguments {list(argv[1:])}")
    missing = [f"--{k}" for k in ("model", "src", "inputs", "reference") if not getattr(flags, k)]
    if missing:
        raise ValueError(f"{', '.join(missing)} required")
    if flags.atol < 0 or flags.rtol < 0:
        raise ValueError("--atol and --rtol must be >= 0")
    comparisons, extra = compare(flags.model, flags.src, flags.inputs, flags.reference, flags.atol, flags.rtol,
                                 conversion.parse_overrides(flags.set), flags.strict)
    print(f"{flags.model}: {flags.src} vs {flags.reference} (atol {flags.atol:g}, rtol {flags.rtol:g})")
    print(format_table(comparisons, extra))
    return 0 if all(c.ok for c in comparisons) else 1


def main() -> None:
    from absl import app
    flags = _define_flags()

    def run(argv):
        try:
            code = _main(argv, flags)
        except (ValueError, KeyError, FileNotFoundError, reader.CheckpointFormatError,
                reader.UnsafeCheckpointError) as err:  # the errors imujax.convert's command line prints
            print(f"error: {err}", file=sys.stderr)
            code = 2
        sys.exit(code)

    app.run(run)


if __name__ == "__main__":
    main()
