"""Write torch-loadable state_dicts (zip `torch.save` layout) and safetensors files without importing torch.

`write_torch_state_dict(path, {name: array})` emits the pickle opcodes torch itself writes for an OrderedDict of
tensors (`collections.OrderedDict` + `torch._utils._rebuild_tensor_v2` with persistent storage ids), so
`torch.load(path, weights_only=True)` accepts it. fp8 and unsigned 16/32/64-bit arrays use
`_rebuild_tensor_v3` with an untyped storage, as torch does. Storage records are 64-byte aligned and stored
uncompressed, so readers (ours and `torch.load(mmap=True)`) can map them.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from typing import Any, Mapping

import numpy as np

from imujax.bridges.torch import reader

_ALIGN = 64
_STORAGE_NAME = {v: k for k, v in reader.STORAGE_DTYPES.items() if k != "UntypedStorage"}
_TORCH_DTYPE_NAME = {}
for _name, _dt in reader.TORCH_DTYPES.items():
    _TORCH_DTYPE_NAME.setdefault(_dt, _name)  # first spelling in the table is torch's canonical name


# --------------------------------------------------------------------------------------------------------------
# pickle opcodes (protocol 2, as torch.save writes)
# --------------------------------------------------------------------------------------------------------------


def _int(n: int) -> bytes:
    if 0 <= n < 256:
        return pickle.BININT1 + bytes([n])
    if -(2 ** 31) <= n < 2 ** 31:
        return pickle.BININT + struct.pack("<i", n)
    encoded = pickle.encode_long(n)
    return pickle.LONG1 + bytes([len(encoded)]) + encoded


def _str(s: str) -> bytes:
    raw = s.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii")


def _int_tuple(values: tuple) -> bytes:
    return pickle.MARK + b"".join(_int(int(v)) for v in values) + pickle.TUPLE


def _empty_ordered_dict() -> bytes:
    return _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE


def _tensor(key: str, array: np.ndarray) -> bytes:
    """Opcodes for one contiguous tensor stored whole in storage `key`."""
    dtype = array.dtype
    strides = tuple(int(np.prod(array.shape[i + 1:], dtype=np.int64)) for i in range(array.ndim))
    if dtype in _STORAGE_NAME:
        storage_cls, numel, rebuild = _global("torch", _STORAGE_NAME[dtype]), array.size, "_rebuild_tensor_v2"
    elif dtype in _TORCH_DTYPE_NAME:
        storage_cls, numel, rebuild = _global("torch.storage", "UntypedStorage"), array.nbytes, "_rebuild_tensor_v3"
    else:
        raise TypeError(f"tensor {key!r}: dtype {dtype} has no torch equivalent")
    pid = pickle.MARK + _str("storage") + storage_cls + _str(key) + _str("cpu") + _int(numel) + pickle.TUPLE
    args = (pickle.MARK + pid + pickle.BINPERSID + _int(0) + _int_tuple(array.shape) + _int_tuple(strides)
            + pickle.NEWFALSE + _empty_ordered_dict())
    if rebuild == "_rebuild_tensor_v3":
        args += _global("torch", _TORCH_DTYPE_NAME[dtype])
    return _global("torch._utils", rebuild) + args + pickle.TUPLE + pickle.REDUCE


def state_dict_pickle(names_to_storage_keys: Mapping[str, tuple[str, np.ndarray]]) -> bytes:
    """The `data.pkl` bytes for an OrderedDict {name: tensor}."""
    body = b"".join(_str(name) + _tensor(key, arr) for name, (key, arr) in names_to_storage_keys.items())
    return (pickle.PROTO + bytes([2]) + _empty_ordered_dict() + pickle.MARK + body + pickle.SETITEMS
            + pickle.STOP)


# --------------------------------------------------------------------------------------------------------------
# zip writing
# --------------------------------------------------------------------------------------------------------------


def _aligned_info(zf: zipfile.ZipFile, name: str, size: int) -> zipfile.ZipInfo:
    """A stored ZipInfo whose data starts on a 64-byte boundary (padding in an extra field, as torch does)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    zip64 = 20 if size > zipfile.ZIP64_LIMIT else 0  # zipfile adds a zip64 extra for big members
    header = 30 + len(name.encode("utf-8")) + zip64
    start = zf.fp.tell() + header + 4  # 4 = our extra field's own header
    pad = (-start) % _ALIGN
    info.extra = struct.pack("<HH", 0x4246, pad) + b"\0" * pad  # 'FB' padding record
    return info


def _write_member(zf: zipfile.ZipFile, name: str, data: bytes | memoryview) -> None:
    size = len(data) if isinstance(data, bytes) else data.nbytes
    info = _aligned_info(zf, name, size)
    with zf.open(info, "w", force_zip64=size > zipfile.ZIP64_LIMIT) as fh:
        fh.write(data)


def write_torch_state_dict(path: str | os.PathLike, state_dict: Mapping[str, Any], archive_name: str = "archive"
                           ) -> None:
    """Write `{name: array}` as a torch zip checkpoint that `torch.load(..., weights_only=True)` reads.

    Arrays are written little-endian and contiguous (views are materialised); bf16/fp8 must be ml_dtypes arrays.
    """
    path = os.fspath(path)
    entries: dict[str, tuple[str, np.ndarray]] = {}
    for index, (name, value) in enumerate(state_dict.items()):
        if not isinstance(name, str):
            raise TypeError(f"state_dict keys must be str, got {name!r}")
        array = np.asarray(value, order="C")
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        entries[name] = (str(index), array)
    payload = state_dict_pickle(entries)
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        _write_member(zf, f"{archive_name}/data.pkl", payload)
        _write_member(zf, f"{archive_name}/.format_version", b"1")
        _write_member(zf, f"{archive_name}/.storage_alignment", str(_ALIGN).encode())
        _write_member(zf, f"{archive_name}/byteorder", b"little")
        for key, array in entries.values():
            _write_member(zf, f"{archive_name}/data/{key}", memoryview(array.reshape(-1).view(np.uint8)))
        _write_member(zf, f"{archive_name}/version", b"3\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------------------------

_SAFETENSORS_NAME = {v: k for k, v in reader.SAFETENSORS_DTYPES.items()}


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
                      ) -> None:
    """Write `{name: array}` as a safetensors file (data packed by decreasing item size, so every tensor is aligned)."""
    path = os.fspath(path)
    arrays = {name: np.asarray(v, order="C") for name, v in tensors.items()}
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str -> str")
        header["__metadata__"] = dict(metadata)
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    offset = 0
    for name in order:
        array = arrays[name]
        if array.dtype not in _SAFETENSORS_NAME:
            raise TypeError(f"tensor {name!r}: dtype {array.dtype} is not a safetensors dtype")
        header[name] = {"dtype": _SAFETENSORS_NAME[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((-len(raw)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for name in order:
            fh.write(memoryview(arrays[name].reshape(-1).view(np.uint8)))
    os.replace(tmp, path)
