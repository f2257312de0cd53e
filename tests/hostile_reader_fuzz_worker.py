"""Fuzz worker for test_hostile_reader_fuzz.py: mutates valid checkpoints and loads each mutant.

Run as `python tests/hostile_reader_fuzz_worker.py SEED CASES AS_LIMIT_BYTES FILE...`, under an address-space
limit it sets itself. Imports only the reader module (not the imujax package), so the limit stays tight. Prints one
JSON line: outcome counts and every failure (an exception other than the reader's named errors, a timeout, or an
out-of-memory). A crash shows as a non-zero exit; the case being run is on stderr.
"""
from __future__ import annotations

import collections
import importlib.util
import io
import json
import os
import pickletools
import random
import resource
import signal
import struct
import sys
import tempfile
import zipfile

INTERESTING_INTS = [0, 1, 2, 7, 255, 256, 65535, 2 ** 31 - 1, 2 ** 27, -1, -2 ** 31, 2 ** 30 + 1]
# Opcodes worth inserting: containers, memo, calls, state, stack shuffles, odd protocol ones.
INSERTS = [b"(", b")", b"]", b"}", b"\x8f", b"\x90", b"t", b"\x85", b"\x86", b"\x87", b"l", b"d", b"a", b"e",
           b"s", b"u", b"R", b"\x81", b"\x92", b"b", b"0", b"1", b"2", b".", b"N", b"\x94", b"q\x00", b"h\x00",
           b"r\xff\xff\xff\x07", b"j\xff\xff\xff\x07", b"\x82\x01", b"Q", b"\x95\x00\x00\x00\x00\x00\x00\x01\x00",
           b"cbuiltins\nlist\n", b"cnumpy\ndtype\n", b"ctorch\ndevice\n", b"cfoo\nBar\n", b"X\xff\xff\xff\x7f",
           b"J\xff\xff\xff\x7f", b"K\x00", b"\x8a\x08" + b"\xff" * 8, b"\x8e" + b"\xff" * 8]


def load_reader(repo: str):
    spec = importlib.util.spec_from_file_location(
        "fuzz_reader", os.path.join(repo, "imujax", "bridges", "torch", "reader.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ops(pkl: bytes) -> list[tuple[str, object, int]]:
    try:
        return [(op.name, arg, pos) for op, arg, pos in pickletools.genops(pkl)]
    except Exception:  # noqa: BLE001 - an already-mutated pickle may not parse
        return []


def mutate_pickle(pkl: bytes, rng: random.Random) -> bytes:
    """One structural mutation of a pickle: opcode insertion, memo index, length or int field."""
    found = ops(pkl)
    if not found:
        return pkl
    kind = rng.choice(["insert", "memo", "length", "int", "delete"])
    name, arg, pos = rng.choice(found)
    if kind == "insert":
        return pkl[:pos] + rng.choice(INSERTS) + pkl[pos:]
    if kind == "delete":
        nxt = min((p for _, _, p in found if p > pos), default=len(pkl))
        return pkl[:pos] + pkl[nxt:]
    if kind == "memo":
        memo = [(n, p) for n, _, p in found if n in ("BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET")]
        if memo:
            n, p = rng.choice(memo)
            if n.startswith("LONG"):
                return pkl[:p + 1] + struct.pack("<I", rng.choice([2 ** 27, 2 ** 32 - 1, rng.randrange(64)])) \
                    + pkl[p + 5:]
            return pkl[:p + 1] + bytes([rng.randrange(256)]) + pkl[p + 2:]
    if kind == "length":
        lens = [(n, p) for n, _, p in found if n in ("BINUNICODE", "BINBYTES", "SHORT_BINUNICODE", "SHORT_BINBYTES",
                                                   "SHORT_BINSTRING", "BINSTRING", "FRAME")]
        if lens:
            n, p = rng.choice(lens)
            if n.startswith("SHORT"):
                return pkl[:p + 1] + bytes([rng.randrange(256)]) + pkl[p + 2:]
            width = 8 if n == "FRAME" else 4
            value = rng.choice([0, 1, 2 ** 31 - 1, 2 ** 32 - 1, rng.randrange(1 << 12)])
            return pkl[:p + 1] + value.to_bytes(width, "little") + pkl[p + 1 + width:]
    ints = [(n, p) for n, _, p in found if n in ("BININT", "BININT1", "BININT2")]
    if ints:
        n, p = rng.choice(ints)
        value = rng.choice(INTERESTING_INTS + [rng.randrange(-5, 1 << 20)])
        return pkl[:p] + b"J" + struct.pack("<i", max(-2 ** 31, min(2 ** 31 - 1, value))) \
            + pkl[p + {"BININT": 5, "BININT1": 2, "BININT2": 3}[n]:]
    return pkl[:pos] + rng.choice(INSERTS) + pkl[pos:]


def rezip(raw: bytes, rng: random.Random) -> bytes:
    """Mutate data.pkl or a storage record inside a zip and rewrite it with valid CRCs (so the mutant is parsed)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as zin:
        members = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    out = io.BytesIO()
    pick = rng.random()
    compress = zipfile.ZIP_DEFLATED if rng.random() < 0.2 else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", compress) as zout:
        for name, data in members:
            if name.endswith("data.pkl") and pick < 0.8:
                for _ in range(rng.choice([1, 1, 2, 3])):
                    data = mutate_pickle(data, rng)
            elif "/data/" in name and pick >= 0.8 and rng.random() < 0.5:
                data = data[:rng.randrange(len(data) + 1)] if rng.random() < 0.5 else data + bytes(rng.randrange(64))
            zout.writestr(name, data)
    return out.getvalue()


def mutate_file(raw: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["flip", "flip", "truncate", "structure", "structure", "structure"])
    if kind == "truncate":
        return kind, raw[:rng.randrange(len(raw))]
    if kind == "structure":
        if raw[:2] == b"PK":
            return "zip-structure", rezip(raw, rng)
        if raw[:1] == b"\x80":  # legacy stream: the main pickle is the 4th one in the file
            return "legacy-structure", mutate_pickle(raw, rng) if rng.random() < 0.3 else _mutate_nth(raw, rng)
        head = int.from_bytes(raw[:8], "little")  # safetensors: edit the JSON header's digits
        header = bytearray(raw[8:8 + head])
        digits = [i for i, c in enumerate(header) if chr(c).isdigit()]
        for _ in range(rng.choice([1, 2])):
            if digits:
                header[rng.choice(digits)] = ord(rng.choice("0123456789"))
        return "st-structure", raw[:8] + bytes(header) + raw[8 + head:]
    data = bytearray(raw)
    for _ in range(rng.choice([1, 2, 4, 8])):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return kind, bytes(data)


def _mutate_nth(raw: bytes, rng: random.Random) -> bytes:
    buf, starts = io.BytesIO(raw), []
    try:
        for _ in range(5):
            starts.append(buf.tell())
            for op, _, _ in pickletools.genops(buf):
                if op.name == "STOP":
                    break
    except Exception:  # noqa: BLE001
        return raw
    start, end = starts[3], starts[4]
    return raw[:start] + mutate_pickle(raw[start:end], rng) + raw[end:]


class Timeout(Exception):
    pass


def main() -> None:
    seed, cases, as_limit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    files = sys.argv[4:]
    reader = load_reader(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

    def on_alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    rng = random.Random(seed)
    bases = [(os.path.basename(f), open(f, "rb").read()) for f in files]
    outcomes: collections.Counter = collections.Counter()
    failures = []
    tmp = tempfile.mkdtemp(prefix="fuzz_reader_")
    for case in range(cases):
        name, raw = bases[case % len(bases)]
        kind, mutant = mutate_file(raw, rng)
        path = os.path.join(tmp, name)
        with open(path, "wb") as fh:
            fh.write(mutant)
        mmap = rng.random() < 0.5
        print(f"case {case} {name} {kind} mmap={mmap}", file=sys.stderr, flush=True)
        signal.alarm(20)
        try:
            got = reader.load_checkpoint(path, mmap=mmap)
            try:
                reader.find_state_dict(got)
            except reader.CheckpointFormatError:
                pass
            outcomes["loaded"] += 1
        except reader.CheckpointTooLargeError as err:
            if "ran out of memory" in str(err):
                failures.append([case, name, kind, "out of memory despite the budget", str(err)[:300]])
            outcomes[type(err).__name__] += 1
        except (reader.CheckpointFormatError, reader.UnsafeCheckpointError) as err:
            outcomes[type(err).__name__] += 1
        except Timeout:
            failures.append([case, name, kind, "timeout", ""])
        except BaseException as err:  # noqa: BLE001 - this is what the fuzz looks for
            failures.append([case, name, kind, type(err).__name__, str(err)[:300]])
        finally:
            signal.alarm(0)
        got = None
    print(json.dumps({"outcomes": outcomes, "failures": failures}))


if __name__ == "__main__":
    main()
