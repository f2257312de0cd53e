"""Time converting a large torch checkpoint with the torch-free reader (and with torch.load for reference).

    python benchmarks/convert_checkpoint.py [--tensors 150] [--numel 1000000] [--dir /tmp]

Writes a state_dict of `--tensors` fp32 [1000, numel/1000] tensors with torch (~600 MB by default), then in a
fresh subprocess per row: load it, pick the state_dict, and turn every Linear-style weight into an NNX kernel
(transpose + contiguous copy), reporting wall time and peak RSS (`resource.getrusage`). The imujax rows run once
with torch importable and once with torch imports blocked. The checkpoint is deleted at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch blocked for this benchmark")
sys.meta_path.insert(0, _NoTorch())
"""

MEASURE = """
import json, resource, time
import numpy as np
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
{load}
kernels = {{k: np.ascontiguousarray(v.T) for k, v in sd.items()}}
checksum = float(sum(float(k[0, 0]) for k in kernels.values()))
wall = time.perf_counter() - t0
print(json.dumps({{"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "rss_before_load_mb": base_rss / 1024, "checksum": checksum,
                   "torch_loaded": "torch" in sys.modules}}))
"""

IMUJAX_LOAD = """
import sys
from imujax.bridges.torch import reader
sd = reader.find_state_dict(reader.load_checkpoint({path!r}, mmap={mmap}))
"""

TORCH_LOAD = """
import sys, torch
sd = {{k: v.numpy() for k, v in torch.load({path!r}, weights_only=True, mmap={mmap}).items()}}
"""


def make_checkpoint(path: str, tensors: int, numel: int) -> None:
    script = textwrap.dedent(f"""
        import torch
        g = torch.Generator().manual_seed(0)
        sd = {{f"blocks.{{i}}.mlp.weight": torch.randn(1000, {numel} // 1000, generator=g) for i in range({tensors})}}
        torch.save(sd, {path!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True)


def run_row(label: str, load: str, block_torch: bool) -> dict:
    code = (BLOCK_TORCH if block_torch else "") + "import sys\n" + MEASURE.format(load=load.strip())
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if res.returncode:
        raise RuntimeError(f"{label} failed:\n{res.stderr}")
    return {"label": label, **json.loads(res.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tensors", type=int, default=150)
    parser.add_argument("--numel", type=int, default=1_000_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    path = os.path.join(args.dir, "imujax_convert_benchmark.pth")
    try:
        make_checkpoint(path, args.tensors, args.numel)
        size_mb = os.path.getsize(path) / 2 ** 20
        rows = [
            run_row("imujax reader (mmap), torch importable", IMUJAX_LOAD.format(path=path, mmap=True), False),
            run_row("imujax reader (mmap), torch blocked", IMUJAX_LOAD.format(path=path, mmap=True), True),
            run_row("imujax reader (no mmap), torch blocked", IMUJAX_LOAD.format(path=path, mmap=False), True),
            run_row("torch.load(weights_only=True)", TORCH_LOAD.format(path=path, mmap=False), False),
            run_row("torch.load(weights_only=True, mmap=True)", TORCH_LOAD.format(path=path, mmap=True), False),
        ]
    finally:
        if os.path.exists(path):
            os.remove(path)
    checks = {round(r["checksum"], 3) for r in rows}
    print(f"checkpoint: {args.tensors} fp32 tensors x {args.numel} elements = {size_mb:.0f} MiB; load + transpose "
          f"to NNX kernels; checksums agree: {len(checks) == 1}\n")
    print("| method | wall s | peak RSS MiB | RSS before load MiB | torch imported |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['wall_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['rss_before_load_mb']:.0f} | "
              f"{r['torch_loaded']} |")


if __name__ == "__main__":
    main()
