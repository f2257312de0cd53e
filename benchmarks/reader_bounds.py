"""Checkpoint reader bounds: peak RSS of the worst hostile files, and throughput on a valid ~600 MB checkpoint.

    python benchmarks/reader_bounds.py [--baseline=OLD_reader.py] [--tmp=/tmp/reader_bench] [--rounds=5]

Every measurement runs in a fresh interpreter that imports only the reader module (from this checkout, or the
`--baseline` file, e.g. `git show <rev>:imujax/bridges/torch/reader.py > /tmp/old_reader.py`); peak RSS is the
child's ru_maxrss growth during the load. The hostile files are built under --tmp (the 600 MB file too; nothing in
the repository).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READER = os.path.join(HERE, "imujax", "bridges", "torch", "reader.py")

CHILD = r"""
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("bench_reader", sys.argv[1])
reader = importlib.util.module_from_spec(spec); spec.loader.exec_module(reader)
path, mmap = sys.argv[2], sys.argv[3] == "1"
def hwm():  # peak RSS of this process image in KiB (ru_maxrss would carry the parent's peak across exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
before = hwm()
start = time.perf_counter()
try:
    obj = reader.load_checkpoint(path, mmap=mmap)
    outcome = "loaded"
except Exception as err:
    outcome = f"{type(err).__name__}: {str(err)[-160:]}"
secs = time.perf_counter() - start
print(json.dumps({"rss_mib": (hwm() - before) / 1024, "secs": secs,
                  "outcome": outcome}))
"""


def run(reader_path: str, path: str, mmap: bool) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", CHILD, reader_path, path, "1" if mmap else "0"], capture_output=True,
                         text=True, env=env, timeout=600)
    if res.returncode:
        return {"rss_mib": float("nan"), "secs": float("nan"), "outcome": f"died rc={res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def G(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def zip_with(path: str, pkl: bytes, records: dict | None = None, compress=zipfile.ZIP_DEFLATED) -> str:
    with zipfile.ZipFile(path, "w", compress, compresslevel=1) as zf:
        zf.writestr("a/data.pkl", pkl)
        for key, data in (records or {}).items():
            zf.writestr(f"a/data/{key}", data)
    return path


def tensor_pickle(entries: list[tuple[str, str, int, tuple, tuple, int]], extra: bytes = b"") -> bytes:
    """A protocol-2 pickle of {name: _rebuild_tensor_v2(storage(key, numel), offset, size, stride)}."""
    out = [b"\x80\x02}q\x00", G("torch._utils", "_rebuild_tensor_v2"), b"q\x010", G("torch", "FloatStorage"),
           b"q\x020", G("collections", "OrderedDict"), b"q\x030"]  # memoize the globals, pop them
    for name, key, numel, size, stride, offset in entries:
        ints = lambda xs: b"(" + b"".join(b"\x8a\x08" + struct.pack("<q", x) for x in xs) + b"t"  # noqa: E731
        out += [b"X" + struct.pack("<I", len(name)) + name.encode(), b"h\x01((X\x07\x00\x00\x00storageh\x02X",
                struct.pack("<I", len(key)) + key.encode(), b"X\x03\x00\x00\x00cpu", b"\x8a\x08",
                struct.pack("<q", numel), b"tQ", b"\x8a\x08" + struct.pack("<q", offset), ints(size), ints(stride),
                b"\x89h\x03)Rtq\x04R", b"s"]
    return b"".join(out) + extra + b"."


def hostile_files(tmp: str) -> dict[str, tuple[str, bool]]:
    files: dict[str, tuple[str, bool]] = {}

    def add(name, path, mmap=True):
        files[name] = (path, mmap)

    add("EMPTY_SET x 3M in deflated data.pkl",
        zip_with(f"{tmp}/sets.pth", b"\x80\x02" + b"\x8f" * 3_000_000 + b"."))
    add("2M placeholder objects kept in a list",
        zip_with(f"{tmp}/placeholders.pth", b"\x80\x02]q\x00" + G("foo", "Bar") + b"q\x010"
                 + b"h\x01)Ra" * 2_000_000 + b"."))
    add("dict of 4M int keys", zip_with(f"{tmp}/dict.pth", b"\x80\x02}" + b"".join(
        b"J" + struct.pack("<i", i) + b"Ns" for i in range(4_000_000)) + b"."))
    add("list(range(2**30))", zip_with(f"{tmp}/range.pth", b"\x80\x02" + G("builtins", "list") + G("builtins", "range")
                                        + b"J\x00\x00\x00\x40\x85R\x85R."))
    add("memo LONG_BINPUT 2**27", zip_with(f"{tmp}/memo.pth", b"\x80\x02Nr\x00\x00\x00\x08."))
    add("dict key nested 1M tuples", zip_with(f"{tmp}/deep.pth", b"\x80\x02})" + b"\x85" * 1_000_000 + b"Ns."))
    numel = 128 << 20  # 512 MiB of zeros, deflated to ~0.5 MB
    path = f"{tmp}/storage_bomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("a/data.pkl", tensor_pickle([("w", "0", numel, (numel,), (1,), 0)]))
        with zf.open("a/data/0", "w", force_zip64=True) as member:
            for _ in range(numel * 4 // (16 << 20)):
                member.write(bytes(16 << 20))
    add("storage record inflating to 512 MiB", path, False)
    add("expand view 1e6 x 1e6 (stride 0)", zip_with(f"{tmp}/expand.pth", tensor_pickle(
        [("w", "0", 1, (10 ** 6, 10 ** 6), (0, 0), 0)]), {"0": bytes(4)}), False)
    add("3000 tensors aliasing one 1 MiB storage (mmap=False)", zip_with(f"{tmp}/alias.pth", tensor_pickle(
        [(f"t{i}", "0", 1 << 18, (1 << 18,), (1,), 0) for i in range(3000)]), {"0": bytes(1 << 20)}), False)
    header = b'{"a":[' + b"0," * (32 << 20) + b'0]}'
    with open(f"{tmp}/commas.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
    add("safetensors header of 32M JSON numbers (64 MiB)", f"{tmp}/commas.safetensors")
    return files


def valid_checkpoint(tmp: str, size_mb: int) -> str:
    path = f"{tmp}/valid_{size_mb}mb.pth"
    if not os.path.exists(path):
        import torch
        torch.manual_seed(0)
        d, blocks = 1024, max(1, round(size_mb / 50))  # a ViT-L-like block is ~50 MB of fp32
        sd = {}
        for b in range(blocks):
            for name, shape in (("attn.qkv.weight", (3 * d, d)), ("attn.qkv.bias", (3 * d,)),
                                ("attn.proj.weight", (d, d)), ("attn.proj.bias", (d,)), ("norm1.weight", (d,)),
                                ("norm1.bias", (d,)), ("mlp.fc1.weight", (4 * d, d)), ("mlp.fc1.bias", (4 * d,)),
                                ("mlp.fc2.weight", (d, 4 * d)), ("mlp.fc2.bias", (d,)), ("norm2.weight", (d,)),
                                ("norm2.bias", (d,))):
                sd[f"blocks.{b}.{name}"] = torch.randn(shape)
        torch.save({"model": sd, "epoch": 10}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default=None, help="reader.py to compare throughput against")
    parser.add_argument("--tmp", default="/tmp/reader_bench")
    parser.add_argument("--size_mb", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip_hostile", action="store_true")
    parser.add_argument("--skip_valid", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.tmp, exist_ok=True)
    if not args.skip_hostile:
        print("| hostile file | file MiB | limit MiB (2x+256) | peak RSS growth MiB | outcome |")
        print("|---|---|---|---|---|")
        for name, (path, mmap) in hostile_files(args.tmp).items():
            size = os.path.getsize(path) / 2 ** 20
            r = run(READER, path, mmap)
            print(f"| {name} | {size:.2f} | {2 * size + 256:.0f} | {r['rss_mib']:.0f} | {r['outcome'][:110]} |",
                  flush=True)
    if args.skip_valid:
        return
    path = valid_checkpoint(args.tmp, args.size_mb)
    size = os.path.getsize(path) / 2 ** 20
    readers = {"this": READER, **({"baseline": args.baseline} if args.baseline else {})}
    for mmap in (False, True):
        times: dict[str, list[float]] = {k: [] for k in readers}
        rss: dict[str, float] = {}
        for _ in range(args.rounds):
            for label, reader_path in readers.items():  # alternate, so drift hits both alike
                r = run(reader_path, path, mmap)
                assert r["outcome"] == "loaded", r
                times[label].append(r["secs"])
                rss[label] = r["rss_mib"]
        for label in readers:
            med = statistics.median(times[label])
            print(f"valid {size:.0f} MiB checkpoint, mmap={mmap}, {label} reader: median {med * 1000:.1f} ms "
                  f"({size / med:.0f} MiB/s) over {args.rounds} rounds, peak RSS growth {rss[label]:.0f} MiB",
                  flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
