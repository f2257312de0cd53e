"""Hostile checkpoints against the torch-free reader: every attack file is built here, none is committed.

Classes (issue 21 §1-3): memory safety (dtype/BUILD smuggling, process-global state), resource bounds (memo,
container, stride, zip-bomb and aliasing tricks), agreement with torch.load(weights_only=True) / safetensors (zip
local headers, CRCs, record lengths, safetensors offsets/keys/metadata, parameters given twice), and named errors
only (the convert CLI prints one line). The seeded fuzz test lives in test_hostile_reader_fuzz.py.
"""
from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from imujax.bridges.torch import reader
from imujax.bridges.torch.reader import (CheckpointFormatError, CheckpointTooLargeError, RefusedGlobal,
                                         UnsafeCheckpointError)

NAMED = (CheckpointFormatError, UnsafeCheckpointError)

# ---------------------------------------------------------------------------------------------- pickle assembly

PROTO, STOP, MARK, NONE = b"\x80\x02", b".", b"(", b"N"
TUPLE, T1, T2, T3, EMPTY_TUPLE = b"t", b"\x85", b"\x86", b"\x87", b")"
REDUCE, BUILD, EMPTY_DICT, SETITEM, EMPTY_LIST, APPEND = b"R", b"b", b"}", b"s", b"]", b"a"


def G(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def S(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def I(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def B(data: bytes) -> bytes:  # bytes as protocol 2 writes them
    return G("_codecs", "encode") + S(data.decode("latin1")) + S("latin1") + T2 + REDUCE


def write_zip(path, pkl: bytes, records: dict[str, bytes] | None = None, compress: int = zipfile.ZIP_STORED) -> str:
    with zipfile.ZipFile(path, "w", compress) as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", "little")
        for key, data in (records or {}).items():
            zf.writestr(f"archive/data/{key}", data)
    return str(path)


class _Storage:
    def __init__(self, key: str, numel: int, kind=torch.FloatStorage):
        self.key, self.numel, self.kind = key, numel, kind


class _Call:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", obj.kind, obj.key, "cpu", obj.numel) if isinstance(obj, _Storage) else None


def tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, metadata=None) -> _Call:
    args = (storage, offset, size, stride, False, collections.OrderedDict())
    return _Call(torch._utils._rebuild_tensor_v2, args + ((metadata,) if metadata else ()))


def torch_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def one_tensor_zip(path, size, stride, numel=4, offset=0, metadata=None, data=None) -> str:
    pkl = torch_pickle({"w": tensor(_Storage("0", numel), offset, size, stride, metadata)})
    return write_zip(path, pkl, {"0": data if data is not None else np.arange(numel, dtype=np.float32).tobytes()})


def expect(path, error=NAMED, match=None, **kwargs):
    with pytest.raises(error, match=match) as info:
        reader.load_checkpoint(str(path), **kwargs)
    assert "\n" not in str(info.value)
    return info.value


# ---------------------------------------------------------------------------------------------- 1. memory safety


def test_object_and_structured_dtypes_never_reach_numpy(tmp_path):
    # What numpy itself pickles for object / structured / void arrays and dtypes: all refused by the dtype table.
    attacks = [np.array([1, "x"], dtype=object), np.zeros(2, dtype=[("a", "<f8"), ("b", "O")]),
               np.dtype([("a", "<f8"), ("b", "O")]), np.zeros(2, dtype="V8"), np.array(1.0, dtype=object)]
    for i, obj in enumerate(attacks):
        path = write_zip(tmp_path / f"np{i}.pth", pickle.dumps({"x": obj}, protocol=2))
        expect(path, UnsafeCheckpointError)


def test_dtype_build_smuggling_is_refused(tmp_path):
    # A plain 'f8' dtype given a structured state with an object field through BUILD (the SIGSEGV of issue 21).
    state = (MARK + I(3) + S("|") + NONE + S("a") + T1 + EMPTY_DICT + S("a") + G("numpy", "dtype") + S("f8")
             + b"\x89\x88" + T3 + REDUCE + I(0) + T2 + SETITEM + I(8) + I(1) + I(63) + TUPLE)
    dtype = G("numpy", "dtype") + S("f8") + b"\x89\x88" + T3 + REDUCE + state + BUILD
    array = (G("numpy.core.multiarray", "_reconstruct") + G("numpy", "ndarray") + I(0) + T1 + B(b"b") + T3 + REDUCE
             + MARK + I(1) + I(2) + T1 + dtype + b"\x89" + B(b"\x01" * 16) + TUPLE + BUILD)
    expect(write_zip(tmp_path / "smuggle.pth", PROTO + EMPTY_DICT + S("x") + array + SETITEM + STOP),
           UnsafeCheckpointError, "not that of a plain numeric dtype")
    # numpy.scalar with a smuggled dtype, and an object dtype by name
    expect(write_zip(tmp_path / "scalar.pth", PROTO + G("numpy.core.multiarray", "scalar") + dtype + B(b"\0" * 8)
                     + T2 + REDUCE + STOP), UnsafeCheckpointError)
    expect(write_zip(tmp_path / "obj.pth", PROTO + G("numpy", "dtype") + S("O") + T1 + REDUCE + STOP),
           UnsafeCheckpointError, "only plain numeric dtypes")


@pytest.mark.parametrize("target", [
    G("torch", "FloatStorage"), G("torch", "float32"), G("torch", "device"), G("torch._utils", "_rebuild_tensor_v2"),
    G("collections", "OrderedDict"), G("numpy", "ndarray"), G("some.module", "Class"),
    G("torch", "device") + S("cpu") + T1 + REDUCE])
def test_build_reaches_no_allow_listed_object(tmp_path, target):
    # slot state (None, {attr: value}) would be setattr() on the target: class attributes, function defaults, ...
    state = NONE + EMPTY_DICT + S("dtype") + G("torch", "int64") + SETITEM + S("__defaults__") + S("cuda") + T1 \
        + SETITEM + T2
    expect(write_zip(tmp_path / "build.pth", PROTO + target + state + BUILD + STOP), UnsafeCheckpointError, "BUILD")


def test_build_on_a_tensor_is_refused(tmp_path):
    pkl = torch_pickle(tensor(_Storage("0", 4), 0, (4,), (1,)))[:-1]
    state = MARK + I(1) + I(2) + T1 + G("numpy", "dtype") + S("f8") + b"\x89\x88" + T3 + REDUCE + b"\x89" \
        + B(b"\0" * 16) + TUPLE
    expect(write_zip(tmp_path / "t.pth", pkl + state + BUILD + STOP, {"0": bytes(16)}), UnsafeCheckpointError)


def test_no_file_changes_how_a_later_file_reads(tmp_path):
    attacks = [
        G("torch", "device") + NONE + EMPTY_DICT + S("__defaults__") + S("meta") + T1 + SETITEM + T2 + BUILD,
        G("torch", "device") + EMPTY_DICT + S("fn") + NONE + SETITEM + BUILD,
        G("foo.bar", "Thing") + NONE + EMPTY_DICT + S("global_name") + S("evil") + SETITEM + T2 + BUILD,
        G("foo.bar", "Thing") + NONE + EMPTY_DICT + S("__setstate__") + G("torch", "device") + SETITEM + T2 + BUILD,
        G("torch", "FloatStorage") + NONE + EMPTY_DICT + S("dtype") + G("numpy", "dtype") + S("O") + T1 + REDUCE
        + SETITEM + T2 + BUILD,
    ]
    for i, attack in enumerate(attacks):
        with pytest.raises(NAMED):
            reader.load_checkpoint(write_zip(tmp_path / f"a{i}.pth", PROTO + attack + STOP))
    pkl = PROTO + EMPTY_DICT + S("dev") + G("torch", "device") + S("cpu") + T1 + REDUCE + SETITEM \
        + S("thing") + G("foo.bar", "Thing") + EMPTY_TUPLE + REDUCE + EMPTY_DICT + S("a") + I(1) + SETITEM + BUILD \
        + SETITEM + STOP
    got = reader.load_checkpoint(write_zip(tmp_path / "later.pth", pkl))
    assert got["dev"] == "cpu"
    assert got["thing"].global_name == "foo.bar.Thing" and got["thing"].state == {"a": 1}
    path = str(tmp_path / "real.pth")
    torch.save({"w": torch.arange(4.0), "i": torch.arange(3)}, path)
    got = reader.load_checkpoint(path)
    assert got["w"].dtype == np.float32 and got["i"].dtype == np.int64


def test_unsupported_opcodes_are_refused(tmp_path):
    for name, pkl in {"EXT1": PROTO + b"\x82\x01" + STOP, "INST": b"(ifoo\nbar\n" + STOP,
                      "OBJ": PROTO + MARK + G("foo", "bar") + b"o" + STOP, "PERSID": b"Pfoo\n" + STOP}.items():
        expect(write_zip(tmp_path / f"{name}.pth", pkl), NAMED)


def test_deep_keys_cannot_crash_hashing(tmp_path):
    deep = PROTO + EMPTY_DICT + EMPTY_TUPLE + T1 * 100_000 + NONE + SETITEM + STOP  # hashing it overflows C stack
    expect(write_zip(tmp_path / "deep.pth", deep, compress=zipfile.ZIP_DEFLATED), CheckpointFormatError,
           "deeper than 16 levels")
    unhashable = PROTO + EMPTY_DICT + EMPTY_LIST + NONE + SETITEM + STOP
    expect(write_zip(tmp_path / "list.pth", unhashable), CheckpointFormatError, "cannot be a dict key")


def test_keys_cannot_be_made_to_collide_or_rechecked(tmp_path):
    # ints differing by 2**61 - 1 share a hash: 100k of them would make the dict quadratic; a few are fine
    def colliding(n):
        return PROTO + EMPTY_DICT + b"".join(b"\x8a\x0a" + (5 + k * ((1 << 61) - 1)).to_bytes(10, "little")
                                             + NONE + SETITEM for k in range(1, n + 1)) + STOP
    expect(write_zip(tmp_path / "ints.pth", colliding(100_000)), CheckpointFormatError, "more than 4096 float")
    assert len(reader.load_checkpoint(write_zip(tmp_path / "few.pth", colliding(10)))) == 10
    floats = PROTO + G("builtins", "set") + MARK + b"G" + struct.pack(">d", 0.9) + b"G" + struct.pack(">d", 0.999) \
        + b"l" + T1 + REDUCE + STOP
    assert reader.load_checkpoint(write_zip(tmp_path / "floats.pth", floats)) == {0.9, 0.999}
    # tuple hashes are not cached, so key size is capped; a 64-item key handed by GET to 100k SETITEMs is checked once
    expect(write_zip(tmp_path / "wide.pth", PROTO + EMPTY_DICT + MARK + b"K\x01" * 65 + TUPLE + NONE + SETITEM
                     + STOP), CheckpointFormatError, "more than 64 items")
    big_key = MARK + b"K\x01" * 64 + TUPLE + b"q\x00"
    pkl = PROTO + EMPTY_DICT + big_key + NONE + SETITEM + (b"h\x00" + NONE + SETITEM) * 100_000 + STOP
    assert len(reader.load_checkpoint(write_zip(tmp_path / "big_key.pth", pkl))) == 1


def test_self_containing_and_deep_state_dicts():
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(CheckpointFormatError, match="contains itself"):
        reader.find_state_dict({"state_dict": {"a": cyclic}})
    deep: dict = {"w": np.ones(2, np.float32)}
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = {"m": deep}
    assert list(reader.find_state_dict({"state_dict": deep})) == [".".join(["m"] * 5000 + ["w"])]


# ---------------------------------------------------------------------------------------------- 2. resource bounds


def test_memo_index_bomb(tmp_path):
    expect(write_zip(tmp_path / "memo.pth", PROTO + NONE + b"r" + struct.pack("<I", 1 << 27) + STOP),
           CheckpointFormatError, "memo index 134217728 is out of range")
    expect(write_zip(tmp_path / "get.pth", PROTO + b"j" + struct.pack("<I", 1 << 27) + STOP), CheckpointFormatError,
           "Memo value not found")


@pytest.mark.parametrize("builder", ["list", "tuple", "set", "frozenset", "bytes", "bytearray", "dict"])
def test_containers_built_from_ranges_are_charged(tmp_path, builder):
    pkl = PROTO + G("__builtin__", builder) + G("__builtin__", "xrange") + I(1 << 30) + T1 + REDUCE + T1 + REDUCE \
        + STOP
    expect(write_zip(tmp_path / "range.pth", pkl), CheckpointTooLargeError, f"builtins.{builder} of 1073741824 items")
    expect(write_zip(tmp_path / "int.pth", PROTO + G("builtins", "bytearray") + I(1 << 30) + T1 + REDUCE + STOP),
           UnsafeCheckpointError)


def test_pickle_object_bomb_in_compressed_data_pkl(tmp_path):
    # 3 MB of EMPTY_SET opcodes deflates to a few KB but would build ~650 MB of sets (default limit: 256 MiB).
    path = write_zip(tmp_path / "sets.pth", PROTO + b"\x8f" * 3_000_000 + STOP, compress=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 20_000
    err = expect(path, CheckpointTooLargeError, "max_bytes=67108864", max_bytes=64 << 20)  # (a smaller one: faster)
    assert "the pickle's objects" in str(err)


def _patch_sizes(path: str, member: str, size: int) -> None:
    """Set a member's uncompressed size in both its local header and the central directory (a lying archive)."""
    data = bytearray(open(path, "rb").read())
    info = zipfile.ZipFile(path).getinfo(member)
    struct.pack_into("<L", data, info.header_offset + 22, size)
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46:pos + 46 + name_len].decode() == member:
            struct.pack_into("<L", data, pos + 24, size)
        pos = data.find(b"PK\x01\x02", pos + 4)
    open(path, "wb").write(bytes(data))


def test_zip_bombs_in_data_pkl_and_storage(tmp_path):
    pkl = torch_pickle({"w": tensor(_Storage("0", 4), 0, (4,), (1,))})
    path = write_zip(tmp_path / "lie.pth", pkl, {"0": bytes(16)}, compress=zipfile.ZIP_DEFLATED)
    _patch_sizes(path, "archive/data.pkl", 1 << 31)
    expect(path, CheckpointFormatError, "more than deflate can expand")
    # A storage declared and really inflating to 96 MiB of zeros, from a file of ~100 KB (refused under a 64 MiB
    # limit here to keep the test fast; the default limit works the same, see the lying data.pkl above).
    numel = 24 * (1 << 20)
    bomb = str(tmp_path / "storage_bomb.pth")
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("archive/data.pkl", torch_pickle({"w": tensor(_Storage("0", numel), 0, (numel,), (1,))}))
        with zf.open("archive/data/0", "w", force_zip64=True) as member:
            chunk = bytes(16 << 20)
            for _ in range(numel * 4 // len(chunk)):
                member.write(chunk)
    assert os.path.getsize(bomb) < 1_000_000
    expect(bomb, CheckpointTooLargeError, "storage '0'", max_bytes=64 << 20)
    assert reader.load_checkpoint(bomb, max_bytes=256 << 20)["w"].shape == (numel,)  # an explicit, larger limit


def test_stride_tricks_stay_views_or_are_refused(tmp_path):
    got = reader.load_checkpoint(one_tensor_zip(tmp_path / "expand.pth", (10 ** 6, 10 ** 6), (0, 0)), mmap=False)
    w = got["w"]
    assert w.shape == (10 ** 6, 10 ** 6) and w.strides == (0, 0) and not w.flags.writeable  # 4 TB logical, 4 B real
    overlap = reader.load_checkpoint(one_tensor_zip(tmp_path / "overlap.pth", (3, 2), (1, 1)), mmap=False)["w"]
    np.testing.assert_array_equal(overlap, [[0, 1], [1, 2], [2, 3]])
    assert not overlap.flags.writeable
    expect(one_tensor_zip(tmp_path / "big.pth", (1 << 40, 1 << 40), (1 << 40, 1)), CheckpointFormatError,
           "storage '0' holds only 4")
    expect(one_tensor_zip(tmp_path / "huge.pth", (2,), (1 << 63,)), CheckpointFormatError, "below 2\\*\\*62")
    expect(one_tensor_zip(tmp_path / "neg.pth", (2,), (-1,)), CheckpointFormatError, "non-negative")
    expect(one_tensor_zip(tmp_path / "ndim.pth", (1,) * 65, (1,) * 65), CheckpointFormatError, "at most 64")
    expect(one_tensor_zip(tmp_path / "offset.pth", (2,), (1,), offset=1 << 70), CheckpointFormatError, "offset")
    expect(one_tensor_zip(tmp_path / "negbit.pth", (10 ** 5, 10 ** 5), (0, 0), metadata={"neg": True}),
           CheckpointTooLargeError, "negated")


def test_aliases_of_one_storage_are_read_once(tmp_path):
    storage = _Storage("0", 1 << 18)  # 1 MiB, 3000 tensors over it: 3 GiB if each were copied
    pkl = torch_pickle({f"t{i}": tensor(storage, i, (1 << 17,), (1,)) for i in range(3000)})
    path = write_zip(tmp_path / "alias.pth", pkl, {"0": np.arange(1 << 18, dtype=np.float32).tobytes()})
    for mmap in (True, False):
        got = reader.load_checkpoint(path, mmap=mmap)
        assert all(np.shares_memory(got["t0"], t) for t in got.values())
        assert got["t2999"][0] == 2999 and got["t0"].flags.writeable != mmap


def test_limit_is_named_and_can_be_raised(tmp_path):
    path = str(tmp_path / "ok.pth")
    torch.save({"w": torch.zeros(1 << 20)}, path)
    err = expect(path, CheckpointTooLargeError, "max_bytes=1000", max_bytes=1000)
    assert "ok.pth" in str(err)
    assert reader.load_checkpoint(path, mmap=False)["w"].shape == (1 << 20,)


# ---------------------------------------------------------------------------------------------- 3. agreement


@pytest.fixture()
def saved(tmp_path) -> str:
    path = str(tmp_path / "saved.pth")
    torch.save({"a": torch.arange(64.0), "b": torch.ones(3, dtype=torch.int64)}, path)
    return path


def _member_span(path: str, member: str) -> tuple[int, int]:
    info = zipfile.ZipFile(path).getinfo(member)
    raw = open(path, "rb").read()
    name_len, extra_len = struct.unpack_from("<2H", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    return start, start + info.compress_size


def _flip(path: str, pos: int) -> None:
    data = bytearray(open(path, "rb").read())
    data[pos] ^= 0x40
    open(path, "wb").write(bytes(data))


def test_crc_mismatch(saved):
    start, _ = _member_span(saved, "saved/data/0")
    _flip(saved, start + 5)
    expect(saved, CheckpointFormatError, "CRC mismatch in record 'saved/data/0'", mmap=False)
    assert reader.load_checkpoint(saved, mmap=True)["a"].shape == (64,)  # mapped bytes are not checksummed
    start, _ = _member_span(saved, "saved/data.pkl")
    _flip(saved, start + 40)
    expect(saved, CheckpointFormatError, "CRC mismatch in record 'saved/data.pkl'", mmap=True)


def test_local_header_and_descriptor_disagreeing_with_central_directory(saved, tmp_path):
    info = zipfile.ZipFile(saved).getinfo("saved/data/0")
    _, end = _member_span(saved, "saved/data/0")
    bad = str(tmp_path / "descriptor.pth")
    open(bad, "wb").write(open(saved, "rb").read())
    _flip(bad, end + 5)  # torch writes data descriptors: their CRC must match the central directory
    expect(bad, CheckpointFormatError, "'saved/data/0' disagrees with the central directory \\(data descriptor")
    plain = write_zip(tmp_path / "plain.pth", torch_pickle({"w": tensor(_Storage("0", 4), 0, (4,), (1,))}),
                      {"0": bytes(16)})
    info = zipfile.ZipFile(plain).getinfo("archive/data/0")
    for field, match in ((22, "sizes"), (14, "CRC"), (30, "name")):  # uncompressed size, crc, first name byte
        patched = str(tmp_path / f"local{field}.pth")
        open(patched, "wb").write(open(plain, "rb").read())
        _flip(patched, info.header_offset + field)
        expect(patched, CheckpointFormatError, f"disagrees with the central directory \\({match}")
    overlap = str(tmp_path / "overlap.pth")  # central entry of data/0 pointing at data.pkl's bytes
    data = bytearray(open(plain, "rb").read())
    pos = data.rfind(b"archive/data/0") - 46  # its central directory entry
    struct.pack_into("<L", data, pos + 42, 0)
    open(overlap, "wb").write(bytes(data))
    expect(overlap, CheckpointFormatError, "overlap")


def test_storage_record_longer_than_declared(saved, tmp_path):
    bad = str(tmp_path / "long.pth")
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info.filename.replace("saved/", "long/"), data + bytes(8) if info.filename.endswith(
                "data/0") else data)
    expect(bad, CheckpointFormatError, "more than the 256 bytes the pickle declares")


def test_same_storage_declared_twice_differently(tmp_path):
    pkl = torch_pickle({"a": tensor(_Storage("0", 4), 0, (4,), (1,)),
                        "b": tensor(_Storage("0", 2, torch.DoubleStorage), 0, (2,), (1,))})
    expect(write_zip(tmp_path / "two.pth", pkl, {"0": bytes(16)}), CheckpointFormatError, "declared as 4 x float32")


def _safetensors(path, header: bytes | dict, data: bytes) -> str:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(raw)) + raw + data)
    return str(path)


def test_safetensors_agreement(tmp_path):
    f32 = {"dtype": "F32", "shape": [2]}
    cases = {
        "overlap": ({"a": {**f32, "data_offsets": [0, 8]}, "b": {**f32, "data_offsets": [4, 12]}}, 12, "tile"),
        "gap": ({"a": {**f32, "data_offsets": [0, 8]}, "b": {**f32, "data_offsets": [12, 20]}}, 20, "tile"),
        "tail": ({"a": {**f32, "data_offsets": [0, 8]}}, 12, "cover 8 bytes of a 12-byte"),
        "dup": (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],'
                b'"data_offsets":[0,8]}}', 8, "key 'a' twice"),
        "meta": ({"__metadata__": {"epoch": 3}, "a": {**f32, "data_offsets": [0, 8]}}, 8, "strings to strings"),
        "dtype": ({"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, 8, "unknown or missing dtype"),
        "deep": (b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}", 0, "not valid JSON"),
        "shape": ({"a": {"dtype": "F32", "shape": [1 << 62, 4], "data_offsets": [0, 8]}}, 8, "bad shape"),
    }
    for name, (header, size, match) in cases.items():
        expect(_safetensors(tmp_path / f"{name}.safetensors", header, bytes(size)), CheckpointFormatError, match)


def test_parameter_given_twice_is_refused(tmp_path):
    path = str(tmp_path / "twice.pth")
    torch.save({"state_dict": {"enc.w": torch.zeros(2), "enc": {"w": torch.ones(2)}}}, path)
    with pytest.raises(CheckpointFormatError, match="parameter 'enc.w' twice"):
        reader.find_state_dict(reader.load_checkpoint(path))


def test_convert_refuses_by_name_and_cli_prints_one_line(tmp_path):
    from imujax.bridges.torch import conversion
    twice = str(tmp_path / "twice.pth")
    torch.save({"enc.w": torch.zeros(2), "enc": {"w": torch.ones(2)}}, twice)
    with pytest.raises(CheckpointFormatError, match="parameter 'enc.w' twice"):
        conversion.read_state_dict("deepconvlstm", twice)
    # UnsafeCheckpointError is not a ValueError: the CLI must still print it as one line (it used to trace back)
    smuggle = write_zip(tmp_path / "smuggle.pth", PROTO + G("numpy", "dtype") + S("O") + T1 + REDUCE + STOP)
    res = subprocess.run([sys.executable, "-m", "imujax.convert", "--model=deepconvlstm", f"--src={smuggle}",
                          f"--out={tmp_path / 'out'}"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith("error: ") and "numpy.dtype('O') refused" in res.stderr, res.stderr


def test_placeholders_are_per_load(tmp_path):
    pkl = PROTO + G("foo.bar", "Thing") + EMPTY_TUPLE + REDUCE + STOP
    a = reader.load_checkpoint(write_zip(tmp_path / "a.pth", pkl))
    b = reader.load_checkpoint(write_zip(tmp_path / "b.pth", pkl))
    assert isinstance(a, RefusedGlobal) and type(a) is not type(b) and a.global_name == b.global_name
