"""Safe, torch-free reader for PyTorch checkpoints: zip `.pth/.pt/.ckpt`, the legacy (torch < 1.6) stream, safetensors.

`load_checkpoint(path)` returns the pickled object graph with every tensor as a numpy array (bf16/fp8 as
`ml_dtypes` dtypes). Nothing in the file is executed, and nothing in the file can corrupt memory or exhaust it:

* The pickle runs on a restricted pure-Python unpickler that implements every opcode it accepts itself. Globals
  resolve only to an allow-list of stand-ins written here (tensor/storage rebuilds, `torch.<dtype>`, `torch.Size`,
  `torch.device`, `collections.OrderedDict`, numpy array/scalar/dtype reconstruction, a few plain builtins).
  Globals from modules that can run code (os, subprocess, builtins.eval, sys, importlib, pickle, ...) raise
  `UnsafeCheckpointError`; any other global becomes an inert `RefusedGlobal` placeholder (nothing imported or
  called; it records the arguments and state the pickle hands it, so tensors inside stay reachable), or an
  `UnsafeCheckpointError` with `allow_placeholders=False`.
* BUILD (`__setstate__`) only reaches placeholders, plain OrderedDicts and the numpy array/dtype stand-ins, never a
  numpy object, a function or a class; dtypes come only from fixed tables of plain numeric names, so no array with
  an object or structured dtype is ever made from file data, and no file can change how a later file is read.
* Every size the file states is checked before anything is allocated (memo indices, containers, tensor views
  against their storage's real length, zip member sizes, safetensors offsets), and an estimate of what the load
  holds in memory is kept under `max_bytes` (default: file size x 2 + 256 MiB); over it, `CheckpointTooLargeError`
  names the limit and the key.
* Records must agree with their index the way `torch.load(weights_only=True)` and `safetensors` require: zip local
  headers and data descriptors match the central directory, storage records have exactly the declared length,
  CRCs match (checked whenever bytes are read rather than memory-mapped), safetensors offsets tile the data section.

Every failure is a `CheckpointFormatError` (or its subclass `CheckpointTooLargeError`) or an
`UnsafeCheckpointError` naming the file and the key or member.

With `mmap=True` (default) stored zip members, legacy storages and safetensors data are memory-mapped and tensors
are read-only views of the file. With `mmap=False` each storage is read once into an owned, writable buffer and its
tensors are views of it (as torch shares one storage between its views). Views that overlap themselves (stride 0,
as made by `expand`) stay views and are read-only.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import json
import math
import os
import pickle
import pickletools
import reprlib
import struct
import tarfile
import zipfile
import zlib
from typing import Any, Callable, Iterator, Mapping

import ml_dtypes
import numpy as np


class CheckpointFormatError(ValueError):
    """The file is not a readable checkpoint (wrong magic, truncated, inconsistent records)."""


class CheckpointTooLargeError(CheckpointFormatError):
    """Reading the file would hold more memory than the reader's limit allows."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The pickle references a global or an operation the reader refuses."""


_MiB = 1 << 20
HEADROOM_BYTES = 256 * _MiB


def default_max_bytes(file_size: int) -> int:
    """The memory a load may hold unless the caller passes `max_bytes`: file size x 2 + 256 MiB."""
    return 2 * file_size + HEADROOM_BYTES


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlevel, _SHORT.maxtuple, _SHORT.maxlist, _SHORT.maxdict = 3, 6, 6, 4


def _short(obj: Any) -> str:
    """A bounded one-line repr of file data for error messages (file data can be huge or deeply nested)."""
    try:
        return _SHORT.repr(obj).replace("\n", " ")
    except Exception:  # noqa: BLE001 - a repr must never turn into another error
        return f"<{type(obj).__name__}>"


class _Budget:
    """Running estimate of the memory one load holds, refused past `limit` with an error naming the key."""

    def __init__(self, path: str, limit: int):
        self.path, self.limit, self.used = path, limit, 0

    def charge(self, nbytes: int, what: str) -> None:
        self.used += int(nbytes)
        if self.used > self.limit:
            raise CheckpointTooLargeError(
                f"{self.path}: {what} would take the reader past its memory limit max_bytes={self.limit} "
                f"({self.used} bytes needed so far; the default is file size x 2 + 256 MiB); pass a larger "
                "max_bytes= to load_checkpoint only if you trust this file")


# --------------------------------------------------------------------------------------------------------------
# dtypes: fixed tables of plain numeric types, the only dtypes file data is ever viewed as
# --------------------------------------------------------------------------------------------------------------

# Legacy typed storage classes (`torch.FloatStorage` ...), used by `_rebuild_tensor_v2` and the legacy format.
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),
}

# `torch.<name>` dtype globals (the pickled name is the canonical dtype name; aliases kept for old files).
TORCH_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32), "float": np.dtype(np.float32),
    "float64": np.dtype(np.float64), "double": np.dtype(np.float64),
    "float16": np.dtype(np.float16), "half": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype(np.int64), "long": np.dtype(np.int64),
    "int32": np.dtype(np.int32), "int": np.dtype(np.int32),
    "int16": np.dtype(np.int16), "short": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8), "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32), "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64), "cfloat": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128), "cdouble": np.dtype(np.complex128),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "float8_e8m0fnu": np.dtype(ml_dtypes.float8_e8m0fnu),
}

# `numpy.dtype(<name>)` as numpy pickles it (type codes such as 'f8', 'i4', 'b1'): plain numbers only.
NUMPY_DTYPES: dict[str, np.dtype] = {
    code: np.dtype(code) for code in
    ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")}
NUMPY_DTYPES.update({str(dt): dt for dt in list(NUMPY_DTYPES.values())})  # 'float32', 'bool', ...

# Tensor kinds torch can pickle that have no faithful numpy form; refused with a clear error.
_UNSUPPORTED_TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_qtensor"): "quantized tensor",
    ("torch._utils", "_rebuild_sparse_tensor"): "sparse tensor",
    ("torch._utils", "_rebuild_nested_tensor"): "nested tensor",
    ("torch._utils", "_rebuild_wrapper_subclass"): "tensor subclass (e.g. DTensor)",
    ("torch._utils", "_rebuild_meta_tensor_no_storage"): "meta tensor without data",
    ("torch._utils", "_rebuild_device_tensor_from_numpy"): "device tensor rebuilt from numpy",
    ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"): "device tensor",
}
_QUANTIZED_STORAGES = {"QInt8Storage", "QInt32Storage", "QUInt8Storage", "QUInt4x2Storage", "QUInt2x4Storage"}


class TorchDtype:
    """Stand-in for a pickled `torch.<dtype>` object."""

    __slots__ = ("name", "numpy")

    def __init__(self, name: str):
        self.name = name
        self.numpy = TORCH_DTYPES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TorchDtype) and other.numpy == self.numpy

    def __hash__(self) -> int:
        return hash(self.numpy)


class _StorageClass:
    """Stand-in for `torch.FloatStorage` & co. (appears inside persistent ids)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class TorchStorage:
    """One storage record: a flat numpy array (possibly memory-mapped) plus the key it was stored under."""

    __slots__ = ("key", "array", "source")

    def __init__(self, key: str, array: np.ndarray, source: str):
        self.key = key
        self.array = array
        self.source = source  # file name, for error messages

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __repr__(self) -> str:
        return f"TorchStorage(key={self.key!r}, dtype={self.dtype}, numel={self.array.size})"


class _Marker:
    """Stand-in for a class the pickle only names (`torch.Tensor`, `numpy.ndarray`); never called."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _Allowed:
    """An allow-listed callable. Slotted, so BUILD/setattr can never change it (e.g. its defaults)."""

    __slots__ = ("name", "fn", "newobj")

    def __init__(self, name: str, fn: Callable, newobj: bool = False):
        self.name, self.fn, self.newobj = name, fn, newobj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return self.name


# --------------------------------------------------------------------------------------------------------------
# inert placeholders for untrusted globals
# --------------------------------------------------------------------------------------------------------------


class RefusedGlobal:
    """Inert record of an untrusted pickled global (a class or function that is never imported or called).

    The unpickler hands out one subclass per global name and load. Whatever the pickle does with it is recorded
    instead of executed: calling it (REDUCE) or `__new__` (NEWOBJ) stores `args`/`kwargs`, BUILD stores `state`,
    APPENDS/SETITEMS store `items`/`dict_items`. Tensors inside those stay reachable.
    """

    global_name = "<unknown>"

    def __new__(cls, *args: Any, **kwargs: Any) -> "RefusedGlobal":
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        obj.items, obj.dict_items = [], {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # everything was recorded in __new__; never run anything here

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.dict_items[key] = value

    def __reduce__(self) -> Any:
        raise TypeError(f"refusing to re-pickle placeholder for {self.global_name}")

    def __repr__(self) -> str:
        return f"<RefusedGlobal {self.global_name} args={len(self.args)} state={type(self.state).__name__}>"

    def attributes(self) -> dict:
        """The object's attribute dict as far as the pickle described it (BUILD state or dict-like state)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)) and (
                state[1] is None or isinstance(state[1], dict)):
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            return merged
        return dict(state) if isinstance(state, dict) else {}


# Modules whose globals can run code, touch the system or re-enter pickle: refused outright with an error.
_DANGEROUS_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "importlib", "runpy", "shutil", "socket",
    "pickle", "_pickle", "cPickle", "marshal", "ctypes", "pty", "code", "codeop", "commands", "webbrowser",
    "multiprocessing", "asyncio", "tempfile", "signal", "pdb", "bdb", "timeit", "types", "inspect", "platform",
    "popen2", "io", "_io", "glob", "pathlib", "functools", "operator", "codecs", "_codecs", "posixpath", "ntpath",
    "shelve", "dill", "cloudpickle", "joblib", "threading", "_thread", "zipimport", "pkgutil", "site", "sysconfig",
    "urllib", "http", "ftplib", "smtplib", "telnetlib", "xmlrpc", "gc", "weakref", "copyreg", "numpy",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "torch.hub", "torch.jit", "torch._C",
    "torch.serialization", "torch.utils.cpp_extension", "torch.ops", "torch._ops", "torch.package",
}


def _is_dangerous(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[: i + 1]) in _DANGEROUS_MODULES for i in range(len(parts)))


# --------------------------------------------------------------------------------------------------------------
# allow-listed callables (each validates its arguments: the pickle controls them)
# --------------------------------------------------------------------------------------------------------------

_MAX_DIM = 1 << 62  # no real tensor dimension or stride comes near this; keeps numpy's intp arithmetic exact


def _check_ints(name: str, values: Any, source: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > 64 or not all(
            type(v) is int and 0 <= v < _MAX_DIM for v in values):
        raise CheckpointFormatError(f"{source}: tensor {name} must be at most 64 non-negative ints below 2**62, "
                                    f"got {_short(values)}")
    return tuple(values)


def _overlaps(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """Whether two indices of the view can reach the same element (then writing through it is ambiguous)."""
    extent = 1
    for n, s in sorted(((n, s) for n, s in zip(size, stride) if n > 1), key=lambda d: d[1]):
        if s < extent:
            return True
        extent = s * (n - 1) + extent
    return False


def _view_from_storage(storage: Any, offset: Any, size: Any, stride: Any, dtype: np.dtype | None) -> np.ndarray:
    """A numpy view of `storage` with torch's (offset, size, stride) in elements; never copies."""
    if not isinstance(storage, TorchStorage):
        raise CheckpointFormatError(f"tensor rebuild expects a storage, got {type(storage).__name__}")
    src = storage.source
    size, stride = _check_ints("size", size, src), _check_ints("stride", stride, src)
    if len(size) != len(stride) or type(offset) is not int or not 0 <= offset < _MAX_DIM:
        raise CheckpointFormatError(f"{src}: bad tensor view on storage {storage.key!r}: offset={_short(offset)} "
                                    f"size={size} stride={stride}")
    flat = storage.array
    if dtype is not None and dtype != flat.dtype:  # untyped (byte) storage reinterpreted as `dtype`
        if flat.nbytes % dtype.itemsize:
            raise CheckpointFormatError(f"{src}: storage {storage.key!r} has {flat.nbytes} bytes, not a multiple of "
                                        f"{dtype} item size {dtype.itemsize}")
        flat = flat.view(dtype)
    numel = math.prod(size)
    if numel == 0:
        return np.zeros(size, flat.dtype)
    needed = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if needed > flat.size:
        raise CheckpointFormatError(
            f"{src}: tensor of size {size} (stride {stride}, offset {offset}) needs {needed} elements but storage "
            f"{storage.key!r} holds only {flat.size}: the storage record is too short or the checkpoint is corrupt")
    contiguous = all(st == math.prod(size[i + 1:]) for i, (n, st) in enumerate(zip(size, stride)) if n != 1)
    if contiguous:
        return flat[offset:offset + numel].reshape(size)
    item = flat.dtype.itemsize
    writeable = flat.flags.writeable and not _overlaps(size, stride)
    return np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * item for s in stride),
                                           writeable=writeable)


class _Rebuilders:
    """The tensor rebuild functions, bound to one load (its memory budget; `dry_run` only records storages)."""

    def __init__(self, budget: _Budget, dry_run: bool = False):
        self.budget, self.dry_run = budget, dry_run

    def _metadata(self, array: np.ndarray, metadata: Any) -> np.ndarray:
        # torch stores lazy conj / neg bits of complex and negative views in this dict; applying them copies.
        if isinstance(metadata, dict) and (metadata.get("neg") is True or metadata.get("conj") is True):
            self.budget.charge(array.size * array.dtype.itemsize, "a negated/conjugated tensor")
            if metadata.get("neg") is True:
                array = np.negative(array)
            if metadata.get("conj") is True:
                array = np.conj(array)
        return array

    def tensor_v2(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if self.dry_run:
            return None
        return self._metadata(_view_from_storage(storage, offset, size, stride, None), metadata)

    def tensor_v1(self, storage, offset, size, stride):
        return self.tensor_v2(storage, offset, size, stride)

    def tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        if self.dry_run:
            return None
        if not isinstance(dtype, TorchDtype):
            raise CheckpointFormatError(f"_rebuild_tensor_v3 expects a torch dtype, got {_short(dtype)}")
        return self._metadata(_view_from_storage(storage, offset, size, stride, dtype.numpy), metadata)

    @staticmethod
    def parameter(data, requires_grad=True, hooks=None, state=None):
        return data  # nn.Parameter is just its data here


class _DtypeSpec:
    """Stand-in for a pickled `numpy.dtype`: a plain numeric dtype from `NUMPY_DTYPES`, byte order set by BUILD."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype

    def build(self, state: Any) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]).
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                and state[5:8] == (-1, -1, 0) and (len(state) == 8 or state[8] is None)):
            raise UnsafeCheckpointError(f"numpy dtype state {_short(state)} is not that of a plain numeric dtype "
                                        "(object, structured and sub-array dtypes are refused)")
        if state[1] == ">" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(">")


class _ArraySpec:
    """Stand-in for `numpy._reconstruct(ndarray, ...)`; BUILD turns it into an owned array of a numeric dtype."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None


def _numpy_array(shape: Any, spec: Any, data: Any, fortran: bool, budget: _Budget) -> np.ndarray:
    shape = _check_ints("shape", shape, "numpy array")
    if not isinstance(spec, _DtypeSpec) or not isinstance(data, (bytes, bytearray)):
        raise UnsafeCheckpointError("numpy arrays are only read from raw bytes with a plain numeric dtype")
    if math.prod(shape) * spec.dtype.itemsize != len(data):
        raise CheckpointFormatError(f"numpy array of shape {shape} x {spec.dtype} does not match its {len(data)} "
                                    "bytes of data")
    budget.charge(len(data), "a pickled numpy array")
    return np.frombuffer(data, spec.dtype).reshape(shape, order="F" if fortran else "C").copy(
        order="F" if fortran else "C")


def _np_dtype(spec: Any, align: Any = False, copy: Any = True) -> _DtypeSpec:
    if type(spec) is not str or spec not in NUMPY_DTYPES:
        raise UnsafeCheckpointError(f"numpy.dtype({_short(spec)}) refused: only plain numeric dtypes "
                                    f"({', '.join(sorted(NUMPY_DTYPES))}) are read")
    return _DtypeSpec(NUMPY_DTYPES[spec])


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> _ArraySpec:
    if not (isinstance(subtype, _Marker) and subtype.name == "numpy.ndarray"):
        raise UnsafeCheckpointError(f"numpy _reconstruct only allowed for numpy.ndarray, got {_short(subtype)}")
    return _ArraySpec()


def _np_scalar(spec: Any, data: Any = None) -> Any:
    if not isinstance(spec, _DtypeSpec) or not isinstance(data, bytes) or len(data) != spec.dtype.itemsize:
        raise UnsafeCheckpointError("numpy scalar expects (plain numeric dtype, bytes of its item size)")
    return np.frombuffer(data, dtype=spec.dtype, count=1)[0]


def _torch_size(dims: Any = ()) -> tuple:
    return _check_ints("torch.Size", tuple(dims) if isinstance(dims, (list, tuple)) else dims, "pickle")


def _torch_device(kind: Any, index: Any = None) -> str:
    if type(kind) is not str or len(kind) > 64 or (index is not None and type(index) is not int):
        raise CheckpointFormatError(f"torch.device expects (str[, int]), got {_short(kind)}, {_short(index)}")
    return kind if index is None else f"{kind}:{index}"


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol-2 pickles spell `bytes` as _codecs.encode(str, 'latin1'); no other codec is needed or allowed.
    if type(text) is not str or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafeCheckpointError(f"_codecs.encode only allowed for latin1 text, got encoding {_short(encoding)}")
    return text.encode("latin1")


# Dict keys / set members a checkpoint may use. Hashing must not recurse without bound (deeply nested tuples
# overflow the C stack) and must not be made to collide at scale: str/bytes hashes are salted per process, small ints
# hash to themselves, placeholders hash by identity; floats, complex numbers and ints >= 2**61 - 1 can be chosen to
# share one hash (each insertion then scans all earlier keys), so a load accepts at most _MAX_RISKY_KEYS of them.
_HASH_SAFE_TYPES = {str, bytes, bool, type(None), TorchDtype}
_INT_HASH_LIMIT = (1 << 61) - 1
_MAX_RISKY_KEYS = 4096


def _key_risk(key: Any) -> int | None:
    """0 for a key with an unforgeable hash, 1 for a hashable number whose hash can be forged, None if refused."""
    kind = type(key)
    if kind in _HASH_SAFE_TYPES or isinstance(key, RefusedGlobal):
        return 0
    if kind is int:
        return 0 if -_INT_HASH_LIMIT < key < _INT_HASH_LIMIT else 1
    if kind in (float, complex) or (isinstance(key, np.generic) and key.dtype.kind in "biufc"):
        return 1
    return None


def _check_key(key: Any, source: str) -> int:
    """Refuse keys whose hashing could recurse without bound; returns how many forgeable-hash numbers it holds."""
    risk = _key_risk(key)
    if risk is not None:
        return risk
    kind = type(key)
    if kind not in (tuple, frozenset):
        raise CheckpointFormatError(f"{source}: a {kind.__name__} cannot be a dict key or set member in a checkpoint")
    todo, seen, risk = [(key, 0)], 0, 0
    while todo:
        node, depth = todo.pop()
        seen += len(node)
        if depth > 16 or seen > 64:  # (hashing a tuple is not cached: every insertion rehashes all its items)
            raise CheckpointFormatError(f"{source}: a dict key / set member nested deeper than 16 levels or holding "
                                        "more than 64 items")
        for item in node:
            if type(item) in (tuple, frozenset):
                todo.append((item, depth + 1))
                continue
            item_risk = _key_risk(item)
            if item_risk is None:
                raise CheckpointFormatError(f"{source}: a {type(item).__name__} inside a dict key / set member")
            risk += item_risk
    return risk


# pickle opcodes as dispatch-table indices
_OP = {name: getattr(pickle, name)[0] for name in (
    "BUILD", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "INST", "OBJ", "EXT1", "EXT2", "EXT4", "PUT", "BINPUT",
    "LONG_BINPUT", "MEMOIZE", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "DICT", "FROZENSET",
    "NEXT_BUFFER", "READONLY_BUFFER", "EMPTY_SET", "EMPTY_DICT", "EMPTY_LIST", "LIST", "TUPLE", "PERSID", "MARK",
    "TUPLE1", "TUPLE2", "TUPLE3", "BINPERSID", "GLOBAL", "STACK_GLOBAL")}

# Estimated bytes each opcode can make the unpickler hold (object + stack/memo/container reference), so that a
# pickle of n bytes is charged before it can turn into much more memory (an empty set is 216 bytes from 1 byte).
_OP_COST = [64] * 256
for _name, _cost in (("EMPTY_SET", 256), ("EMPTY_DICT", 128), ("EMPTY_LIST", 96), ("LIST", 96), ("MARK", 96),
                     ("DICT", 128), ("FROZENSET", 256), ("REDUCE", 640), ("NEWOBJ", 640), ("NEWOBJ_EX", 640),
                     ("BUILD", 256), ("SETITEM", 128), ("TUPLE", 96), ("TUPLE1", 96), ("TUPLE2", 96),
                     ("TUPLE3", 96), ("PUT", 128), ("BINPUT", 128), ("LONG_BINPUT", 128), ("MEMOIZE", 128),
                     ("BINPERSID", 512), ("GLOBAL", 128), ("STACK_GLOBAL", 128)):
    _OP_COST[_OP[_name]] = _cost


class _SafeUnpickler(pickle._Unpickler):  # the pure-Python unpickler: every accepted opcode is ours to check
    """Unpickler whose `find_class` never imports anything; see the module docstring for the policy."""

    def __init__(self, data: bytes, source: str, rebuild: _Rebuilders, load_storage: Callable[[tuple], Any] | None,
                 allow_placeholders: bool, budget: _Budget):
        super().__init__(io.BytesIO(data))
        self.source, self.rebuild, self.load_storage = source, rebuild, load_storage
        self.allow_placeholders, self.budget = allow_placeholders, budget
        self.max_memo = len(data)  # each memo entry takes an opcode: a larger index is not a real pickle
        self.placeholders: dict[str, type] = {}  # per load: nothing a file does can reach a later load
        self._memo_of: dict[int, list[int]] = {}  # id(numpy stand-in) -> memo indices holding it
        self._keys_ok: dict[int, Any] = {}  # id -> tuple/frozenset keys already checked
        self.risky_keys = 0
        budget.charge(4 * len(data), "the pickle")  # its strings: up to 4 bytes a character (UCS-4)
        builtin = {name: _Allowed(f"builtins.{name}", self._builtin(kind), newobj=True) for name, kind in {
            "set": set, "frozenset": frozenset, "complex": complex, "slice": slice, "range": range, "bytes": bytes,
            "bytearray": bytearray, "int": int, "float": float, "str": str, "bool": bool, "tuple": tuple,
            "list": list, "dict": dict}.items()}
        numpy_core = {"_reconstruct": _np_reconstruct, "scalar": _np_scalar, "_frombuffer": self._np_frombuffer}
        self.tensor_rebuilds = {
            ("torch._utils", "_rebuild_tensor"): _Allowed("_rebuild_tensor", rebuild.tensor_v1),
            ("torch._utils", "_rebuild_tensor_v2"): _Allowed("_rebuild_tensor_v2", rebuild.tensor_v2),
            ("torch._utils", "_rebuild_tensor_v3"): _Allowed("_rebuild_tensor_v3", rebuild.tensor_v3),
            ("torch._utils", "_rebuild_parameter"): _Allowed("_rebuild_parameter", rebuild.parameter),
            ("torch._utils", "_rebuild_parameter_with_state"): _Allowed("_rebuild_parameter_with_state",
                                                                        rebuild.parameter),
        }
        self.allowed: dict[tuple[str, str], Any] = {
            **self.tensor_rebuilds,
            ("torch._tensor", "_rebuild_from_type_v2"): _Allowed("_rebuild_from_type_v2", self._from_type_v2),
            ("torch", "Tensor"): _Marker("torch.Tensor"),
            ("torch._tensor", "Tensor"): _Marker("torch.Tensor"),
            ("torch.nn.parameter", "Parameter"): _Marker("torch.nn.Parameter"),
            ("torch", "Size"): _Allowed("torch.Size", _torch_size),
            ("torch", "device"): _Allowed("torch.device", _torch_device),
            ("collections", "OrderedDict"): _Allowed("collections.OrderedDict", self._ordered_dict, newobj=True),
            ("_codecs", "encode"): _Allowed("_codecs.encode", _codecs_encode),
            ("numpy", "dtype"): _Allowed("numpy.dtype", _np_dtype),
            ("numpy", "ndarray"): _Marker("numpy.ndarray"),
        }
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"):
            for name, fn in numpy_core.items():
                self.allowed[(mod, name)] = _Allowed(f"{mod}.{name}", fn)
        for name, fn in builtin.items():
            self.allowed[("builtins", name)] = fn
        dispatch = dict(pickle._Unpickler.dispatch)
        for name in ("INST", "OBJ", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER", "PERSID"):
            dispatch[_OP[name]] = lambda self, name=name: self._refuse_opcode(name)
        dispatch.update({
            _OP["BUILD"]: _SafeUnpickler._build, _OP["REDUCE"]: _SafeUnpickler._reduce,
            _OP["NEWOBJ"]: _SafeUnpickler._newobj, _OP["NEWOBJ_EX"]: _SafeUnpickler._newobj_ex,
            _OP["PUT"]: _SafeUnpickler._put, _OP["BINPUT"]: _SafeUnpickler._binput,
            _OP["LONG_BINPUT"]: _SafeUnpickler._long_binput, _OP["MEMOIZE"]: _SafeUnpickler._memoize,
            _OP["APPEND"]: _SafeUnpickler._append, _OP["APPENDS"]: _SafeUnpickler._appends,
            _OP["SETITEM"]: _SafeUnpickler._setitem, _OP["SETITEMS"]: _SafeUnpickler._setitems,
            _OP["ADDITEMS"]: _SafeUnpickler._additems, _OP["DICT"]: _SafeUnpickler._dict,
            _OP["FROZENSET"]: _SafeUnpickler._frozenset,
        })
        self.dispatch = dispatch

    # -- the loop: pickle._Unpickler.load's own, plus a running memory charge per opcode
    def load(self) -> Any:
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read, self.readinto, self.readline = self._unframer.read, self._unframer.readinto, self._unframer.readline
        self.metastack, self.stack = [], []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, cost, budget = self.read, self.dispatch, _OP_COST, self.budget
        spent, step = 0, 1 << 20
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError("pickle data ended before its STOP opcode")
                spent += cost[key[0]]
                if spent >= step:
                    budget.charge(spent, "the pickle's objects")
                    spent = 0
                dispatch[key[0]](self)
        except pickle._Stop as stop:
            budget.charge(spent, "the pickle's objects")
            return stop.value

    # -- globals
    def find_class(self, module: str, name: str) -> Any:
        # Protocol <= 2 pickles spell globals the Python 2 way (__builtin__, commands.Popen); use Python 3 names.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        qualname = f"{module}.{name}"
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if module in ("torch", "torch.cuda", "torch.storage") and name in STORAGE_DTYPES:
            return _StorageClass(name)
        if module in ("torch", "torch.cuda") and name in _QUANTIZED_STORAGES:
            raise CheckpointFormatError(f"{self.source}: quantized tensors ({qualname}) are not supported")
        if module == "torch" and name in TORCH_DTYPES:
            return TorchDtype(name)
        if (module, name) in _UNSUPPORTED_TORCH_GLOBALS:
            raise CheckpointFormatError(
                f"{self.source}: checkpoint contains a {_UNSUPPORTED_TORCH_GLOBALS[(module, name)]} ({qualname}), "
                "which the torch-free reader does not support; convert it to a dense CPU tensor before saving")
        if _is_dangerous(module):
            raise UnsafeCheckpointError(
                f"{self.source}: refusing pickled global {_short(qualname)}: it could execute code; this checkpoint "
                "is unsafe (or not a plain weights file) and was not loaded")
        if not self.allow_placeholders:
            raise UnsafeCheckpointError(
                f"{self.source}: pickled global {_short(qualname)} is not on the allow-list (tensors, OrderedDict, "
                "numpy, plain containers); load with allow_placeholders=True to get an inert RefusedGlobal "
                "placeholder")
        if qualname not in self.placeholders:
            self.budget.charge(4096 + 2 * len(qualname), "a placeholder class")
            self.placeholders[qualname] = type(f"RefusedGlobal[{qualname}]", (RefusedGlobal,),
                                               {"global_name": qualname, "__module__": __name__})
        return self.placeholders[qualname]

    def persistent_load(self, pid: Any) -> Any:
        if self.load_storage is None or type(pid) is not tuple or not pid:
            raise CheckpointFormatError(f"{self.source}: unexpected persistent id {_short(pid)}")
        return self.load_storage(pid)

    # -- calls and state
    def _is_placeholder_class(self, obj: Any) -> bool:
        return isinstance(obj, type) and self.placeholders.get(getattr(obj, "global_name", None)) is obj

    def _call(self, func: Any, args: Any, kwargs: Any = None) -> Any:
        if type(args) is not tuple or (kwargs is not None and not (
                type(kwargs) is dict and all(type(k) is str for k in kwargs))):
            raise CheckpointFormatError(f"{self.source}: call arguments must be a tuple (and a dict of str keys)")
        if type(func) is _Allowed or self._is_placeholder_class(func):
            return func(*args, **(kwargs or {}))
        raise UnsafeCheckpointError(f"{self.source}: refusing to call a {type(func).__name__} ({_short(func)}): "
                                    "only allow-listed rebuild functions and placeholders are callable")

    def _refuse_opcode(self, name: str) -> None:
        raise UnsafeCheckpointError(f"{self.source}: pickle opcode {name} is not accepted by the safe reader "
                                    "(torch.load(weights_only=True) refuses it too)")

    def _reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _newobj(self, kwargs: Any = None) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(cls) is _Allowed and cls.newobj:
            self.append(cls())  # `cls.__new__(cls, ...)` of a builtin container is empty; items follow
        elif self._is_placeholder_class(cls):
            self.append(self._call(cls, args, kwargs))
        else:
            raise UnsafeCheckpointError(f"{self.source}: NEWOBJ of {_short(cls)} refused")

    def _newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        self._newobj(kwargs)

    def _build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, RefusedGlobal) and self._is_placeholder_class(type(inst)):
            RefusedGlobal.__setstate__(inst, state)
        elif type(inst) is _DtypeSpec:
            inst.build(state)
        elif type(inst) is _ArraySpec:
            if inst.array is not None or not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
                raise UnsafeCheckpointError(f"{self.source}: numpy array state {_short(state)} refused")
            inst.array = _numpy_array(state[1], state[2], state[4], bool(state[3]), self.budget)
            self._replace(inst, inst.array)
        elif type(inst) is collections.OrderedDict:
            if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
                state = state[0]
            if state is not None and not (type(state) is dict and all(type(k) is str for k in state)):
                raise UnsafeCheckpointError(f"{self.source}: OrderedDict state must be a dict of str keys")
            vars(inst).update(state or {})
        else:
            raise UnsafeCheckpointError(
                f"{self.source}: BUILD (__setstate__) on a {type(inst).__name__} refused: only placeholders, "
                "OrderedDicts and numpy arrays of plain numeric dtypes take pickled state")

    def _replace(self, old: Any, new: Any) -> None:
        """Swap a finished stand-in for its value on the stack and in the memo (numpy: REDUCE, PUT, BUILD)."""
        self.stack[-1] = new
        for index in self._memo_of.pop(id(old), ()):
            if self.memo.get(index) is old:
                self.memo[index] = new

    # -- memo: bounded indices; stand-ins remember where they were memoized so BUILD can replace them
    def _memo_put(self, index: int) -> None:
        if not 0 <= index <= self.max_memo:
            raise CheckpointFormatError(f"{self.source}: memo index {index} is out of range for a pickle of "
                                        f"{self.max_memo} bytes")
        value = self.stack[-1]
        self.memo[index] = value
        if type(value) is _ArraySpec:
            self._memo_of.setdefault(id(value), []).append(index)

    def _put(self) -> None:
        line = self.readline()[:-1]
        if not line.isdigit() or len(line) > 19:
            raise CheckpointFormatError(f"{self.source}: bad PUT index {_short(line)}")
        self._memo_put(int(line))

    def _binput(self) -> None:
        self._memo_put(self.read(1)[0])

    def _long_binput(self) -> None:
        self._memo_put(struct.unpack("<I", self.read(4))[0])

    def _memoize(self) -> None:
        self._memo_put(len(self.memo))

    # -- containers: only real containers (or placeholders) take items; keys are checked before hashing
    def _check_key(self, key: Any, source: str) -> None:
        container = type(key) in (tuple, frozenset)
        if container and id(key) in self._keys_ok:  # checked once: a GET can hand one key to many SETITEMs
            return
        self.risky_keys += _check_key(key, source)
        if self.risky_keys > _MAX_RISKY_KEYS:
            raise CheckpointFormatError(f"{source}: more than {_MAX_RISKY_KEYS} float, complex or huge-int dict keys "
                                        "/ set members (their hashes can be forged to collide)")
        if container:
            self._keys_ok[id(key)] = key  # kept alive, so its id is not reused

    def _list_target(self) -> Any:
        target = self.stack[-1]
        if type(target) is list or (isinstance(target, RefusedGlobal) and self._is_placeholder_class(type(target))):
            return target
        raise UnsafeCheckpointError(f"{self.source}: APPEND to a {type(target).__name__} refused")

    def _dict_target(self) -> Any:
        target = self.stack[-1]
        if type(target) in (dict, collections.OrderedDict) or (
                isinstance(target, RefusedGlobal) and self._is_placeholder_class(type(target))):
            return target
        raise UnsafeCheckpointError(f"{self.source}: SETITEM on a {type(target).__name__} refused")

    def _append(self) -> None:
        value = self.stack.pop()
        self._list_target().append(value)

    def _appends(self) -> None:
        items = self.pop_mark()
        self._list_target().extend(items)

    def _setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._check_key(key, self.source)
        self._dict_target()[key] = value

    def _setitems(self) -> None:
        items = self.pop_mark()
        target = self._dict_target()
        for i in range(0, len(items) - 1, 2):
            self._check_key(items[i], self.source)
            target[items[i]] = items[i + 1]

    def _additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise UnsafeCheckpointError(f"{self.source}: ADDITEMS on a {type(target).__name__} refused")
        for item in items:
            self._check_key(item, self.source)
        target.update(items)

    def _dict(self) -> None:
        items = self.pop_mark()
        for i in range(0, len(items) - 1, 2):
            self._check_key(items[i], self.source)
        self.append({items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)})

    def _frozenset(self) -> None:
        items = self.pop_mark()
        for item in items:
            self._check_key(item, self.source)
        self.append(frozenset(items))

    # -- allow-listed functions that need this load's budget or state
    def _from_type_v2(self, func: Any, new_type: Any, args: Any, state: Any) -> Any:
        if not any(func is f for f in self.tensor_rebuilds.values()):
            raise UnsafeCheckpointError(f"_rebuild_from_type_v2 may only wrap tensor rebuilds, got {_short(func)}")
        if type(args) is not tuple:
            raise CheckpointFormatError(f"_rebuild_from_type_v2 expects an argument tuple, got {_short(args)}")
        return func(*args)

    def _ordered_dict(self, items: Any = ()) -> collections.OrderedDict:
        if type(items) in (dict, collections.OrderedDict):
            items = list(items.items())
        if type(items) not in (list, tuple) or not all(type(p) is tuple and len(p) == 2 for p in items):
            raise CheckpointFormatError(f"OrderedDict built from unexpected {type(items).__name__}")
        self.budget.charge(128 * len(items), "an OrderedDict")
        for key, _ in items:
            self._check_key(key, self.source)
        return collections.OrderedDict(items)

    def _np_frombuffer(self, buf: Any, spec: Any, shape: Any, order: Any = "C") -> np.ndarray:
        return _numpy_array(shape, spec, buf, order == "F", self.budget)

    def _builtin(self, kind: type) -> Callable:
        sized = (list, tuple, set, frozenset, dict, str, bytes, bytearray, range)

        def build(*args: Any) -> Any:
            if kind in (complex, slice, int, float, bool) and all(
                    type(a) in (int, float, bool, str, complex, type(None)) and (type(a) is not str or len(a) < 4096)
                    for a in args):
                return kind(*args)
            if kind is range and all(type(a) is int for a in args):
                return range(*args)  # lazy; whatever is built from it is charged by its length
            if len(args) > 2 or (args and type(args[0]) not in sized) or (len(args) == 2 and type(args[1]) is not str):
                raise UnsafeCheckpointError(f"builtins.{kind.__name__} with arguments "
                                            f"{', '.join(type(a).__name__ for a in args)} refused")
            if kind is str and args and type(args[0]) not in (str, bytes, bytearray):
                raise UnsafeCheckpointError("builtins.str only converts text or bytes in a checkpoint")
            n = len(args[0]) if args else 0
            self.budget.charge(64 + 128 * n, f"builtins.{kind.__name__} of {n} items")
            if kind in (set, frozenset, dict) and args:
                for item in (args[0].keys() if type(args[0]) is dict else args[0]):
                    self._check_key(item[0] if kind is dict and type(args[0]) is not dict and type(item) is tuple
                               else item, self.source)
            return kind(*args)
        return build


# --------------------------------------------------------------------------------------------------------------
# zip format (torch >= 1.6)
# --------------------------------------------------------------------------------------------------------------

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header, 30 bytes
_MAX_DEFLATE_RATIO = 1100  # deflate cannot expand more than ~1032:1; a larger declared size is a lie or a bomb
_CHUNK = 64 * _MiB


class _ZipArchive:
    """torch's records inside the zip, each checked against the central directory before its bytes are used."""

    def __init__(self, path: str, mmap: bool, budget: _Budget):
        self.path, self.mmap, self.budget = path, mmap, budget
        self.file_size = os.path.getsize(path)
        self.fh = open(path, "rb")
        try:
            self._open()
        except BaseException:
            self.fh.close()
            raise

    def _open(self) -> None:
        path, budget = self.path, self.budget
        try:
            endrec = zipfile._EndRecData(self.fh)  # entry count before zipfile builds one ZipInfo per entry
            if endrec:
                budget.charge(1024 * endrec[zipfile._ECD_ENTRIES_TOTAL], "the zip central directory")
            self.zf = zipfile.ZipFile(self.fh)
        except CheckpointFormatError:
            raise
        except Exception as err:  # noqa: BLE001 - zipfile raises many types for a damaged archive
            raise CheckpointFormatError(f"{path}: starts like a zip archive but cannot be opened "
                                        f"({type(err).__name__}: {_short(str(err))}); the file is truncated or "
                                        "corrupt") from None
        names = self.zf.namelist()
        if len(set(names)) != len(names):
            raise CheckpointFormatError(f"{path}: zip archive lists the same member twice")
        extents = sorted((i.header_offset, i.header_offset + _LOCAL_HEADER.size + i.compress_size + len(
            i.orig_filename.encode("utf-8" if i.flag_bits & 0x800 else "cp437", "replace")), i.filename)
            for i in self.zf.infolist())
        for (_, end, first), (begin, _, second) in zip(extents, extents[1:]):
            if begin < end:  # two index entries sharing bytes: a reader would return one record's data for another
                raise CheckpointFormatError(f"{path}: zip records {first!r} and {second!r} overlap")
        pkls = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if not pkls:
            hint = " (a TorchScript archive: use torch.jit to export a state_dict)" if any(
                n.endswith("/constants.pkl") or "/code/" in n for n in names) else ""
            raise CheckpointFormatError(f"{path}: zip archive has no '<prefix>/data.pkl' record, so it is not a "
                                        f"torch.save checkpoint{hint}")
        if len(pkls) > 1:
            raise CheckpointFormatError(f"{path}: several data.pkl records {_short(pkls)}; cannot tell which one "
                                        "to load")
        self.prefix = pkls[0][: -len("/data.pkl")]
        self._mapped: np.memmap | None = None
        order = self._read_optional("byteorder", 16)
        self.byteorder = (order or b"little").decode("ascii", "replace").strip()
        if self.byteorder not in ("little", "big"):
            raise CheckpointFormatError(f"{path}: unknown byteorder record {_short(self.byteorder)}")

    def close(self) -> None:
        self.zf.close()
        self.fh.close()

    def _info(self, name: str, key: str) -> zipfile.ZipInfo:
        try:
            return self.zf.getinfo(name)
        except KeyError:
            raise CheckpointFormatError(f"{self.path}: missing data record {name!r} for storage {key!r}") from None

    def _read_optional(self, name: str, max_size: int) -> bytes | None:
        try:
            info = self.zf.getinfo(f"{self.prefix}/{name}")
        except KeyError:
            return None
        if info.file_size > max_size:
            raise CheckpointFormatError(f"{self.path}: record {info.filename!r} is {info.file_size} bytes; at most "
                                        f"{max_size} expected")
        return bytes(self._read(info, copy=True))

    def pickle_bytes(self) -> bytes:
        info = self.zf.getinfo(f"{self.prefix}/data.pkl")
        self._check_sizes(info)
        self.budget.charge(info.file_size, f"record {info.filename!r}")
        return bytes(self._read(info, copy=True))

    def _check_sizes(self, info: zipfile.ZipInfo) -> None:
        """Refuse what torch cannot write or deflate cannot produce, before anything is allocated for it."""
        name = info.filename
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointFormatError(f"{self.path}: record {name!r} uses zip compression method "
                                        f"{info.compress_type}; torch writes stored or deflated records only")
        if info.flag_bits & 0x41:
            raise CheckpointFormatError(f"{self.path}: record {name!r} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise CheckpointFormatError(f"{self.path}: stored record {name!r} has compressed size "
                                        f"{info.compress_size} != size {info.file_size}")
        if info.file_size > info.compress_size * _MAX_DEFLATE_RATIO + 4096:
            raise CheckpointFormatError(f"{self.path}: record {name!r} claims {info.file_size} bytes from "
                                        f"{info.compress_size} compressed bytes (more than deflate can expand): a "
                                        "zip bomb or a corrupt archive")

    def _data_start(self, info: zipfile.ZipInfo) -> int:
        """Where the member's bytes start, after checking its local header and data descriptor agree with the
        central directory (a reader that trusted one and mapped by the other would return other bytes)."""
        self._check_sizes(info)
        name = info.filename
        self.fh.seek(info.header_offset)
        header = self.fh.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise CheckpointFormatError(f"{self.path}: corrupt local header for record {name!r}")
        (_, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len) = _LOCAL_HEADER.unpack(header)
        raw_name = self.fh.read(name_len)
        local_name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        end = start + info.compress_size
        problems = []
        if local_name != info.orig_filename:
            problems.append(f"name {local_name!r}")
        if method != info.compress_type:
            problems.append(f"compression method {method}")
        if not flags & 0x08:
            if crc != info.CRC:
                problems.append(f"CRC {crc:#x}")
            if csize != 0xFFFFFFFF and (csize, usize) != (info.compress_size, info.file_size):
                problems.append(f"sizes {csize}/{usize}")
        elif end + 12 <= self.file_size:  # data descriptor after the data: [signature] crc, sizes (4 or 8 bytes)
            self.fh.seek(end)
            desc = self.fh.read(24)
            if desc[:4] == b"PK\x07\x08":
                desc = desc[4:]
            crc_d = struct.unpack("<L", desc[:4])[0]
            small = struct.unpack("<2L", desc[4:12]) if len(desc) >= 12 else None
            large = struct.unpack("<2Q", desc[4:20]) if len(desc) >= 20 else None
            if crc_d != info.CRC or (info.compress_size, info.file_size) not in (small, large):
                problems.append("data descriptor")
        else:
            problems.append("missing data descriptor")
        if problems:
            raise CheckpointFormatError(f"{self.path}: local header of record {name!r} disagrees with the central "
                                        f"directory ({', '.join(problems)}): the archive is corrupt or crafted")
        if end > self.file_size:
            raise CheckpointFormatError(f"{self.path}: record {name!r} ends at byte {end} but the file has "
                                        f"{self.file_size} bytes (truncated)")
        return start

    def _read(self, info: zipfile.ZipInfo, copy: bool) -> np.ndarray:
        """A member's bytes as a uint8 array: mapped (stored, not `copy`) or read into an owned buffer with its CRC
        checked. The caller has charged `info.file_size` to the budget where it is held."""
        start = self._data_start(info)
        name, size = info.filename, info.file_size
        if info.compress_type == zipfile.ZIP_STORED and not copy:
            if size == 0:
                return np.zeros(0, np.uint8)
            if self._mapped is None:
                self._mapped = np.memmap(self.path, dtype=np.uint8, mode="r")
            return self._mapped[start:start + size].view(np.ndarray)
        out = np.empty(size, np.uint8)
        view, crc, pos = memoryview(out), 0, 0
        if info.compress_type == zipfile.ZIP_STORED:
            self.fh.seek(start)
            while pos < size:
                got = self.fh.readinto(view[pos:pos + _CHUNK])
                if not got:
                    raise CheckpointFormatError(f"{self.path}: record {name!r} is truncated")
                crc = zlib.crc32(view[pos:pos + got], crc)
                pos += got
            if crc != info.CRC:
                raise CheckpointFormatError(f"{self.path}: CRC mismatch in record {name!r}: the file is corrupt")
            return out
        try:
            with self.zf.open(info) as member:  # deflate, bounded by the declared size; zipfile checks the CRC
                while pos < size:
                    chunk = member.read(min(_CHUNK, size - pos))
                    if not chunk:
                        break
                    view[pos:pos + len(chunk)] = chunk
                    pos += len(chunk)
                if pos != size or member.read(1):
                    raise CheckpointFormatError(f"{self.path}: record {name!r} does not inflate to its declared "
                                                f"{size} bytes")
        except CheckpointFormatError:
            raise
        except Exception as err:  # noqa: BLE001 - zlib.error, BadZipFile (bad CRC), EOFError, ...
            raise CheckpointFormatError(f"{self.path}: record {name!r} cannot be decompressed "
                                        f"({type(err).__name__}: {_short(str(err))})") from None
        return out

    def storage_bytes(self, key: str, nbytes: int) -> np.ndarray:
        """Raw bytes of `<prefix>/data/<key>`, which must hold exactly the `nbytes` the pickle declares."""
        name = f"{self.prefix}/data/{key}"
        info = self._info(name, key)
        if info.file_size < nbytes:
            raise CheckpointFormatError(f"{self.path}: storage {key!r} is too short: record {name!r} has "
                                        f"{info.file_size} bytes but the pickle declares {nbytes} bytes")
        if info.file_size > nbytes:
            raise CheckpointFormatError(f"{self.path}: storage {key!r} record {name!r} has {info.file_size} bytes, "
                                        f"more than the {nbytes} bytes the pickle declares")
        copy = not self.mmap or info.compress_type != zipfile.ZIP_STORED
        if copy:
            self.budget.charge(nbytes, f"storage {key!r}")
        return self._read(info, copy)


def _storage_array(raw: np.ndarray, dtype: np.dtype, numel: int, key: str, path: str, byteorder: str,
                   budget: _Budget) -> np.ndarray:
    """Reinterpret a record's bytes as `numel` elements of `dtype` (the host is assumed little-endian)."""
    nbytes = numel * dtype.itemsize
    if raw.size < nbytes:
        raise CheckpointFormatError(f"{path}: storage {key!r} is too short: record has {raw.size} bytes but the "
                                    f"pickle declares {numel} x {dtype} = {nbytes} bytes")
    raw = raw[:nbytes]
    if byteorder == "big" and dtype.itemsize > 1:
        # Reverse the bytes of every scalar (each half of a complex number separately); works for ml_dtypes too.
        budget.charge(nbytes, f"byte-swapping storage {key!r}")
        width = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
        return raw.reshape(-1, width)[:, ::-1].copy().reshape(-1).view(dtype)
    return raw.view(dtype)


def _parse_storage_pid(pid: tuple, path: str) -> tuple[str, np.dtype, int]:
    if pid[0] != "storage" or len(pid) < 5 or not isinstance(pid[1], _StorageClass):
        raise CheckpointFormatError(f"{path}: unexpected persistent id {_short(pid)}")
    _, storage_class, key, _location, numel = pid[:5]
    if type(key) is not str or len(key) > 256 or type(numel) is not int or not 0 <= numel < _MAX_DIM:
        raise CheckpointFormatError(f"{path}: malformed storage persistent id {_short(pid)}")
    return key, storage_class.dtype, numel


def _load_zip(path: str, mmap: bool, allow_placeholders: bool, budget: _Budget) -> Any:
    archive = _ZipArchive(path, mmap, budget)
    try:
        cache: dict[str, tuple[TorchStorage, np.dtype, int]] = {}

        def load_storage(pid: tuple) -> TorchStorage:
            key, dtype, numel = _parse_storage_pid(pid, path)
            if key in cache:
                storage, first_dtype, first_numel = cache[key]
                if (first_dtype, first_numel) != (dtype, numel):  # torch.save refuses to write this
                    raise CheckpointFormatError(f"{path}: storage {key!r} is declared as {first_numel} x "
                                                f"{first_dtype} and as {numel} x {dtype}")
                return storage
            raw = archive.storage_bytes(key, numel * dtype.itemsize)
            storage = TorchStorage(key, _storage_array(raw, dtype, numel, key, path, archive.byteorder, budget), path)
            cache[key] = (storage, dtype, numel)
            return storage

        pickled = archive.pickle_bytes()
        unpickler = _SafeUnpickler(pickled, path, _Rebuilders(budget), load_storage, allow_placeholders, budget)
        return _run_unpickler(unpickler, path)
    finally:
        archive.close()


def _run_unpickler(unpickler: _SafeUnpickler, path: str) -> Any:
    try:
        return unpickler.load()
    except (CheckpointFormatError, UnsafeCheckpointError):
        raise
    except Exception as err:  # noqa: BLE001 - anything else the file provoked is a malformed pickle
        raise CheckpointFormatError(f"{path}: malformed pickle ({_error_text(err)})") from None


def _error_text(err: BaseException) -> str:
    """`Type: message` of an exception, without formatting file objects that may sit in its arguments."""
    text = "; ".join(a if type(a) is str else type(a).__name__ for a in err.args)
    return f"{type(err).__name__}: {text[:300]}"


# --------------------------------------------------------------------------------------------------------------
# legacy stream format (torch < 1.6 or _use_new_zipfile_serialization=False)
# --------------------------------------------------------------------------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def _pickle_end(fh: Any, path: str, what: str) -> int:
    """File offset just past the pickle starting at the handle's position, found without executing it."""
    try:
        for opcode, _arg, _pos in pickletools.genops(fh):
            if opcode.name == "STOP":
                return fh.tell()
    except Exception as err:  # noqa: BLE001 - genops raises ValueError, struct.error, ... on damage
        raise CheckpointFormatError(f"{path}: the legacy {what} is truncated or corrupt ({_error_text(err)})") from None
    raise CheckpointFormatError(f"{path}: the legacy {what} is truncated (no STOP opcode)")


def _load_plain(fh: Any, path: str, what: str, budget: _Budget) -> Any:
    """Unpickle a small header object that must not contain any global at all."""
    start = fh.tell()
    end = _pickle_end(fh, path, what)
    if end - start > 1 * _MiB and what != "storage key list":
        raise CheckpointFormatError(f"{path}: the legacy {what} is {end - start} bytes, too long for a header")
    fh.seek(start)
    data = fh.read(end - start)
    unpickler = _SafeUnpickler(data, path, _Rebuilders(budget, dry_run=True), None, False, budget)
    unpickler.allowed = {}
    try:
        return unpickler.load()
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except Exception as err:  # noqa: BLE001 - any failure here means "not this format"
        raise CheckpointFormatError(f"{path}: cannot read the legacy {what} ({_error_text(err)})") from None


def _load_legacy(path: str, mmap: bool, allow_placeholders: bool, budget: _Budget) -> Any:
    file_size = os.path.getsize(path)
    with open(path, "rb") as fh:
        magic = _load_plain(fh, path, "magic number", budget)
        if magic != LEGACY_MAGIC:
            raise CheckpointFormatError(f"{path}: wrong magic number {_short(magic)}: a pickle, but not a torch "
                                        "checkpoint")
        protocol = _load_plain(fh, path, "protocol version", budget)
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointFormatError(f"{path}: unsupported legacy protocol version {_short(protocol)}")
        sys_info = _load_plain(fh, path, "system info", budget)
        if type(sys_info) is not dict:
            raise CheckpointFormatError(f"{path}: legacy system info is {type(sys_info).__name__}, expected dict")
        pickle_start = fh.tell()
        pickle_end = _pickle_end(fh, path, "pickle")
        fh.seek(pickle_end)
        keys = _load_plain(fh, path, "storage key list", budget)
        if type(keys) is not list or not all(type(k) is str for k in keys) or len(set(keys)) != len(keys):
            raise CheckpointFormatError(f"{path}: legacy storage key list is malformed: {_short(keys)}")
        data_start = fh.tell()
        fh.seek(pickle_start)
        pickled = fh.read(pickle_end - pickle_start)

    # Pass 1 (no data): learn each storage's dtype and declared size from the persistent ids.
    declared: dict[str, tuple[np.dtype, int]] = {}

    def record_storage(pid: tuple) -> Any:
        if pid[0] == "module":
            return None
        key, dtype, numel = _parse_storage_pid(pid, path)
        if declared.setdefault(key, (dtype, numel)) != (dtype, numel):
            raise CheckpointFormatError(f"{path}: storage {key!r} is declared with two dtypes or sizes")
        return None

    first_pass = _Budget(path, budget.limit)  # its objects are gone before the second pass builds its own
    _run_unpickler(_SafeUnpickler(pickled, path, _Rebuilders(first_pass, dry_run=True), record_storage,
                                  allow_placeholders, first_pass), path)

    # Storage records: int64 element count (little-endian) then the raw little-endian elements, in key-list order.
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if mmap and file_size else None
    storages: dict[str, TorchStorage] = {}
    offset = data_start
    with open(path, "rb") as fh:
        for key in keys:
            if key not in declared:
                raise CheckpointFormatError(f"{path}: storage key {key!r} is listed but never used by the pickle")
            dtype, numel = declared[key]
            fh.seek(offset)
            head = fh.read(8)
            if len(head) != 8:
                raise CheckpointFormatError(f"{path}: file ends before the record of storage {key!r} (truncated)")
            (count,) = struct.unpack("<q", head)
            if count != numel:
                raise CheckpointFormatError(f"{path}: storage {key!r} record holds {count} elements but the pickle "
                                            f"declares {numel}")
            nbytes = count * dtype.itemsize
            start = offset + 8
            if start + nbytes > file_size:
                raise CheckpointFormatError(f"{path}: storage {key!r} is too short: needs {nbytes} bytes at offset "
                                            f"{start} but the file has {file_size} bytes (truncated)")
            if mapped is not None:
                raw = mapped[start:start + nbytes].view(np.ndarray)
            else:
                budget.charge(nbytes, f"storage {key!r}")
                raw = np.empty(nbytes, np.uint8)
                fh.seek(start)
                if fh.readinto(memoryview(raw)) != nbytes:
                    raise CheckpointFormatError(f"{path}: storage {key!r} is truncated")
            storages[key] = TorchStorage(key, _storage_array(raw, dtype, count, key, path, "little", budget), path)
            offset = start + nbytes
    views: dict[str, TorchStorage] = {}

    def load_storage(pid: tuple) -> Any:
        if pid[0] == "module":
            return None
        key, _dtype, _numel = _parse_storage_pid(pid, path)
        if key not in storages:
            raise CheckpointFormatError(f"{path}: missing data record for storage {key!r}")
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return storages[key]
        root = storages[key].array
        if not (type(view) is tuple and len(view) == 3 and type(view[0]) is str and type(view[1]) is int
                and type(view[2]) is int and 0 <= view[1] <= view[1] + view[2] <= root.size and view[2] >= 0):
            raise CheckpointFormatError(f"{path}: bad storage view {_short(view)} of storage {key!r}")
        view_key, start, length = view  # element offsets into the root storage (old storage views)
        if view_key not in views:
            views[view_key] = TorchStorage(view_key, root[start:start + length], path)
        return views[view_key]

    return _run_unpickler(_SafeUnpickler(pickled, path, _Rebuilders(budget), load_storage, allow_placeholders,
                                         budget), path)


# --------------------------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------------------------
# Parsed here rather than with the `safetensors` package: its numpy loader has no bf16/fp8 (numpy lacks them; we use
# ml_dtypes), it always copies (we memory-map), and it cannot charge the memory limit. The checks below are the
# package's own (header size, offsets tiling the data section, string-only metadata) plus duplicate keys.

SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U64": np.dtype(np.uint64), "U32": np.dtype(np.uint32),
    "U16": np.dtype(np.uint16), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "F8_E8M0": np.dtype(ml_dtypes.float8_e8m0fnu), "C64": np.dtype(np.complex64),
}
_MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors package's own limit


def _no_duplicate_keys(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise CheckpointFormatError(f"safetensors header gives key {_short(dup)} twice")
    return out


def read_safetensors_header(path: str, budget: _Budget | None = None) -> tuple[dict, int]:
    """Parse and validate the JSON header; returns (header dict, byte offset where tensor data starts)."""
    file_size = os.path.getsize(path)
    budget = budget or _Budget(path, default_max_bytes(file_size))
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise CheckpointFormatError(f"{path}: too short for a safetensors file ({file_size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length > min(file_size - 8, _MAX_SAFETENSORS_HEADER):
            raise CheckpointFormatError(f"{path}: safetensors header length {length} is out of range (file has "
                                        f"{file_size} bytes)")
        raw = fh.read(length)
    if not raw.startswith(b"{"):
        raise CheckpointFormatError(f"{path}: safetensors header must be a JSON object")
    # Parsed JSON can take ~100 bytes per value; bound it by counting separators before parsing.
    budget.charge(2 * length + 128 * (raw.count(b",") + raw.count(b"{") + raw.count(b"[")), "the safetensors header")
    try:
        header = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except CheckpointFormatError as err:
        raise CheckpointFormatError(f"{path}: {err}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointFormatError(f"{path}: safetensors header is not valid JSON ({_error_text(err)})") from None
    if type(header) is not dict:
        raise CheckpointFormatError(f"{path}: safetensors header must be a JSON object")
    meta = header.get("__metadata__")
    if meta is not None and not (type(meta) is dict and all(type(v) is str for v in meta.values())):
        raise CheckpointFormatError(f"{path}: safetensors __metadata__ must map strings to strings")
    data_len = file_size - 8 - length
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = entry.get("dtype") if type(entry) is dict else None
        if type(dtype) is not str or dtype not in SAFETENSORS_DTYPES:
            raise CheckpointFormatError(f"{path}: tensor {_short(name)} has unknown or missing dtype {_short(dtype)}")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (type(shape) is list and len(shape) <= 64 and all(type(d) is int and 0 <= d < _MAX_DIM for d in shape)):
            raise CheckpointFormatError(f"{path}: tensor {_short(name)} has a bad shape {_short(shape)}")
        if not (type(offsets) is list and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise CheckpointFormatError(f"{path}: tensor {_short(name)} data_offsets {_short(offsets)} are out of "
                                        f"range (data section has {data_len} bytes)")
        expected = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != expected:
            raise CheckpointFormatError(f"{path}: tensor {_short(name)} spans {offsets[1] - offsets[0]} bytes but "
                                        f"shape {shape} x {dtype} needs {expected}")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise CheckpointFormatError(f"{path}: tensor {_short(name)} starts at data byte {begin} but the previous "
                                        f"tensor ends at {end}: safetensors offsets must tile the data section "
                                        "without gaps or overlaps")
        end = stop
    if end != data_len:
        raise CheckpointFormatError(f"{path}: safetensors tensors cover {end} bytes of a {data_len}-byte data "
                                    "section")
    return header, 8 + length


def load_safetensors(path: str, mmap: bool = True, max_bytes: int | None = None
                     ) -> "collections.OrderedDict[str, np.ndarray]":
    """All tensors of a safetensors file, in header order (memory-mapped, read-only, when `mmap`)."""
    file_size = os.path.getsize(path)
    budget = _Budget(path, max_bytes if max_bytes is not None else default_max_bytes(file_size))
    header, data_start = read_safetensors_header(path, budget)
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if mmap and file_size > data_start else None
    out: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    with open(path, "rb") as fh:
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = SAFETENSORS_DTYPES[entry["dtype"]]
            begin, end = (data_start + o for o in entry["data_offsets"])
            if mapped is not None:
                raw = mapped[begin:end].view(np.ndarray)
            else:
                budget.charge(end - begin, f"tensor {name!r}")
                raw = np.empty(end - begin, np.uint8)
                fh.seek(begin)
                if fh.readinto(memoryview(raw)) != end - begin:
                    raise CheckpointFormatError(f"{path}: tensor {name!r} is truncated")
            out[name] = _storage_array(raw, dtype, (end - begin) // dtype.itemsize, name, path, "little",
                                       budget).reshape(entry["shape"])
    return out


def safetensors_metadata(path: str) -> dict[str, str]:
    """The free-form `__metadata__` map of a safetensors file ({} when absent)."""
    return read_safetensors_header(path)[0].get("__metadata__") or {}


# --------------------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------------------


def detect_format(path: str) -> str:
    """'zip', 'legacy', 'safetensors'; raises CheckpointFormatError for anything else."""
    if not os.path.isfile(path):
        raise CheckpointFormatError(f"{path}: no such checkpoint file (or not a regular file)")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 1:
        return "safetensors"
    if head[:1] == b"\x80" and len(head) > 2:
        return "legacy"
    if path.endswith(".safetensors"):
        return "safetensors"
    if tarfile.is_tarfile(path):
        raise CheckpointFormatError(f"{path}: a tar-based torch checkpoint (torch <= 0.3); re-save it with a newer "
                                    "torch, this reader handles zip, legacy-stream and safetensors files")
    raise CheckpointFormatError(f"{path}: not a PyTorch checkpoint: unrecognised leading bytes {head[:8]!r} "
                                "(expected a zip archive, a legacy torch pickle or a safetensors header)")


def load_checkpoint(path: str | os.PathLike, *, mmap: bool = True, allow_placeholders: bool = True,
                    max_bytes: int | None = None) -> Any:
    """Load a torch checkpoint or safetensors file as plain Python objects with numpy arrays, never importing torch.

    `max_bytes` bounds the memory the load may hold (default `default_max_bytes(file size)`: file size x 2 +
    256 MiB); raise it explicitly for a trusted file that needs more.
    """
    path = os.fspath(path)
    try:
        kind = detect_format(path)
        limit = max_bytes if max_bytes is not None else default_max_bytes(os.path.getsize(path))
        budget = _Budget(path, limit)
        if kind == "zip":
            return _load_zip(path, mmap, allow_placeholders, budget)
        if kind == "legacy":
            return _load_legacy(path, mmap, allow_placeholders, budget)
        return load_safetensors(path, mmap, limit)
    except (CheckpointFormatError, UnsafeCheckpointError):
        raise
    except MemoryError:
        raise CheckpointTooLargeError(f"{path}: ran out of memory while reading (limit max_bytes={limit})") from None
    except Exception as err:  # noqa: BLE001 - whatever else the file provokes is reported as this file's fault
        raise CheckpointFormatError(f"{path}: unreadable checkpoint ({_error_text(err)})") from None


# --------------------------------------------------------------------------------------------------------------
# navigating what was loaded
# --------------------------------------------------------------------------------------------------------------


def _module_placeholder_children(obj: RefusedGlobal) -> Iterator[tuple[str, Any]]:
    """Parameters, buffers and sub-modules of a pickled nn.Module placeholder (its `__dict__` state)."""
    attrs = obj.attributes()
    for group in ("_parameters", "_buffers"):
        entries = attrs.get(group)
        for name, value in (entries.items() if isinstance(entries, Mapping) else ()):
            if value is not None:
                yield name, value
    entries = attrs.get("_modules")
    for name, value in (entries.items() if isinstance(entries, Mapping) else ()):
        if value is not None:
            yield name, value


def _is_module_placeholder(obj: Any) -> bool:
    return isinstance(obj, RefusedGlobal) and "_parameters" in obj.attributes()


_MAX_FLATTEN_NODES = 1_000_000


def flatten_state_dict(obj: Any, sep: str = ".", prefix: str = "") -> "collections.OrderedDict[str, Any]":
    """Flatten nested dicts/lists/tuples (and pickled nn.Module placeholders) into `a.b.0.c -> leaf`.

    A key that comes out twice (`{"a.b": x, "a": {"b": y}}`) is refused, as torch's `load_state_dict` refuses a
    parameter given twice; so are containers that contain themselves. Iterative, so depth is no limit.
    """
    out: collections.OrderedDict[str, Any] = collections.OrderedDict()
    visited = 0

    def children(node: Any) -> Iterator[tuple[Any, Any]] | None:
        if isinstance(node, Mapping):
            return iter(list(node.items()))
        if isinstance(node, (list, tuple)):
            return enumerate(node)
        if _is_module_placeholder(node):
            return _module_placeholder_children(node)
        return None

    root = children(obj)
    if root is None:
        out[prefix] = obj
        return out
    stack: list[tuple[Iterator, str, int]] = [(root, prefix, id(obj))]
    on_path = {id(obj)}
    while stack:
        items, key, node_id = stack[-1]
        step = next(items, None)
        if step is None:
            stack.pop()
            on_path.discard(node_id)
            continue
        visited += 1
        if visited > _MAX_FLATTEN_NODES:
            raise CheckpointFormatError(f"state_dict has more than {_MAX_FLATTEN_NODES} entries (shared containers?)")
        child_key, child = step
        full = f"{key}{sep}{child_key}" if key else str(child_key)
        sub = children(child)
        if sub is None:
            if full in out:
                raise CheckpointFormatError(f"state_dict gives parameter {_short(full)} twice (as a flat key and as a "
                                            "nested path); refusing to guess which one is meant")
            out[full] = child
        elif id(child) in on_path:
            raise CheckpointFormatError(f"state_dict entry {_short(full)} contains itself")
        else:
            on_path.add(id(child))
            stack.append((sub, full, id(child)))
    return out


STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights")


def find_state_dict(obj: Any, sep: str = ".") -> "collections.OrderedDict[str, np.ndarray]":
    """The model weights of a loaded checkpoint, flattened to `name -> array`.

    Looks through the usual wrappers ('state_dict' as in Lightning, 'model_state_dict', 'model' as in
    Audio-MAE, ...), accepts a bare state_dict and a pickled nn.Module placeholder.
    """
    candidate = obj
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if key in obj and (isinstance(obj[key], Mapping) or _is_module_placeholder(obj[key])):
                candidate = obj[key]
                break
    elif not _is_module_placeholder(obj):
        raise CheckpointFormatError(f"cannot find a state_dict in a {type(obj).__name__}")
    flat = flatten_state_dict(candidate, sep)
    arrays = collections.OrderedDict((k, v) for k, v in flat.items() if isinstance(v, np.ndarray))
    if not arrays:
        top = _short(list(obj)[:20]) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointFormatError(f"no tensors found in the checkpoint's state_dict; top-level keys: {top}")
    return arrays
